"""`exitgate flow`: skipping, resuming and refusing, with recording step functions (the step
commands themselves have their own tests; the real end-to-end flow is tested in
test_flow_e2e.py)."""

import json

import pytest

from exitgate import flow as flowmod
from exitgate.cli import main
from exitgate.errors import ExitgateError
from exitgate.runs import STEPS, write_json


@pytest.fixture
def recorder(monkeypatch):
    """Replace each step by one that writes its marker (reading its predecessor's), records that
    it ran, and can be told to fail part-way."""
    calls, fail = [], {}

    def make(step):
        def run(out, **kw):
            calls.append(step)
            marker = out / STEPS[step][0]
            marker.parent.mkdir(parents=True, exist_ok=True)
            # the inputs a real step would read: the previous step's outputs
            if step == "compile":
                for f in ("hw/top.v", "hw/baseline/top.v"):
                    (out / f).parent.mkdir(parents=True, exist_ok=True)
                    (out / f).write_text(f"module {kw['params']['board']}; endmodule\n")
            if step == "train":
                for f in ("ir.json", "weights.npz", "calibration.json"):
                    (out / f).write_text(kw["params"]["config_text"][:20])
            if fail.get(step):
                (out / "half-written").write_text("x")
                raise KeyboardInterrupt
            write_json(marker, {"step": step})
            return f"{step} ok"
        return run

    monkeypatch.setattr(flowmod, "_STEP_FUNCS", {s: make(s) for s in flowmod.FLOW_STEPS})
    return calls, fail


def test_flow_runs_every_step_then_skips_them(tmp_path, recorder):
    calls, _ = recorder
    out = tmp_path / "run"
    r = flowmod.run_flow(out, board="ulx3s-85f", log=lambda *a: None)
    assert calls == list(flowmod.FLOW_STEPS)
    assert [s["status"] for s in r["summary"]] == ["done"] * 6
    calls.clear()
    r = flowmod.run_flow(out, board="ulx3s-85f", log=lambda *a: None)
    assert calls == []
    assert [s["status"] for s in r["summary"]] == ["skipped"] * 6
    rec = json.loads((out / "flow.json").read_text())
    assert set(rec["steps"]) == set(flowmod.FLOW_STEPS)


def test_flow_redoes_a_step_whose_inputs_changed_and_everything_after(tmp_path, recorder):
    calls, _ = recorder
    out = tmp_path / "run"
    flowmod.run_flow(out, board="ulx3s-85f", build=False, log=lambda *a: None)
    calls.clear()
    (out / "hw" / "top.v").write_text("module edited; endmodule\n")   # sim's input changed
    flowmod.run_flow(out, board="ulx3s-85f", build=False, log=lambda *a: None)
    assert calls == ["sim", "energy", "report"]


def test_flow_redoes_the_steps_whose_code_changed(tmp_path, recorder, monkeypatch):
    """A changed compiler (same exitgate version: a developer's edit, an upgrade that kept the
    number) recompiles and redoes what follows; train, whose code did not change, is kept."""
    calls, _ = recorder
    out = tmp_path / "run"
    flowmod.run_flow(out, board="ulx3s-85f", build=False, log=lambda *a: None)
    calls.clear()
    code = tmp_path / "code"
    (code / "compiler").mkdir(parents=True)
    (code / "compiler" / "dse.py").write_text("# the compiler, edited\n")
    real = flowmod.code_files

    def code_files(step):
        return real(step) + ([code / "compiler" / "dse.py"] if step == "compile" else [])
    monkeypatch.setattr(flowmod, "code_files", code_files)
    flowmod.run_flow(out, board="ulx3s-85f", build=False, log=lambda *a: None)
    assert calls == ["compile", "sim", "energy", "report"]


def test_code_files_cover_what_each_step_runs():
    rel = {s: {str(p.relative_to(flowmod._PACKAGE)) for p in flowmod.code_files(s)}
           for s in flowmod.FLOW_STEPS}
    assert "compiler/resources.py" in rel["compile"] and "compiler/resource_model.json" in \
        rel["compile"] and "hw/conv.py" in rel["compile"]
    assert "quant/train.py" in rel["train"] and not any(p.startswith("compiler/")
                                                        for p in rel["train"])
    assert "sim/energy.py" in rel["energy"] and "report.py" in rel["report"]


