"""Which fill of a face crop's outside gives the best parts (issue 27, item 3: smeared stripes).

A face crop runs past the photo where the face is near its edge; the pixels it adds must be filled
(``partdisc_core.facecrop.fill_outside``). This scores each fill by the parts the model paints, on
the Helen faces with 68 annotated points (``../shared/data/faces/helen_val68``, validation only),
in two settings:

* ``app``: ``crop_to_face`` as the demo runs it (Haar box, 1.75 x framing). Helen's photos are tight
  256-px crops, so the square (~320 px) covers the whole photo and runs past it on every side
  (~37 % of the crop, most of it above the head).
* ``side``: the photo's own frame (face centred, tighter framing) with a strip of 20-35 % of it cut
  off on one side (left, top, right, bottom in turn) and filled; ``photo`` is the uncut image.

Figures (percent): the dense face figures of ``partdisc_core.dense68`` on the whole crop (``spill``
counts parts on the fill's scenery too); ``fill_part``: the share of the filled pixels labelled a
part; ``*_real``: coverage, spill and NMI over the photo's own pixels and landmarks only.

    OMP_NUM_THREADS=1 python benchmarks/crop_fill.py --checkpoint default --checkpoint checkpoints/faces-k8 \
        --json /tmp/crop_fill.json
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from partdisc_core import load_model  # noqa: E402
from partdisc_core.dense68 import Dense68Accumulator, face_region, scenery  # noqa: E402
from partdisc_core.facecrop import PAD_MODES, box_mask, crop_to_face, fill_outside  # noqa: E402
from partdisc_core.inputs import read_image  # noqa: E402
from partdisc_core.metrics import ContingencyAccumulator  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "faces" / "helen_val68"
CUTS = (0.20, 0.25, 0.30, 0.35)
SIDES = ("left", "top", "right", "bottom")


class RealAreaAccumulator:
    """Coverage, spill and landmark NMI over the photo's own pixels, and the share of the filled
    pixels labelled as a part."""

    def __init__(self) -> None:
        self.pairs = ContingencyAccumulator(68, 1)
        self.sums = dict.fromkeys(("face", "covered", "scenery", "spilled", "fill", "fill_part", "pixels"), 0)

    def update(self, labels: np.ndarray, points: np.ndarray, background: int, valid: np.ndarray) -> None:
        h, w = labels.shape
        xy = np.round(points).astype(np.int64)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        inside[inside] = valid[xy[inside, 1], xy[inside, 0]]
        self.pairs.update(np.flatnonzero(inside), labels[xy[inside, 1], xy[inside, 0]])
        part = labels != background
        region = face_region(points, (h, w))
        far = scenery(points, region)
        for key, mask in (("face", region & valid), ("scenery", far & valid), ("fill", ~valid)):
            self.sums[key] += int(mask.sum())
        self.sums["covered"] += int((part & region & valid).sum())
        self.sums["spilled"] += int((part & far & valid).sum())
        self.sums["fill_part"] += int((part & ~valid).sum())
        self.sums["pixels"] += h * w

    def result(self) -> dict:
        s = self.sums
        share = lambda a, b: round(100.0 * s[a] / s[b], 2) if s[b] else float("nan")  # noqa: E731
        return {"fill_part": share("fill_part", "fill"), "coverage_real": share("covered", "face"),
                "spill_real": share("spilled", "scenery"), "nmi68_real": round(self.pairs.nmi_ari()[0], 2),
                "fill_share": share("fill", "pixels")}


def load_faces(root: Path, limit: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    with open(root / "landmarks68.csv", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    rows = rows[:limit] if limit else rows
    return [(read_image(root / r[0]), np.asarray(r[1:], np.float64).reshape(68, 2)) for r in rows]


def side_cut(shape: tuple[int, int], index: int) -> tuple[int, int, int, int]:
    """The valid box of the photo's frame with one side's strip cut off (side and share by index)."""
    h, w = shape
    side, cut = SIDES[index % 4], CUTS[(index // 4) % len(CUTS)]
    dx, dy = round(cut * w), round(cut * h)
    return {"left": (dx, 0, w, h), "top": (0, dy, w, h), "right": (0, 0, w - dx, h),
            "bottom": (0, 0, w, h - dy)}[side]


def measure(model, faces, setting: str, modes: tuple[str, ...]) -> dict:
    background = model.cfg.num_parts
    names = modes + (("photo",) if setting == "side" else ())
    dense = {m: Dense68Accumulator() for m in names}
    real = {m: RealAreaAccumulator() for m in names}
    skipped = 0
    for i, (image, points) in enumerate(faces):
        if setting == "app":
            res = crop_to_face(image, pad_mode="edge")
            if not res.found:
                skipped += 1
                continue
            base, valid_box, pts = res.image, res.valid_box, points - res.box[:2]
        else:
            base, valid_box, pts = image, side_cut(image.shape[:2], i), points
        crops = [fill_outside(base, valid_box, m) for m in modes] + ([base] if setting == "side" else [])
        valid = box_mask(valid_box, base.shape[1::-1])
        with torch.inference_mode():
            labels = model.predict(crops, output_size="input", return_attention=False).labels
        for name, lab in zip(names, labels):
            lab = lab.numpy()
            dense[name].update(lab, pts, background)
            real[name].update(lab, pts, background, valid)
    out = {m: {k: round(v, 2) if isinstance(v, float) else v for k, v in dense[m].result().items()} | real[m].result()
           for m in names}
    return {"skipped_no_face": skipped, "fills": out}


def table(results: dict) -> str:
    keys = ("nmi68", "ari68", "bg68", "coverage", "spill", "fill_part", "coverage_real", "spill_real", "nmi68_real")
    lines = []
    for ckpt, per_setting in results.items():
        for setting, res in per_setting.items():
            lines.append(f"\n{ckpt} / {setting} ({next(iter(res['fills'].values()))['num_dense68']} faces, "
                         f"fill {next(iter(res['fills'].values()))['fill_share']} % of the pixels)")
            lines.append("| fill | " + " | ".join(keys) + " |")
            lines.append("|---" * (len(keys) + 1) + "|")
            for mode, r in res["fills"].items():
                lines.append(f"| {mode} | " + " | ".join(f"{r[k]:.1f}" for k in keys) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--checkpoint", action="append", default=None,
                   help="'default' (the shipped model) or a folder; repeat for several (default: default)")
    p.add_argument("--settings", default="app,side")
    p.add_argument("--modes", default=",".join(PAD_MODES))
    p.add_argument("--limit", type=int, default=None, help="only the first N faces")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if not (args.data / "landmarks68.csv").is_file():
        sys.exit(f"no landmarks68.csv under {args.data}")
    torch.set_num_threads(args.threads)
    faces = load_faces(args.data, args.limit)
    modes = tuple(args.modes.split(","))
    results: dict = {}
    for ckpt in args.checkpoint or ["default"]:
        model = load_model(None if ckpt == "default" else ckpt)
        for setting in args.settings.split(","):
            start = time.perf_counter()
            results.setdefault(ckpt, {})[setting] = measure(model, faces, setting, modes)
            print(f"{ckpt} {setting}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
