"""The CLI's bad-input contract: one line on stderr naming the problem, non-zero status, no
traceback, and nothing already in RUN changed."""

import subprocess
import sys

import numpy as np
import pytest

from exitgate.cli import main
from exitgate.quant.datasets import write_idx


def _run(*args, cwd=None):
    p = subprocess.run([sys.executable, "-m", "exitgate", *args], capture_output=True, text=True,
                       cwd=cwd, timeout=300)
    return p.returncode, p.stdout, p.stderr


def _one_line_error(code, err, pattern):
    assert code == 1, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exitgate: error: "), err
    assert pattern in lines[0], lines[0]


BAD_CONFIGS = {
    "unknown key": ('[model]\nsegments = [{channels = 4}]\nexits = [{after = 1}, {after = 1}]\n'
                    'colour = "red"\n', "unknown key 'colour'"),
    "bits 1": ('[model]\nsegments = [{channels = 4, weight_bits = 1}]\n'
               'exits = [{after = 1}, {after = 1}]\n', "1 is out of range; allowed: 2..8"),
    "bits 9": ('[model]\nsegments = [{channels = 4, act_bits = 9}]\n'
               'exits = [{after = 1}, {after = 1}]\n', "9 is out of range; allowed: 2..8"),
    "no such segment": ('[model]\nsegments = [{channels = 4}]\nexits = [{after = 1}, {after = 2}]\n',
                        "there is no segment 2; allowed: 1..1"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config(tmp_path, capsys, name):
    text, pattern = BAD_CONFIGS[name]
    (tmp_path / "c.toml").write_text(text)
    code = main(["train", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "r")])
    _one_line_error(code, capsys.readouterr().err, pattern)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("dataset, pattern", [
    ("cifar10", "unknown dataset 'cifar10'; allowed: digits, mnist:DIR, fashion-mnist:DIR"),
    ("mnist:/nonexistent/dir", "dataset directory /nonexistent/dir does not exist"),
    ("mnist", "--dataset mnist needs a directory: mnist:DIR"),
])
def test_bad_dataset(tmp_path, capsys, dataset, pattern):
    code = main(["train", "--dataset", dataset, "--out", str(tmp_path / "r")])
    _one_line_error(code, capsys.readouterr().err, pattern)
    assert not (tmp_path / "r").exists()  # nothing left behind


def test_existing_run_is_refused_and_untouched(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "train.json").write_text('{"mine": 1}')
    code, _, err = _run("train", "--out", str(run))
    _one_line_error(code, err, "already holds results of `exitgate train` (train.json); use --force")
    assert (run / "train.json").read_text() == '{"mine": 1}'


def test_usage_errors_exit_2():
    code, _, err = _run("train")
    assert code == 2 and "--out" in err and "Traceback" not in err
    code, _, err = _run("frobnicate")
    assert code == 2 and "invalid choice" in err


def test_train_on_idx_files_end_to_end(tmp_path, capsys):
    """mnist:DIR with the 28x28 default model (tiny IDX files made here, one epoch)."""
    rng = np.random.default_rng(0)
    d = tmp_path / "mnist"
    d.mkdir()
    for prefix, n in (("train", 120), ("t10k", 40)):
        y = np.arange(n) % 10
        x = rng.integers(0, 60, (n, 28, 28))
        for k in range(n):  # a learnable pattern: a bright bar at a label-dependent row
            x[k, 2 + 2 * y[k]: 4 + 2 * y[k], 4:24] = 250
        write_idx(d / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", y)
    cfg = tmp_path / "c.toml"
    from exitgate.quant.config import default_config_path
    cfg.write_text(default_config_path("lenet28").read_text().replace("epochs = 8", "epochs = 2"))
    code = main(["train", "--config", str(cfg), "--dataset", f"mnist:{d}", "--out",
                 str(tmp_path / "run"), "--quiet", "--no-float"])
    out = capsys.readouterr().out
    assert code == 0
    assert "40/40 test samples bit-exact" in out
    import json
    t = json.loads((tmp_path / "run" / "train.json").read_text())
    assert t["agreement"]["logit_mismatches"] == 0 and t["splits"]["test"] == 40
