#!/usr/bin/env python
"""Speed figures of issue 6, measured in one run, with a correctness check of the fast paths.

Sections (``--only`` picks some; all run by default), one module each in this folder:

- ``latency`` (``latency.py``): one image on the CPU (``--cpu-threads``, 2 by default, as in the
  issue's 2-core CPU) and, when the main device is CUDA, on the GPU: ResNet variant (128 px) part
  maps through ``model.predict`` and through the tensor path (``model.part_maps``), one
  reconstruction, one swap (``swap_parts``: both swapped images and both plain reconstructions);
  DINO variant (256 px) part maps. Each in float32 and in bf16 autocast.
- ``train`` (``training.py``): training steps (forward of both views, the four losses, backward,
  AdamW) at batch 32 on a GPU (``--train-batch``): images/s (one image = one pair of views),
  ms/step, peak memory. Modes: ``fp32`` (plain float32, no TF32, foreach AdamW) and ``opt`` (bf16
  autocast, channels_last, TF32, fused AdamW on CUDA, ``--compile`` optionally). On the CPU also
  the face recipes of ``train/configs`` at their real settings.
- ``infer`` (``inference.py``): part-map throughput at batch 32 on the main device (tensor path
  and ``predict``).
- ``data`` (``data.py``): decoding one image in a loader process (images/s) and the batched paired
  warps of ``partdisc_core.augment`` on the device; how many loader workers each training figure
  needs.
- ``check`` (``checks.py``): the optimised paths against the plain float32 path on the same
  inputs, with stated tolerances (inference maps and reconstructions, training losses and
  gradients).

Timing (``common.py``): warm-up calls first, device synchronisation around every timed call,
median (and min) of the repeats. The machine's load average is recorded before and after: on a
shared CPU the median moves with other people's work, the min much less.

    python benchmarks/bench.py                                # full settings, CUDA when present
    python benchmarks/bench.py --device cpu --json cpu.json   # CPU figures (small training batch)
    python benchmarks/bench.py --quick --json quick.json      # tiny models, seconds (CI)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: it reads this once

import torch  # noqa: E402

import partdisc_core  # noqa: E402
from checks import run_check  # noqa: E402
from common import loadavg, machine_info, resnet_checkpoint  # noqa: E402
from common import time_calls  # noqa: E402,F401  (onnx_latency.py imports it, loadavg and machine_info from here)
from data import run_data  # noqa: E402
from inference import run_infer  # noqa: E402
from latency import run_latency  # noqa: E402
from training import run_train  # noqa: E402

SECTIONS = ("latency", "train", "infer", "data", "check")
RUNNERS = {"latency": run_latency, "train": run_train, "infer": run_infer, "data": run_data, "check": run_check}

# Figures of the original implementation quoted in issue 6 (for the table only).
ORIGINAL = {
    "latency.cpu.resnet.predict": "39.5 ms",
    "latency.cpu.resnet.reconstruct": "84 ms",
    "latency.cpu.dino.predict": "1310 ms",
    "latency.cuda.dino.predict": "13.8 ms",
    "train.dino.fp32": "109 img/s, 8.8 GiB (H200)",
    "train.dino.opt": "241 img/s TF32 / 206 bf16 (H200)",
    "train.resnet.opt": "450-540 img/s TF32 (H200)",
    "infer.dino.tensor": "856 img/s (H200)",
}
# Targets of issue 6: (kind, value); kinds "ms" (at most) and "ips" (at least), "gib" (at most).
TARGETS = {
    "latency.cpu.resnet.predict": ("ms", 20.0),
    "latency.cpu.resnet.maps_tensor": ("ms", 20.0),
    "latency.cpu.resnet.swap": ("ms", 100.0),
    "latency.cpu.shipped.predict": ("ms", 20.0),
    "latency.cpu.dino.predict": ("ms", 600.0),
    "train.dino.opt": ("ips", 1000.0),
    "train.resnet.opt": ("ips", 3000.0),
    "infer.dino.tensor": ("ips", 3000.0),
}
TRAIN_MEMORY_TARGET_GIB = {"train.dino.opt": 5.0}


# --- the table -----------------------------------------------------------------------------------
def _base(key: str) -> str:
    """The key of a row's target and original figure: latency rows without their precision."""
    return key.rsplit(".", 1)[0] if key.startswith("latency.") else key


def _target_text(key: str) -> str:
    """The issue's target for a row, as text ("" when it has none)."""
    base = _base(key)
    if base not in TARGETS:
        return ""
    kind, value = TARGETS[base]
    text = f"< {value:g} ms" if kind == "ms" else f">= {value:g} img/s"
    if key in TRAIN_MEMORY_TARGET_GIB:
        text += f", < {TRAIN_MEMORY_TARGET_GIB[key]:g} GiB"
    return text


def _meets(key: str, row: dict, quick: bool) -> str:
    """"yes" / "no" when the row has a target it can be judged by here, else ""."""
    base = _base(key)
    if quick or base not in TARGETS:
        return ""
    kind, value = TARGETS[base]
    if kind == "ms":
        return "yes" if row["median_ms"] < value else "no"
    if row.get("device") != "cuda":
        return ""  # the throughput targets are for a GPU
    ok = row["images_per_s"] >= value
    mem = TRAIN_MEMORY_TARGET_GIB.get(key)
    if mem is not None and row.get("peak_gib") is not None:
        ok = ok and row["peak_gib"] < mem
    return "yes" if ok else "no"


