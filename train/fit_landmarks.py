r"""Fit the landmarks-from-parts map of a checkpoint and save it beside its weights (``landmarks.json``):
the evaluation's linear regressor from the soft centroids of the K part maps to the 5 landmarks
(§4.2), in the model's input frame. ``load_model`` then gives ``model.landmarks`` and the demo draws
the predicted landmarks and names parts after them ("part 3, near the left eye").

    python train/fit_landmarks.py --checkpoint checkpoints/faces-k16 \
        --fit ../shared/data/faces/celeba_dev:300 ../shared/data/faces/mtfl_train:train:1000 \
        --score ../shared/data/faces/celeba_dev:-200 ../shared/data/faces/mtfl_train:holdout

``FOLDER:N`` is a folder's first N files, ``FOLDER:-N`` its last N, ``FOLDER:train:N`` N files spread
over what its hash hold-out (``--holdout-percent``, 5 % as in training) leaves, ``FOLDER:holdout`` that
hold-out. Scores are NME in percent of the inter-ocular distance, in the model's frame.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Subset

from partdisc_core import load_model
from partdisc_core.checkpoint import resolve_weights
from partdisc_core.data import build_dataset
from partdisc_core.evaluation import limit_dataset
from partdisc_core.keypoints import fit_from_centroids, landmarks_from_centroids, part_centroids, save_part_landmarks
from partdisc_core.metrics import nme


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder (landmarks.json is written there)")
    p.add_argument("--fit", nargs="+", required=True, metavar="FOLDER[:SPEC]", help="landmark folders to fit on")
    p.add_argument("--score", nargs="*", default=[], metavar="FOLDER[:SPEC]", help="held-out folders to score")
    p.add_argument("--holdout-percent", type=float, default=5.0)
    p.add_argument("--batch-size", type=int, default=64)
    return p.parse_args(argv)


def select(spec: str, size: int, holdout_percent: float):
    """A landmarks dataset at ``size`` pixels for ``FOLDER:N`` (its first N files), ``FOLDER:-N`` (its
    last N), ``FOLDER:train:N`` (N files spread over what the hash hold-out leaves) or
    ``FOLDER:holdout`` (the hold-out); a bare ``FOLDER`` is all of it."""
    folder, *rest = spec.split(":")
    if rest and rest[0] in ("train", "holdout"):
        data = build_dataset("landmarks", folder, split=rest[0], image_size=size, holdout_percent=holdout_percent)
        return limit_dataset(data, int(rest[1])) if rest[0] == "train" and len(rest) > 1 else data
    data = build_dataset("landmarks", folder, image_size=size)
    if not rest:
        return data
    n = int(rest[0])
    return Subset(data, range(len(data) + n, len(data)) if n < 0 else range(min(n, len(data))))


@torch.no_grad()
def centroids_and_landmarks(model, dataset, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Part centroids (N, K, 2) and landmarks (N, L, 2), both in the model's input frame (batch by
    batch: the maps themselves are not kept)."""
    cents, points = [], []
    for batch in DataLoader(dataset, batch_size=batch_size):
        size = batch["image"].shape[-1]
        maps = model.predict(batch["image"], return_attention=False, output_size=size).masks
        cents.append(part_centroids(maps, model.cfg.num_parts))
        points.append(batch["landmarks"].float().numpy())
    return np.concatenate(cents), np.concatenate(points)


def main(argv=None) -> dict:
    args = parse_args(argv)
    model = load_model(args.checkpoint)
    size = model.cfg.input_size
    fit = ConcatDataset([select(s, size, args.holdout_percent) for s in args.fit])
    centroids, points = centroids_and_landmarks(model, fit, args.batch_size)
    head = fit_from_centroids(centroids, points, model.cfg.num_parts, size, fitted_on=" + ".join(args.fit))
    head.scores = {}
    for spec in args.score:
        centroids, points = centroids_and_landmarks(model, select(spec, size, args.holdout_percent), args.batch_size)
        head.scores[spec] = round(float(nme(landmarks_from_centroids(head, centroids, size), points)), 2)
    path = save_part_landmarks(head, resolve_weights(args.checkpoint).parent)
    print(f"fitted on {len(fit)} images ({head.fitted_on}); NME (% inter-ocular): {head.scores}; wrote {path}")
    return head.scores


if __name__ == "__main__":
    main()
