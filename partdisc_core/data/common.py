"""Helpers shared by the dataset files: reading images into tensors, finding files in the official
layouts of the benchmark datasets, reading their whitespace lists, splits, cropping and
letterboxing images and masks, and the item of a landmark dataset."""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..inputs import resize_tensor, to_image_tensors

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm")
SPLITS = ("train", "val", "test")
VAL_EVERY = 10
"""Datasets without an official validation split use every 10th training image as ``val``."""


# --- images ----------------------------------------------------------------------------------------
def load_tensor(path) -> torch.Tensor:
    """(3, H, W) float in [0, 1] (raises ImageInputError for unreadable files)."""
    return to_image_tensors(path)[0]


def load_square(path, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Read an image file, squash it to (3, size, size) in [0, 1]; also return its (H, W)."""
    t = load_tensor(path)
    return resize_tensor(t, size).clamp_(0, 1), tuple(t.shape[-2:])


def resize_mask(mask: np.ndarray | torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of an (H, W) integer mask to (size, size) or (h, w); long tensor."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    m = torch.tensor(np.array(mask), dtype=torch.float32)
    if tuple(m.shape) != hw:
        m = F.interpolate(m[None, None], size=hw, mode="nearest-exact")[0, 0]
    return m.round().long()


def crop_box(t: torch.Tensor, box: tuple[float, float, float, float]) -> tuple[torch.Tensor, tuple[int, int]]:
    """Crop (3, H, W) to the integer pixel box (x0, y0, x1, y1) clipped to the image; returns the
    crop and its top-left (x0, y0) offset."""
    h, w = t.shape[-2:]
    x0, y0, x1, y1 = box
    x0, y0 = int(max(0, np.floor(x0))), int(max(0, np.floor(y0)))
    x1, y1 = int(min(w, np.ceil(x1))), int(min(h, np.ceil(y1)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"crop box {box} is empty inside a {w}x{h} image")
    return t[:, y0:y1, x0:x1], (x0, y0)


def letterbox(t: torch.Tensor, size: int, fill: float = 1.0) -> tuple[torch.Tensor, float, tuple[int, int]]:
    """Resize (3, H, W) so its longer side is ``size`` and pad to size x size (centred) with
    ``fill``; returns the image, the scale and the (left, top) padding."""
    h, w = t.shape[-2:]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    r = resize_tensor(t, (nh, nw))
    out = torch.full((3, size, size), float(fill), dtype=r.dtype)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[:, top:top + nh, left:left + nw] = r
    return out, scale, (left, top)


def letterbox_mask(mask: np.ndarray, size: int, fill: int = 0) -> torch.Tensor:
    """The mask version of :func:`letterbox` (nearest neighbour)."""
    h, w = mask.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    r = resize_mask(mask, (nh, nw))
    out = torch.full((size, size), int(fill), dtype=torch.long)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = r
    return out


# --- landmarks -------------------------------------------------------------------------------------
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


# --- official layouts and splits -------------------------------------------------------------------
def check_split(split: str, allowed: Sequence[str] = SPLITS) -> str:
    if split not in allowed:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(allowed)}")
    return split


def find_path(root: Path, names: Iterable[str], subdirs: Iterable[str] = ("",), kind: str = "file",
              required: bool = True) -> Path | None:
    """The first ``root/subdir/name`` that exists (a file or, with kind="dir", a folder)."""
    root = Path(root)
    tried = []
    for sub in subdirs:
        for name in names:
            p = root / sub / name if sub else root / name
            tried.append(p)
            if (kind == "dir" and p.is_dir()) or (kind == "file" and p.is_file()):
                return p
    if required:
        listed = ", ".join(str(t.relative_to(root)) for t in tried)
        raise FileNotFoundError(f"{root}: none of [{listed}] exists; see docs/datasets.md for the expected layout")
    return None


def read_rows(path: Path) -> list[list[str]]:
    """Non-empty lines of a text file split on whitespace."""
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def every_nth(indices: Sequence[int], n: int = VAL_EVERY) -> list[int]:
    return [i for j, i in enumerate(indices) if j % n == 0]


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