def print_table(report: dict) -> None:
    """The machine line, one line per timed row, then the correctness checks."""
    res = report["results"]
    quick = report["settings"]["quick"]
    lines = [f"{'figure':38s} {'median':>10s} {'min':>10s} {'cpu':>10s} {'img/s':>9s} {'peak GiB':>8s}  "
             f"{'target':18s} {'met':3s}  original"]
    for key, row in res.items():
        if key.startswith("check."):
            continue
        if "skipped" in row:
            lines.append(f"{key:38s} skipped: {row['skipped']}")
            continue
        ips = row.get("images_per_s") or row.get("images_per_s_per_worker")
        peak = row.get("peak_gib")
        lines.append(f"{key:38s} {row['median_ms']:8.1f}ms {row['min_ms']:8.1f}ms {row['cpu_ms']:8.1f}ms "
                     f"{'' if ips is None else f'{ips:9.1f}':>9s} {'' if peak is None else f'{peak:8.2f}':>8s}  "
                     f"{_target_text(key):18s} {_meets(key, row, quick):3s}  {ORIGINAL.get(_base(key), '')}")
    if any(k.startswith("check.") for k in res):
        lines.append("")
        lines.append("correctness (optimised vs plain float32, same inputs):")
    for key, row in res.items():
        if not key.startswith("check."):
            continue
        shown = {k: round(v, 6) for k, v in row.items() if isinstance(v, float)}
        lines.append(f"  {key:34s} {'PASS' if row['passed'] else 'FAIL ' + ','.join(row['failed'])}  {shown}")
    m = report["machine"]
    print(f"\nmachine: {m.get('cpu')} ({m.get('cpu_count')} cores, {m.get('cpu_bf16')}), "
          f"gpu: {m.get('gpu', 'none')}, torch {m['torch']}, {m['torch_threads']} threads, "
          f"OMP_WAIT_POLICY={m.get('omp_wait_policy')}; "
          f"load average {report['load_before']} -> {report['load_after']}; seconds per section {report['section_s']}")
    print("\n".join(lines))


def parse_args(argv=None) -> argparse.Namespace:
    """The command line; ``args.sections`` is the list of ``--only`` (unknown names are an error)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    p.add_argument("--quick", action="store_true", help="tiny models, tiny batches, few repeats (CI, seconds)")
    p.add_argument("--json", help="write the results to this JSON file")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    p.add_argument("--cpu-threads", type=int, default=2,
                   help="torch threads for the CPU figures (2: the issue's 2-core CPU; 0: torch's default)")
    p.add_argument("--checkpoint", help="ResNet model to time (default: the shipped checkpoint when present, "
                                        "else a random model of the same architecture; 'none': always random)")
    p.add_argument("--dino-weights", default="random", help="DINO ViT weights: random (timing), hub or a file")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats of each latency figure")
    p.add_argument("--train-batch", type=int, default=None, help="default 32 on CUDA, 4 on CPU, 2 with --quick")
    p.add_argument("--train-steps", type=int, default=None, help="timed steps (default 20 on CUDA, 3 on CPU)")
    p.add_argument("--infer-batch", type=int, default=None, help="default 32 on CUDA, 8 on CPU, 2 with --quick")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="leave convolutions in NCHW in the optimised paths")
    p.add_argument("--compile", action="store_true", help="torch.compile the optimised paths (slow to start)")
    p.add_argument("--cpu-bf16-train", action="store_true", help="bf16 autocast in the CPU 'opt' training mode")
    p.add_argument("--data-root", help="image folder for the decode check (default: CelebA dev when present)")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = sorted(set(args.sections) - set(SECTIONS))
    if bad:
        p.error(f"unknown sections {bad}; choose from {SECTIONS}")
    if args.repeats is None:
        args.repeats = 2 if args.quick else 15
    return args


def main_device(args) -> torch.device:
    """``--device``: CUDA when present for "auto"; an error when CUDA is asked for but absent."""
    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but CUDA is not available here")
    return device


def new_report(args, device: torch.device) -> dict:
    """The report before any section ran: the machine, the load and the settings."""
    settings = {"device": str(device), "quick": args.quick, "sections": args.sections,
                "cpu_threads": torch.get_num_threads(), "channels_last": args.channels_last,
                "compile": args.compile, "package": partdisc_core.__name__,
                "checkpoint": resnet_checkpoint(args), "dino_weights": args.dino_weights,
                "repeats": args.repeats}
    return {"machine": machine_info(device), "load_before": loadavg(), "settings": settings, "results": {}}


def main(argv=None) -> dict:
    """Run the chosen sections in their fixed order, print the table, write the JSON."""
    args = parse_args(argv)
    if args.cpu_threads > 0:
        torch.set_num_threads(args.cpu_threads)
    device = main_device(args)
    report = new_report(args, device)
    t0 = time.perf_counter()
    report["section_s"] = {}
    for section in SECTIONS:
        if section in args.sections:
            start = time.perf_counter()
            RUNNERS[section](args, report["results"], device)
            report["section_s"][section] = round(time.perf_counter() - start, 2)
    report["load_after"] = loadavg()
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    report["failed_checks"] = [k for k, v in report["results"].items() if k.startswith("check.") and not v["passed"]]
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if report["failed_checks"]:
        print(f"\ncorrectness check FAILED: {report['failed_checks']}", file=sys.stderr)
    return report


if __name__ == "__main__":
    rep = main()
    sys.exit(1 if rep["failed_checks"] else 0)
