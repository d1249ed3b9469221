"""The exported part format, in one place: palette PNG label maps and the part-centroid CSV.

Written by ``train/export.py`` (a folder of photos) and by the demo's gallery (a zip of up to 16
faces), so both give files that the same code reads:

* label map: a mode "P" PNG at the image's size, value k - 1 for part k (the colours of
  :func:`partdisc_core.viz.part_colors`), value K for the background (the last palette entry);
* centroid CSV: ``image,width,height,part1_x,part1_y,...,partK_x,partK_y``, the soft centroids of
  the K foreground maps in the image's pixels (3 decimals). For a model with part names
  (``part_names.json``, :mod:`partdisc_core.partnames`) the demo's columns carry them:
  ``part1_left_eye_x,part1_left_eye_y,...`` (still ``part<k>_`` first and ``_x`` / ``_y`` last).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def label_png(labels: Any, num_parts: int):
    """(H, W) labels 0..K as a palette ``PIL.Image`` with the viz colours (background = index K)."""
    from PIL import Image

    from .viz import part_colors

    if num_parts + 1 > 256:
        raise ValueError("a palette PNG holds at most 256 labels")
    arr = np.ascontiguousarray(labels, dtype=np.uint8)
    if arr.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {arr.shape}")
    im = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.tobytes())
    im.putpalette(part_colors(num_parts).reshape(-1).tolist())
    return im


def save_label_png(labels: Any, num_parts: int, path: str | Path) -> None:
    """Write :func:`label_png` to ``path`` atomically (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    label_png(labels, num_parts).save(tmp, format="PNG")
    os.replace(tmp, path)


def centroid_header(num_parts: int, names: Sequence[str] | None = None) -> list[str]:
    """The centroid CSV's header row; with the part ``names``, each part's columns carry its name
    (``part3_nose_x``, letters and digits kept, anything else an underscore)."""
    tags = [f"part{i}" + (f"_{re.sub(r'[^0-9A-Za-z]+', '_', names[i - 1]).strip('_')}" if names else "")
            for i in range(1, num_parts + 1)]
    return ["image", "width", "height"] + [f"{tag}_{c}" for tag in tags for c in "xy"]


def centroid_row(name: str, maps: Any, num_parts: int) -> list:
    """One CSV row for one image: ``maps`` (K+1 or K, H, W) soft part maps at the image's size
    (a torch tensor or an array); the centroids of the first K maps."""
    from .metrics import soft_centroids

    m = maps[None, :num_parts]
    m = m.float() if hasattr(m, "float") and hasattr(m, "detach") else np.asarray(m, np.float64)
    cen = soft_centroids(m)[0]
    cen = (cen.cpu().numpy() if hasattr(cen, "cpu") else np.asarray(cen)).reshape(-1)
    h, w = maps.shape[-2:]
    return [name, int(w), int(h)] + [f"{v:.3f}" for v in cen.tolist()]


__all__ = ["centroid_header", "centroid_row", "label_png", "save_label_png"]
