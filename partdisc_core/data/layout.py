"""Small helpers shared by the benchmark loaders (celeba, aflw, cub, deepfashion, partimagenet):
finding files in the official layouts, reading whitespace lists, cropping and resizing."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..inputs import to_image_tensors

SPLITS = ("train", "val", "test")
VAL_EVERY = 10
"""Datasets without an official validation split use every 10th training image as ``val``."""


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


def load_tensor(path) -> torch.Tensor:
    """(3, H, W) float in [0, 1] (raises ImageInputError for unreadable files)."""
    return to_image_tensors(path)[0]


def resize_image(t: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased) resize of a (3, H, W) tensor to size x size or (h, w)."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(t.shape[-2:]) == hw:
        return t
    return F.interpolate(t.unsqueeze(0), size=hw, mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)


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
    r = resize_image(t, (nh, nw))
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
