"""``benchmarks/bench.py --quick`` runs on the CPU in seconds and reports every figure of issue 6.

One subprocess run (tiny models, one thread) is shared by the tests; they check the JSON's keys
and the consistency of its numbers, never how fast anything is.
"""
import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench.py"
MODULES = ("bench", "common", "latency", "training", "inference", "data", "checks")

LATENCY = [f"latency.cpu.resnet.{row}.{p}" for row in ("predict", "maps_tensor", "reconstruct", "swap")
           for p in ("fp32", "bf16")] + [f"latency.cpu.dino.predict.{p}" for p in ("fp32", "bf16")]
TRAIN = [f"train.{v}.{m}" for v in ("resnet", "dino") for m in ("fp32", "opt")]
INFER = [f"infer.{v}.{r}" for v in ("resnet", "dino") for r in ("tensor", "predict")]
DATA = ["data.decode", "data.warps.resnet", "data.warps.dino"]
CHECKS = ([f"check.{v}.maps.{m}" for v in ("resnet", "dino") for m in ("fp32_fast", "bf16")]
          + [f"check.resnet.swap.{m}" for m in ("fp32_fast", "bf16")]
          + [f"check.train.{v}.{m}" for v in ("resnet", "dino") for m in ("fp32_fast", "bf16")])


@pytest.fixture
def bench_module(monkeypatch):
    """Import a module of benchmarks/ by name, as its scripts import each other (their folder on
    sys.path), without leaving them in sys.modules for the rest of the session."""
    monkeypatch.syspath_prepend(str(BENCH.parent))
    for name in MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield importlib.import_module
    for name in MODULES:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--device", "cpu", "--cpu-threads", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"bench.py failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return json.loads(out.read_text()), proc.stdout


def test_every_figure_is_reported(run):
    report, _ = run
    missing = [k for k in LATENCY + TRAIN + INFER + DATA + CHECKS if k not in report["results"]]
    assert not missing, f"missing figures: {missing}"
    assert report["settings"]["quick"] is True and report["settings"]["device"] == "cpu"
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["torch"]
    assert set(report["section_s"]) == {"latency", "train", "infer", "data", "check"}


def test_timings_are_consistent(run):
    results = run[0]["results"]
    for key in LATENCY + TRAIN + INFER + DATA:
        row = results[key]
        assert "skipped" not in row, f"{key} was skipped: {row}"
        assert all(math.isfinite(row[k]) and row[k] > 0 for k in ("median_ms", "min_ms", "max_ms", "cpu_ms")), key
        assert row["min_ms"] <= row["median_ms"] <= row["max_ms"], key
    for key in TRAIN + INFER:
        row = results[key]
        assert row["images_per_s"] == pytest.approx(row["batch"] * 1000.0 / row["median_ms"]), key
        assert row["peak_gib"] is None  # peak memory is measured on CUDA only
    assert results["train.resnet.opt"]["channels_last"] and not results["train.resnet.fp32"]["channels_last"]
    assert results["latency.cpu.dino.predict.fp32"]["image_px"] == 256


def test_fast_paths_agree_with_float32(run):
    results = run[0]["results"]
    assert run[0]["failed_checks"] == []
    for key in CHECKS:
        assert results[key]["passed"], (key, results[key])
    # Same-precision optimisations (channels_last) must match float32 almost exactly.
    assert results["check.resnet.maps.fp32_fast"]["max_abs"] < 1e-4
    assert results["check.train.resnet.fp32_fast"]["loss_rel"] < 1e-4
    # bf16 is not bit-identical: the check must have measured a real difference.
    assert results["check.resnet.swap.bf16"]["max_abs"] > 0


def test_table_is_printed(run):
    _, stdout = run
    assert "figure" in stdout and "correctness" in stdout
    assert "latency.cpu.resnet.swap.fp32" in stdout


def test_judge_flags_results_beyond_tolerance(bench_module):
    checks = bench_module("checks")
    bad = checks._judge({"max_abs": 0.5, "mean_abs": 0.1, "label_agreement": 0.5}, checks.TOL_BF16, "maps")
    assert not bad["passed"] and set(bad["failed"]) == {"max_abs", "mean_abs", "label_agreement"}
    good = checks._judge({"loss_rel": 0.0, "grad_cos": 1.0}, checks.TOL_FP32, "train")
    assert good["passed"]
    worse = checks._judge({"loss_rel": 0.5, "grad_cos": 0.2}, checks.TOL_BF16, "train")
    assert worse["failed"] == ["loss_rel", "grad_cos"]


def test_unknown_section_is_rejected(bench_module):
    bench = bench_module("bench")
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "latency,nonsense"])
