"""`exitgate report`: report.json merges every step's JSON under the documented key paths, the
page names the command of each missing step, and report.html renders in headless Chromium with
every plot embedded (no external resources)."""

import base64
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from exitgate.cli import main

PLOTS = {"thresholds", "throughput", "resources", "latency", "energy", "pareto"}


def _copy(src, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(src, run)
    return run


def _json(path):
    return json.loads(path.read_text())


def _embedded_pngs(page: str) -> list[bytes]:
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert all(s.startswith("data:image/png;base64,") for s in srcs), srcs
    return [base64.b64decode(s.split(",", 1)[1], validate=True) for s in srcs]


def _lists_under(key, obj):
    """Every list stored under `key` anywhere in a JSON tree."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key and isinstance(v, list):
                yield v
            yield from _lists_under(key, v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _lists_under(key, v)


def _assert_self_contained(page: str) -> None:
    assert not re.search(r"<(script|link|iframe)\b", page)
    assert not re.search(r"(src|href)=\"(?!data:)", page)
    assert "url(" not in page


def test_report_on_trained_run_names_missing_steps(trained_run, tmp_path, capsys):
    run = _copy(trained_run[0], tmp_path)
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {run}/report.html" in out
    assert f"`exitgate compile {run}`" in out and f"`exitgate energy {run}`" in out
    rep = _json(run / "report.json")
    train = _json(run / "train.json")
    assert rep["dataset"] == "digits" and rep["board"] is None
    assert rep["sections"] == {"train": train}
    assert rep["accuracy"] == train["accuracy"] and rep["exits"] == train["exits"]
    assert {k for k, v in rep["steps"].items() if v["present"]} == {"train"}
    assert rep["per_sample_summary"] is None and rep["collisions"] == {}
    assert rep["report"]["plots"] == ["report/thresholds.png"]
    page = (run / "report.html").read_text()
    _assert_self_contained(page)
    for step in ("compile", "sim", "energy", "build"):
        assert f"run <code>exitgate {step} {run}</code>" in page, step
    (png,) = _embedded_pngs(page)
    assert png == (run / "report" / "thresholds.png").read_bytes()

    assert main(["report", str(run)]) == 1
    assert "already holds results of `exitgate report`" in capsys.readouterr().err
    assert main(["report", str(run), "--force"]) == 0


def test_report_on_compiled_run(compiled_run, tmp_path, capsys):
    run = _copy(compiled_run, tmp_path)
    assert main(["report", str(run)]) == 0
    rep = _json(run / "report.json")
    m = _json(run / "hw" / "manifest.json")
    assert rep["board"] == "ulx3s-85f" == m["board"]
    assert rep["predicted"]["samples_per_cycle"] == m["predicted"]["samples_per_cycle"]
    assert rep["resources"]["estimated"] == m["resources"]["estimated"]
    assert rep["sections"]["compile"] == m
    assert rep["exits"][0]["threshold"] == _json(run / "train.json")["exits"][0]["threshold"]
    assert sorted(rep["report"]["plots"]) == [f"report/{p}.png" for p in
                                              ("resources", "thresholds", "throughput")]
    page = (run / "report.html").read_text()
    assert f"run <code>exitgate sim {run}</code>" in page
    assert f"run <code>exitgate compile {run}</code>" not in page
    assert len(_embedded_pngs(page)) == 3

    # build.json in run_build's schema (written here: a real build takes minutes)
    syn = {k: v + 1 for k, v in m["resources"]["estimated"].items()}
    (run / "build").mkdir()
    (run / "build" / "build.json").write_text(json.dumps({
        "board": m["board"], "resources": {"synthesised": syn, "baseline_synthesised": None},
        "early_exit": {"status": "built", "seeds": {"1": 31.5, "2": 29.0}, "seed": 1,
                       "router": "router1", "timed_out": [], "time_limit_s": 1800,
                       "seconds": 95.0},
        "baseline": {"status": "built", "seeds": {"1": None}, "seed": 1, "router": "router2",
                     "timed_out": [1], "time_limit_s": None, "seconds": 3000.0},
        "status": "built", "fmax_mhz": 31.5, "baseline_fmax_mhz": None, "clock_mhz": 25.0}))
    assert main(["report", str(run), "--force"]) == 0
    rep = _json(run / "report.json")
    assert rep["resources"]["synthesised"] == syn and rep["fmax_mhz"] == 31.5
    assert rep["resources"]["estimated"] == m["resources"]["estimated"]
    page = (run / "report.html").read_text()
    assert "Fmax: early exit 31.5 MHz, baseline - MHz" in page
    # how nextpnr got there, per design: seeds, the one kept, router, seeds stopped, the limit
    assert ("<td>early exit</td><td>1: 31.5, 2: 29.0</td><td>1</td><td>router1</td>"
            "<td>none</td><td>30 min</td><td>95</td>") in page
    assert ("<td>baseline</td><td>1: stopped</td><td>1</td><td>router2</td><td>1</td>"
            "<td>none</td><td>3000</td>") in page
    assert f"exitgate build {run}" not in page
    assert rep["throughput_at_fmax"] is None        # the baseline has no Fmax

    # both designs built: samples per second at each one's own Fmax, from compile's cycles
    build = _json(run / "build" / "build.json") | {"baseline_fmax_mhz": 40.0}
    (run / "build" / "build.json").write_text(json.dumps(build))
    assert main(["report", str(run), "--force"]) == 0
    fast = _json(run / "report.json")["throughput_at_fmax"]
    p = m["predicted"]
    assert fast["fmax_mhz"] == {"early_exit": 31.5, "baseline": 40.0} and fast["measured"] is None
    assert fast["predicted"]["early_exit_per_s"] == pytest.approx(p["samples_per_cycle"] * 31.5e6)
    assert fast["predicted"]["baseline_per_s"] == pytest.approx(
        p["baseline_samples_per_cycle"] * 40e6)
    assert fast["predicted"]["speedup"] == pytest.approx(p["speedup"] * 31.5 / 40)
    page = (run / "report.html").read_text()
    assert (f"At each design's own Fmax (predicted cycles): early exit "
            f"{fast['predicted']['early_exit_per_s']:,.0f} samples/s") in page
    assert f"(at each design's own Fmax: {fast['predicted']['speedup']:.2f}x)" in \
        capsys.readouterr().out


def test_report_errors_are_one_line(trained_run, tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 1
    assert "does not exist; create it with `exitgate train" in capsys.readouterr().err
    run = _copy(trained_run[0], tmp_path)
    (run / "energy.json").write_text(json.dumps({"exits": [{"index": 0, "energy_pj": 1.0}],
                                                 "energy": {"baseline_pj": 2.0}}))
    assert main(["report", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{run}/energy.json has no key 'energy.mean_pj'" in err
    assert f"re-run `exitgate energy {run} --force`" in err
    (run / "energy.json").write_text("{not json")
    assert main(["report", str(run)]) == 1
    assert f"{run}/energy.json is corrupt" in capsys.readouterr().err
    assert not (run / "report.json").exists()


@pytest.fixture
def sim_copy(simulated_run, tmp_path):
    """The session's simulated run (with energy), copied so the report may be written."""
    return shutil.copytree(simulated_run, tmp_path / "run")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("chromium not found: the report render check needs headless Chromium; install "
                "it with `apt-get install chromium` (.ci/run does)")


def _screenshot(page, png, tmp_path) -> np.ndarray:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={png}",
           "--window-size=1200,3000", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and png.is_file(), proc.stderr[-2000:]
    img = Image.open(png)
    assert img.format == "PNG" and img.size == (1200, 3000)
    return np.asarray(img.convert("RGB")).astype(int)


def _colourful(rgb: np.ndarray) -> int:
    """Pixels with a strong hue (the page's CSS is grey and pale; the plots are coloured)."""
    return int(((rgb.max(2) - rgb.min(2)) > 80).sum())


def test_report_on_simulated_run_renders(sim_copy, tmp_path, capsys):
    run = sim_copy
    energy = _json(run / "energy.json")
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"`exitgate build {run}`" in out and f"exitgate energy {run}" not in out
    rep = _json(run / "report.json")
    sim, train = _json(run / "sim" / "results.json"), _json(run / "train.json")

    # documented key paths, each from its step
    assert rep["accuracy"]["rtl"] == sim["accuracy"]["rtl"]
    assert rep["accuracy"]["quantised"] == train["accuracy"]["quantised"]
    assert rep["agreement"] == sim["agreement"]                 # RTL vs reference, whole
    assert rep["sections"]["train"]["agreement"] == train["agreement"]
    assert rep["collisions"]["agreement.samples"] == {"train": train["agreement"]["samples"],
                                                      "sim": sim["samples"]}
    assert rep["throughput"]["speedup"] == sim["throughput"]["speedup"]
    assert rep["energy"]["mean_pj"] == energy["energy"]["mean_pj"]
    assert rep["energy"]["baseline_pj"] == energy["energy"]["baseline_pj"]
    for e in rep["exits"]:
        k = e["index"]
        assert e["threshold"] == train["exits"][k]["threshold"]
        assert e["latency_cycles"] == sim["exits"][k]["latency_cycles"]
        assert e["energy_pj"] == energy["exits"][k]["energy_pj"]
    assert "per_sample" not in rep and "per_sample" not in rep["sections"]["sim"]
    assert not list(_lists_under("per_sample", rep))        # sim's rows are left out everywhere
    summary = rep["per_sample_summary"]
    assert sum(e["count"] for e in summary["exits"]) == summary["samples"] == sim["samples"] == 30
    for e in summary["exits"]:
        lat = [s["latency_cycles"] for s in sim["per_sample"] if s["exit"] == e["index"]]
        assert e["latency_cycles"]["min"] == min(lat) and e["latency_cycles"]["max"] == max(lat)

    # the page: self-contained, every plot embedded and decodable, the same bytes as on disk
    page_path = run / "report.html"
    page = page_path.read_text()
    _assert_self_contained(page)
    assert "Not available yet" in page and f"exitgate build {run}" in page
    assert f"exitgate energy {run}</code>" not in page
    for k in ("compute", "memory", "static"):   # the baseline's breakdown is in the table
        pj = energy["energy"]["baseline_breakdown"]["by_kind"][k]
        assert f"<td>{pj:,.0f}</td>" in page, k
    pngs = _embedded_pngs(page)
    assert {p.split("/")[1][:-4] for p in rep["report"]["plots"]} == PLOTS
    assert sorted(pngs) == sorted((run / p).read_bytes() for p in rep["report"]["plots"])
    for png in pngs:
        img = Image.open(io.BytesIO(png))
        assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 200
        img.verify()

    # rendered by Chromium: not blank, and the colour comes from the plots
    shot = _screenshot(page_path, tmp_path / "report.png", tmp_path)
    assert shot.std() > 20
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<img [^>]*>", "", page))
    shot_bare = _screenshot(bare, tmp_path / "bare.png", tmp_path)
    assert _colourful(shot) > 20_000 and _colourful(shot_bare) < 500, (
        _colourful(shot), _colourful(shot_bare))


def test_throughput_at_fmax_takes_measured_cycles_when_simulated():
    from exitgate.report import at_fmax
    m = {"predicted": {"samples_per_cycle": 0.008, "baseline_samples_per_cycle": 0.002}}
    sim = {"throughput": {"samples_per_cycle": 0.0075, "baseline_samples_per_cycle": 0.0015}}
    build = {"fmax_mhz": 100.0, "baseline_fmax_mhz": 125.0}
    fast = at_fmax(m, sim, build)
    assert fast["measured"]["early_exit_per_s"] == pytest.approx(750_000)
    assert fast["measured"]["baseline_per_s"] == pytest.approx(187_500)
    assert fast["measured"]["speedup"] == pytest.approx(4.0)        # 5x in cycles, x 100/125
    assert fast["predicted"]["speedup"] == pytest.approx(3.2)
    assert at_fmax(m, sim, {"fmax_mhz": 100.0}) is None
    assert at_fmax(m, None, build)["measured"] is None
