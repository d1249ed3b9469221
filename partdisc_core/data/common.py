"""Helpers shared by the dataset files: loading and resizing an image file to a square tensor."""
from __future__ import annotations

import zlib

import numpy as np
import torch
import torch.nn.functional as F

from ..inputs import to_image_tensors

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm")


def load_square(path, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Read an image file, squash it to (3, size, size) in [0, 1]; also return its (H, W)."""
    t = to_image_tensors(path)[0]
    h, w = t.shape[-2:]
    if (h, w) != (size, size):
        t = F.interpolate(t.unsqueeze(0), size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return t.clamp_(0, 1), (h, w)


def scale_points(points: np.ndarray, orig_hw: tuple[int, int], size: int) -> np.ndarray:
    """Pixel coordinates (x, y) of an (H, W) image -> the squashed size x size frame."""
    h, w = orig_hw
    return points * np.array([size / w, size / h], dtype=np.float32)


def landmark_item(path, points: np.ndarray, size: int) -> dict:
    """The item of a landmark dataset: the squashed image, its points in that frame and in the
    file's own pixels, the file's (H, W) and its path."""
    image, hw = load_square(path, size)
    return {"image": image, "landmarks": torch.from_numpy(scale_points(points, hw, size)),
            "orig_landmarks": torch.from_numpy(points.copy()), "orig_size": torch.tensor(hw), "path": str(path)}


def is_holdout(relpath: str, percent: float) -> bool:
    """Deterministic hold-out membership of a file (by a CRC of its path relative to the dataset
    root): the same files are held out on every machine, whatever order they are listed in."""
    if percent <= 0:
        return False
    return zlib.crc32(str(relpath).replace("\\", "/").encode()) % 10000 < percent * 100


def split_filter(relpaths: list[str], split: str, holdout_percent: float) -> list[int]:
    """Indices kept for ``split``: "train" drops the hold-out files, "holdout" keeps only them,
    anything else ("all", "test", ...) keeps everything."""
    if holdout_percent <= 0 or split not in ("train", "holdout"):
        return list(range(len(relpaths)))
    want = split == "holdout"
    return [i for i, r in enumerate(relpaths) if is_holdout(r, holdout_percent) == want]
