"""Training speed of ``python train/main.py`` at its defaults, side by side with an older commit.

    python benchmarks/train_speed.py --config faces-scratch --ref-config faces   # vs b290396
    python benchmarks/train_speed.py --ref HEAD~3 --steps 60 --rounds 3 --json out.json

Each round runs the same command in this tree and in a git worktree of ``--ref`` (alternating, so
load changes hit both alike), for ``--steps`` steps with validation, pictures and saves out of the
way, and reads images/s from the runs' ``log.jsonl`` after ``--warmup`` steps. ``--threads`` is the
runs' ``OMP_NUM_THREADS``: one process with that many threads in the older tree, and, in a tree that
has ``train/launch.py``, as many single-thread data-parallel processes (its default on a CPU). Prints the median
of each and their ratio, with the CPU model and flags. Nothing else should run meanwhile.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import machine_info  # the benchmarks' one description of the machine

REPO = Path(__file__).resolve().parent.parent


def run_once(tree: Path, args, out: Path) -> list[float]:
    """images/s of each logged window after the warm-up, for one run in ``tree``."""
    config = args.ref_config if tree != REPO and args.ref_config else args.config
    cmd = [sys.executable, str(tree / "train" / "main.py"), "--config", config, "--max-steps",
           str(args.steps), "--out", str(out), "--val-root", "", "--log-every", str(args.log_every),
           "--sample-every", "1000000", "--save-every", "1000000", "--set", "snapshot_every=0", *args.extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)  # data paths are relative to it
    if proc.returncode != 0:
        raise SystemExit(f"training in {tree} failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    return [r["images_per_s"] for r in rows if r["step"] > args.warmup]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ref", default="b290396", help="the older commit to compare with")
    p.add_argument("--ref-config", default="faces", help="the config's name in the older commit")
    p.add_argument("--config", default="faces-scratch", help="training config (train/configs/NAME.json)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10, help="steps left out of the figures")
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="OMP_NUM_THREADS of both runs")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("extra", nargs="*", help="more train/main.py arguments for both runs (after --)")
    args = p.parse_args(argv)
    results: dict = {"machine": machine_info(torch.device("cpu")), "ref": args.ref, "config": args.config,
                     "steps": args.steps, "threads": args.threads, "runs": {"ref": [], "head": []}}
    with tempfile.TemporaryDirectory(prefix="partdisc-speed-") as tmp:
        old = Path(tmp) / "ref"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), args.ref], check=True,
                       capture_output=True)
        try:
            for i in range(args.rounds):
                for name, tree in (("ref", old), ("head", REPO)):
                    rates = run_once(tree, args, Path(tmp) / f"{name}{i}")
                    results["runs"][name].append(statistics.median(rates))
                    print(f"round {i + 1} {name}: {results['runs'][name][-1]:.1f} images/s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], capture_output=True)
    ref, head = (statistics.median(results["runs"][k]) for k in ("ref", "head"))
    results.update(ref_images_per_s=ref, head_images_per_s=head, ratio=head / ref)
    print(f"{results['machine']['cpu']} ({args.threads} threads): {args.ref} {ref:.1f} images/s, "
          f"this tree {head:.1f} images/s: {head / ref:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