def test_interrupted_flow_resumes_at_the_interrupted_step(tmp_path, recorder):
    calls, fail = recorder
    out = tmp_path / "run"
    fail["sim"] = True
    with pytest.raises(KeyboardInterrupt):
        flowmod.run_flow(out, board="ulx3s-85f", log=lambda *a: None)
    assert not (out / "sim" / "results.json").exists()
    rec = json.loads((out / "flow.json").read_text())
    assert set(rec["steps"]) == {"train", "compile"}     # sim never recorded as done
    calls.clear()
    fail.clear()
    r = flowmod.run_flow(out, board="ulx3s-85f", log=lambda *a: None)
    assert calls == ["sim", "energy", "build", "report"]
    assert [s["status"] for s in r["summary"]][:2] == ["skipped", "skipped"]


def test_flow_refuses_other_settings_without_force(tmp_path, recorder):
    calls, _ = recorder
    out = tmp_path / "run"
    flowmod.run_flow(out, board="ulx3s-85f", log=lambda *a: None)
    before = (out / "hw" / "top.v").read_text()
    calls.clear()
    with pytest.raises(ExitgateError, match=r"board 'ulx3s-85f' -> 'icebreaker'.*--force"):
        flowmod.run_flow(out, board="icebreaker", log=lambda *a: None)
    assert calls == [] and (out / "hw" / "top.v").read_text() == before
    flowmod.run_flow(out, board="icebreaker", force=True, log=lambda *a: None)
    assert calls == list(flowmod.FLOW_STEPS)
    assert "icebreaker" in (out / "hw" / "top.v").read_text()


def test_flow_refuses_an_edited_config(tmp_path, recorder):
    from exitgate.quant.config import default_config_path
    cfg = tmp_path / "c.toml"
    cfg.write_text(default_config_path().read_text())
    out = tmp_path / "run"
    flowmod.run_flow(out, config=str(cfg), board="ulx3s-85f", log=lambda *a: None)
    cfg.write_text(cfg.read_text().replace("epochs = 100", "epochs = 3"))
    with pytest.raises(ExitgateError, match="config"):
        flowmod.run_flow(out, config=str(cfg), board="ulx3s-85f", log=lambda *a: None)


def test_flow_refuses_a_run_made_by_single_commands(tmp_path, recorder):
    out = tmp_path / "run"
    out.mkdir()
    (out / "train.json").write_text("{}")
    with pytest.raises(ExitgateError, match="not made by `exitgate flow`"):
        flowmod.run_flow(out, log=lambda *a: None)
    assert (out / "train.json").read_text() == "{}"


def test_flow_cli_errors_are_one_line(tmp_path, capsys, recorder):
    assert main(["flow", "--out", str(tmp_path / "r"), "--board", "no-such-board"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "icebreaker" in err[0]
    assert not (tmp_path / "r").exists()
    corrupt = tmp_path / "c"
    corrupt.mkdir()
    (corrupt / "flow.json").write_text("{not json")
    assert main(["flow", "--out", str(corrupt), "--board", "ulx3s-85f"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt" in err[0]


def test_flow_gives_seeds_and_time_limit_to_the_build(tmp_path, recorder, monkeypatch):
    """--seeds is a setting of the run (another count redoes the build only with --force);
    the time limit is not (it bounds how long a build may take, not what it makes). The flow's
    own build step runs, with `run_build` recording what it was given."""
    from exitgate.boards.build import DEFAULT_TIME_LIMIT_S
    from exitgate.compiler import flow as compiler_flow
    seen = []

    def run_build(out, board, *, force, seeds, time_limit, log):
        seen.append({"seeds": seeds, "time_limit": time_limit})
        result = {"status": "built", "fmax_mhz": 100.0}
        write_json(out / "build" / "build.json", {"step": "build"})
        return {"early_exit": result, "baseline": result}

    monkeypatch.setattr(compiler_flow, "run_build", run_build)
    monkeypatch.setitem(flowmod._STEP_FUNCS, "build", flowmod._build)
    out = tmp_path / "run"
    flowmod.run_flow(out, board="ulx3s-85f", log=lambda *a: None)
    assert seen == [{"seeds": 1, "time_limit": DEFAULT_TIME_LIMIT_S}]
    flowmod.run_flow(out, board="ulx3s-85f", time_limit=60, log=lambda *a: None)
    assert len(seen) == 1, "a new time limit alone redid the build"
    with pytest.raises(ExitgateError, match=r"seeds None -> 3"):
        flowmod.run_flow(out, board="ulx3s-85f", seeds=3, log=lambda *a: None)
    flowmod.run_flow(out, board="ulx3s-85f", seeds=3, time_limit=None, force=True,
                     log=lambda *a: None)
    assert seen[-1] == {"seeds": 3, "time_limit": None}
