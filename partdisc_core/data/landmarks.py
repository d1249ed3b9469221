"""``landmarks``: a folder of images with a ``landmarks.csv`` (the layout of ../shared/data/faces).

Header: ``image,lefteye_x,lefteye_y,righteye_x,righteye_y,nose_x,nose_y,leftmouth_x,leftmouth_y,
rightmouth_x,rightmouth_y``; ``image`` is relative to the folder, coordinates are pixels of that
file. Training ignores the points; evaluation uses them.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from . import register_dataset
from .common import landmark_item, split_filter

LANDMARK_COLUMNS = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")


def read_landmarks_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """(image names, (N, P, 2) float32 xy) from a landmarks.csv."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or header[0] != "image" or (len(header) - 1) % 2:
            raise ValueError(f"{path} does not look like a landmarks.csv (header {header})")
        names, points = [], []
        for row in reader:
            if not row:
                continue
            names.append(row[0])
            points.append([float(v) for v in row[1:]])
    return names, np.asarray(points, dtype=np.float32).reshape(len(names), -1, 2)


class LandmarksDataset(Dataset):
    """Images + landmarks; ``indices`` selects a subset (e.g. a fit/test split of a dev folder).
    ``csv_name``: the points file (``landmarks68.csv`` for the dense figures of
    :mod:`partdisc_core.dense68`); ``names``: only these images (paths relative to the folder)."""

    def __init__(self, root, image_size: int = 128, indices=None, split: str = "all",
                 holdout_percent: float = 0.0, csv_name: str = "landmarks.csv", names=None) -> None:
        self.root = Path(root)
        csv_path = self.root / csv_name
        if not csv_path.is_file():
            raise FileNotFoundError(f"{csv_path} not found: a landmarks folder needs images + {csv_name}")
        names_all, points = read_landmarks_csv(csv_path)
        if names is not None:  # these images, in this order (e.g. another CSV's test split)
            row = {n: i for i, n in enumerate(names_all)}
            missing = [n for n in names if n not in row]
            if missing:
                raise ValueError(f"{csv_path} has no row for {len(missing)} image(s), e.g. {missing[0]}")
            take = [row[n] for n in names]
            names_all, points = [names_all[i] for i in take], points[take]
        names = names_all
        keep = split_filter(names, split, holdout_percent)
        if len(keep) != len(names):
            names, points = [names[i] for i in keep], points[keep]
        if indices is not None:
            idx = list(indices)
            names = [names[i] for i in idx]
            points = points[idx]
        self.names, self.points, self.image_size = names, points, image_size

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        return landmark_item(self.root / self.names[index], self.points[index], self.image_size)


def split_landmarks(root, image_size: int, num_fit: int, max_images: int | None = None
                    ) -> tuple[LandmarksDataset, LandmarksDataset]:
    """A landmarks folder split in file order: the first ``num_fit`` images fit the landmark
    regressor, the rest (up to ``max_images`` in all) are measured. The one split used by training's
    validation and by ``train/evaluate.py --data DIR --split-fit N``."""
    n = len(LandmarksDataset(root, image_size))
    if max_images is not None:
        n = min(n, int(max_images))
    if not 0 < num_fit < n:
        raise ValueError(f"the fit split must hold between 1 and {n - 1} of the {n} images of {root}, got {num_fit}")
    return (LandmarksDataset(root, image_size, indices=range(num_fit)),
            LandmarksDataset(root, image_size, indices=range(num_fit, n)))


@register_dataset("landmarks")
def build_landmarks(root=None, split: str = "train", image_size: int = 128, indices=None,
                    holdout_percent: float = 0.0, **_: object) -> Dataset:
    if root is None:
        raise ValueError("the landmarks dataset needs --data-root DIR (a folder with landmarks.csv)")
    return LandmarksDataset(root, image_size, indices, split=split, holdout_percent=holdout_percent)
