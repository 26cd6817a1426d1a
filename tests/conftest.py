"""Shared fixtures: a small trained digits run (trained once per test session).

The expensive session fixtures (the trained, compiled and simulated runs, and the simulator
build cache) are made once for the whole session, not once per xdist worker: the first worker to
ask makes them under a file lock in the directory the workers' temporary directories share
(pytest-xdist's recipe), and the others wait for it and use the same files. Tests that change a
run work on a copy (`copy_run`).
"""

import dataclasses
import json
import os
import shutil

import pytest
from filelock import FileLock

from exitgate.quant.config import load_config
from exitgate.quant.datasets import load_dataset


def pytest_configure(config):
    """Under pytest-xdist every worker trains with one torch thread: two workers, each training
    on two threads while the other one also runs yosys, Verilator or z3, oversubscribe the two
    cores (a training test took 5 s in one run of the suite and 46 s in another)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch
        torch.set_num_threads(1)


def _shared(tmp_path_factory, worker_id, name, make):
    """``root/name``, made by ``make(path)`` once per test session whichever worker asks first
    (without xdist: in this session's temporary directory). A make that fails leaves nothing
    behind that a later worker would take for done."""
    if worker_id == "master":
        root = tmp_path_factory.getbasetemp()
    else:
        root = tmp_path_factory.getbasetemp().parent
    path, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
            make(path)
            done.touch()
    return path


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def small_config():
    """The default digits architecture, trained briefly (bit-exactness does not depend on it)."""
    cfg = load_config()
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=12))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, worker_id, small_config, digits):
    """The trained run and what `run_train` returned (kept beside the run, not in it, so tests
    can compare it with the run's train.json)."""
    from exitgate.quant.flow import run_train

    def make(path):
        result = run_train(small_config, digits, path / "digits", progress=False,
                           float_baseline=True, log=lambda *a: None)
        (path / "result.json").write_text(json.dumps(result))

    path = _shared(tmp_path_factory, worker_id, "trained", make)
    return path / "digits", json.loads((path / "result.json").read_text())


@pytest.fixture(scope="session")
def compiled_run(trained_run, tmp_path_factory, worker_id):
    """A copy of the trained run, compiled for the ULX3S (ECP5-85F)."""
    from exitgate.cli import main
    from exitgate.hw.ram import poison_collisions

    def make(path):
        shutil.copytree(trained_run[0], path / "run")
        with poison_collisions(False):      # the shipped Verilog, whichever test asks first
            assert main(["compile", str(path / "run"), "--board", "ulx3s-85f"]) == 0

    return _shared(tmp_path_factory, worker_id, "compiled", make) / "run"


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
def sim_build_dir(tmp_path_factory, worker_id):
    """One simulator build cache for the session, shared by the workers (also for `exitgate sim`
    run by tests, through EXITGATE_SIM_CACHE): builds are keyed by the Verilog's hash and made
    under a lock (`exitgate.sim.runner.run_cocotb`), so every test simulating the same design
    shares one Verilator build."""
    path = _shared(tmp_path_factory, worker_id, "sim-builds", lambda path: None)
    old = os.environ.get("EXITGATE_SIM_CACHE")
    os.environ["EXITGATE_SIM_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("EXITGATE_SIM_CACHE", None)
    else:
        os.environ["EXITGATE_SIM_CACHE"] = old


SIMULATED_SAMPLES = 30


@pytest.fixture(scope="session")
def simulated_run(compiled_run, sim_build_dir, tmp_path_factory, worker_id):
    """A copy of the compiled run, simulated on the first SIMULATED_SAMPLES test samples
    (Verilator) and through `exitgate energy`. Tests that change it must copy it first
    (`copy_run`)."""
    from exitgate.cli import main
    from exitgate.sim.flow import run_sim

    def make(path):
        run = path / "run"
        shutil.copytree(compiled_run, run, ignore=shutil.ignore_patterns(
            "sim", "energy.json", "energy.png", "build", "report*"))
        r, _ = run_sim(run, limit=SIMULATED_SAMPLES, build_dir=sim_build_dir,
                       log=lambda *a: None)
        assert r["errors"] == [] and r["activity"] and r["baseline"]["activity"]
        assert main(["energy", str(run)]) == 0

    return _shared(tmp_path_factory, worker_id, "simulated", make) / "run"


def copy_run(src, dst):
    """A copy of a RUN directory (the simulator builds it points to are shared, not copied)."""
    shutil.copytree(src, dst)
    return dst
