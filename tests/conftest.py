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

    from exitgate.hw.ram import poison_collisions

    run = tmp_path_factory.mktemp("compiled") / "run"
    shutil.copytree(trained_run[0], run)
    with poison_collisions(False):      # the shipped Verilog, whichever test asks first
        assert main(["compile", str(run), "--board", "ulx3s-85f"]) == 0
    return run


#: test folders whose designs are elaborated with poisoned read / write collisions
#: (`exitgate.hw.ram.poison_collisions`): the blocks, whole accelerators and the board harness in
#: the Amaranth simulator. The system tests (tests/sim) simulate the shipped Verilog.
POISONED = ("hw", "compiler", "boards")


@pytest.fixture(autouse=True)
def poisoned_collisions(request):
    """In the POISONED folders every design reads the inverted old word on a block-RAM read /
    write collision, which the hardware leaves undefined: a test still matching its golden model
    shows the design never uses such a read."""
    from exitgate.hw.ram import poison_collisions

    on = request.path.parent.name in POISONED
    with poison_collisions(on):
        yield on


@pytest.fixture(scope="session", autouse=True)
def sim_build_dir(tmp_path_factory):
    """One simulator build cache for the session (also for `exitgate sim` run by tests, through
    EXITGATE_SIM_CACHE): builds are keyed by the Verilog's hash, so every test simulating the
    same design shares one Verilator build."""
    import os
    path = tmp_path_factory.mktemp("sim-builds")
    old = os.environ.get("EXITGATE_SIM_CACHE")
    os.environ["EXITGATE_SIM_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("EXITGATE_SIM_CACHE", None)
    else:
        os.environ["EXITGATE_SIM_CACHE"] = old


SIMULATED_SAMPLES = 30


@pytest.fixture(scope="session")
def simulated_run(compiled_run, sim_build_dir, tmp_path_factory):
    """A copy of the compiled run, simulated on the first SIMULATED_SAMPLES test samples
    (Verilator) and through `exitgate energy`. Tests that change it must copy it first
    (`copy_run`)."""
    import shutil
    from exitgate.cli import main
    from exitgate.sim.flow import run_sim

    run = tmp_path_factory.mktemp("simulated") / "run"
    shutil.copytree(compiled_run, run, ignore=shutil.ignore_patterns(
        "sim", "energy.json", "energy.png", "build", "report*"))
    r, _ = run_sim(run, limit=SIMULATED_SAMPLES, build_dir=sim_build_dir, log=lambda *a: None)
    assert r["errors"] == [] and r["activity"] and r["baseline"]["activity"]
    assert main(["energy", str(run)]) == 0
    return run


def copy_run(src, dst):
    """A copy of a RUN directory (the simulator builds it points to are shared, not copied)."""
    import shutil
    shutil.copytree(src, dst)
    return dst
