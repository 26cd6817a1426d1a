"""Shared fixtures: a small trained digits run (trained once per test session)."""

import dataclasses

import pytest

from exitgate.quant.config import load_config
from exitgate.quant.datasets import load_dataset


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def small_config():
    """The default digits architecture, trained briefly (bit-exactness does not depend on it)."""
    cfg = load_config()
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=12))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, small_config, digits):
    from exitgate.quant.flow import run_train

    out = tmp_path_factory.mktemp("run") / "digits"
    result = run_train(small_config, digits, out, progress=False, float_baseline=True,
                       log=lambda *a: None)
    return out, result


@pytest.fixture(scope="session")
def compiled_run(trained_run, tmp_path_factory):
    """A copy of the trained run, compiled for the ULX3S (ECP5-85F)."""
    import shutil
    from exitgate.cli import main

    run = tmp_path_factory.mktemp("compiled") / "run"
    shutil.copytree(trained_run[0], run)
    assert main(["compile", str(run), "--board", "ulx3s-85f"]) == 0
    return run
