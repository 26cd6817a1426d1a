"""Bad input to every command: each gets one clear error line on stderr, exit status 1, no
traceback, and no result that already existed is changed.

The commands run in-process through `exitgate.cli.main` (the same code path as the console
script) on copies of the session's trained and compiled runs, damaged in one way each.
"""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from exitgate.cli import main


def snapshot(root: Path) -> dict:
    """{relative path: sha256} of every file under root."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def fails_cleanly(argv, capsys, *patterns, untouched: Path | None = None) -> str:
    before = snapshot(untouched) if untouched is not None and untouched.exists() else None
    assert main(argv) == 1, argv
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith("exitgate: error: ") and "Traceback" not in out.err + out.out
    for p in patterns:
        assert p in lines[0], (p, lines[0])
    if before is not None:
        assert snapshot(untouched) == before, "an existing result was changed"
    return lines[0]


@pytest.fixture
def trained(trained_run, tmp_path):
    run = tmp_path / "trained"
    shutil.copytree(trained_run[0], run)
    return run


@pytest.fixture
def compiled(compiled_run, tmp_path):
    run = tmp_path / "compiled"
    shutil.copytree(compiled_run, run, ignore=shutil.ignore_patterns(
        "sim", "energy.json", "energy.png", "build", "report*"))
    return run


RUN_COMMANDS = [["compile"], ["sim"], ["build"], ["energy"], ["report"]]


@pytest.mark.parametrize("cmd", RUN_COMMANDS, ids=lambda c: c[0])
def test_nonexistent_run(cmd, tmp_path, capsys):
    missing = tmp_path / "nope"
    fails_cleanly(cmd + [str(missing)], capsys, str(missing), "exitgate train --out")
    assert not missing.exists()


@pytest.mark.parametrize("cmd,needs", [(["compile"], "exitgate train"),
                                       (["sim"], "exitgate compile"),
                                       (["build"], "exitgate compile"),
                                       (["energy"], "exitgate sim"),
                                       (["report"], "exitgate train")], ids=lambda c: str(c))
def test_half_written_run_names_the_missing_step(cmd, needs, tmp_path, capsys):
    """A RUN whose train step was interrupted: artefacts but no train.json marker."""
    run = tmp_path / "half"
    run.mkdir()
    (run / "ir.json").write_text('{"format": "exitgate-ir"')
    fails_cleanly(cmd + [str(run)], capsys, needs, untouched=run)


def _truncate(path: Path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.mark.parametrize("damage,pattern", [
    (lambda r: _truncate(r / "ir.json"), "ir.json"),
    (lambda r: (r / "ir.json").write_text("not json at all"), "ir.json"),
    (lambda r: (r / "ir.json").write_text("[1, 2, 3]"), "ir.json"),
    (lambda r: _truncate(r / "weights.npz"), "weights.npz"),
    (lambda r: (r / "weights.npz").unlink(), "weights.npz"),
    (lambda r: (r / "weights.npz").write_bytes(b""), "weights.npz"),
], ids=["ir-truncated", "ir-garbage", "ir-not-an-object", "weights-truncated",
        "weights-missing", "weights-empty"])
def test_corrupt_ir_or_weights(trained, capsys, damage, pattern):
    damage(trained)
    fails_cleanly(["compile", str(trained), "--board", "ulx3s-85f"], capsys, pattern,
                  untouched=trained)
    assert not (trained / "hw").exists()


def test_ir_from_a_newer_schema(trained, capsys):
    ir = json.loads((trained / "ir.json").read_text())
    ir["version"] = ir["version"] + 1
    (trained / "ir.json").write_text(json.dumps(ir))
    fails_cleanly(["compile", str(trained), "--board", "ulx3s-85f"], capsys, "version",
                  "upgrade exitgate", untouched=trained)


@pytest.mark.parametrize("t", ["0", "-0.5", "1.5", "nan", "inf"])
def test_threshold_outside_unit_interval(compiled, capsys, t):
    fails_cleanly(["sim", str(compiled), "--threshold", t], capsys, "(0, 1]",
                  untouched=compiled)


def test_board_too_small(trained, capsys):
    # a budget no design fits: the real iCEBreaker with the LUT cap of a tiny device
    from exitgate.boards import profiles
    board = profiles.get_board("icebreaker")
    import dataclasses
    tiny = dataclasses.replace(board, name="tiny", budget=dataclasses.replace(
        board.budget, lut=200, ff=200))
    mp = pytest.MonkeyPatch()
    mp.setitem(profiles.BOARDS, "tiny", tiny)
    try:
        line = fails_cleanly(["compile", str(trained), "--board", "tiny"], capsys,
                             "does not fit", untouched=trained)
    finally:
        mp.undo()
    assert "LUT" in line and ("board" in line or "smaller" in line)


def test_unknown_board_everywhere(trained, compiled, capsys, tmp_path):
    fails_cleanly(["compile", str(trained), "--board", "de10-nano"], capsys, "icebreaker",
                  untouched=trained)
    fails_cleanly(["build", str(compiled), "--board", "de10-nano"], capsys, "icebreaker",
                  untouched=compiled)
    fails_cleanly(["flow", "--out", str(tmp_path / "f"), "--board", "de10-nano"], capsys,
                  "icebreaker")
    assert not (tmp_path / "f").exists()


def test_bad_seed_count_and_time_limit(compiled, capsys, tmp_path):
    """Refused before RUN/build is touched (a --force build would otherwise clear it first),
    and by the flow before any step runs."""
    fails_cleanly(["build", str(compiled), "--seeds", "0", "--force"], capsys, "from 1 to 16",
                  untouched=compiled)
    fails_cleanly(["build", str(compiled), "--time-limit", "-5", "--force"], capsys,
                  "minutes >= 0", untouched=compiled)
    fails_cleanly(["flow", "--out", str(tmp_path / "f"), "--seeds", "17"], capsys, "from 1 to 16")
    fails_cleanly(["flow", "--out", str(tmp_path / "f"), "--time-limit", "inf"], capsys,
                  "minutes >= 0")
    assert not (tmp_path / "f").exists()


def test_missing_simulator(compiled, capsys, monkeypatch):
    from exitgate.sim import tools
    monkeypatch.setattr(tools.shutil, "which", lambda name, *a, **k: None)
    fails_cleanly(["sim", str(compiled), "--simulator", "icarus"], capsys, "iverilog",
                  untouched=compiled)


def test_corrupt_manifest(compiled, capsys):
    (compiled / "hw" / "manifest.json").write_text('{"board": ')
    for cmd in (["sim"], ["build"]):
        fails_cleanly(cmd + [str(compiled)], capsys, "manifest.json", untouched=compiled)


def test_existing_results_are_not_replaced_without_force(compiled, capsys, tmp_path):
    fails_cleanly(["compile", str(compiled), "--board", "ulx3s-85f"], capsys, "--force",
                  untouched=compiled)
    fails_cleanly(["train", "--out", str(compiled)], capsys, "--force", untouched=compiled)
