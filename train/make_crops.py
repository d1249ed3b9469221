"""Make a landmarks folder of face crops around the annotated points, to check a model on framings
unlike the training images (e.g. tight crops of the aligned CelebA faces).

    python train/make_crops.py --src ../shared/data/faces/celeba_dev --out /tmp/celeba_dev_tight --scale 2.2

Each crop is a square centred on the landmarks' bounding box, of side ``scale`` times the box's
larger side (about 2: eyebrows to chin; about 3.5: the whole head), optionally jittered; the
landmarks are moved into the crop's pixels. Output: ``<out>/<name>.png`` + ``landmarks.csv``.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from partdisc_core.data.landmarks import read_landmarks_csv
from partdisc_core.inputs import read_image

HEADER = ["image", "lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
          "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y"]


def crop_box(points: np.ndarray, scale: float, jitter: float, rng: np.random.Generator) -> tuple[float, float, float]:
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre = (lo + hi) / 2
    side = float((hi - lo).max()) * scale
    centre = centre + rng.uniform(-jitter, jitter, size=2) * side
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="a landmarks folder (images + landmarks.csv)")
    p.add_argument("--out", required=True)
    p.add_argument("--scale", type=float, default=2.2)
    p.add_argument("--jitter", type=float, default=0.0, help="random shift of the centre, fraction of the side")
    p.add_argument("--size", type=int, default=128, help="side of the saved crops in pixels")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    src, out = Path(args.src), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names, points = read_landmarks_csv(src / "landmarks.csv")
    rng = np.random.default_rng(args.seed)
    rows = []
    for name, pts in zip(names, points):
        image = read_image(src / name)
        x0, y0, side = crop_box(pts, args.scale, args.jitter, rng)
        # Pad by edge replication so crops reaching past the border stay valid.
        pil = Image.fromarray(image)
        crop = pil.transform((args.size, args.size), Image.Transform.EXTENT, (x0, y0, x0 + side, y0 + side),
                             resample=Image.Resampling.BILINEAR, fill=1)
        new = (pts - np.array([x0, y0])) * (args.size / side)
        stem = Path(name).with_suffix(".png").as_posix().replace("/", "_")
        crop.save(out / stem)
        rows.append([stem] + [f"{v:.3f}" for v in new.reshape(-1)])
    with open(out / "landmarks.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER[: 1 + points.shape[1] * 2] if points.shape[1] == 5 else
                        ["image"] + [f"p{i}_{c}" for i in range(points.shape[1]) for c in "xy"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} crops to {out}")


if __name__ == "__main__":
    main()
