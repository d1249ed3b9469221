"""Turning whatever a user hands us (paths, PIL images, arrays, tensors) into RGB float tensors.

Every image becomes a (3, H, W) float32 tensor in [0, 1]. Grayscale is repeated to RGB, alpha is
composited on white, CMYK / palette / 16-bit images are converted, EXIF orientation is applied.
Anything unusable raises :class:`ImageInputError` with a message a person can act on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

MIN_SIDE = 8


class ImageInputError(ValueError):
    """An input that cannot be used as an image (unreadable, wrong shape, wrong values, too small)."""


def _pil_to_array(img) -> np.ndarray:
    from PIL import Image, ImageOps

    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not make the image unusable
        pass
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.uint16).astype(np.float32) / 65535.0
        return np.repeat(arr[..., None], 3, axis=-1)
    if mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / top, 0.0, 1.0)
        return np.repeat(arr[..., None], 3, axis=-1)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 or float RGB array; clear errors for bad files."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageInputError(f"no such image file: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return _pil_to_array(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageInputError(f"could not read {path.name} as an image ({exc})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"{path.name} is too large to open safely ({exc})") from exc


def _array_to_tensor(arr: np.ndarray) -> torch.Tensor:
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ImageInputError(f"expected an image array of shape (H, W), (H, W, C) or a batch, got {arr.shape}")
    if arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channels-first array
    if arr.shape[-1] not in (1, 3, 4):
        raise ImageInputError(f"expected 1 (gray), 3 (RGB) or 4 (RGBA) channels, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        x = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float32)
        if not np.isfinite(x).all():
            raise ImageInputError("image contains NaN or infinite values")
        if x.min(initial=0) < -1e-3 or x.max(initial=0) > 1.0 + 1e-3:
            raise ImageInputError("float images must have values in [0, 1] (got "
                                  f"{x.min():.3g}..{x.max():.3g}); pass uint8 for 0..255")
        x = np.clip(x, 0.0, 1.0)
    elif np.issubdtype(arr.dtype, np.integer):
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
            raise ImageInputError("integer images must be uint8 (0..255) or uint16")
        x = arr.astype(np.float32) / 255.0
    else:
        raise ImageInputError(f"unsupported image dtype {arr.dtype}")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    elif x.shape[-1] == 4:
        alpha = x[..., 3:4]
        x = x[..., :3] * alpha + (1.0 - alpha)  # composite on white
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)


def _tensor_to_tensor(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().cpu()
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
        raise ImageInputError(f"expected a tensor of shape (C, H, W) with C in 1, 3, 4, got {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif t.is_floating_point():
        t = t.float()
        if not torch.isfinite(t).all():
            raise ImageInputError("image contains NaN or infinite values")
        if t.min() < -1e-3 or t.max() > 1.0 + 1e-3:
            raise ImageInputError("float image tensors must have values in [0, 1]")
        t = t.clamp(0.0, 1.0)
    else:
        raise ImageInputError(f"unsupported tensor dtype {t.dtype}")
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    elif t.shape[0] == 4:
        t = t[:3] * t[3:4] + (1.0 - t[3:4])
    return t.contiguous()


def _one(item: Any) -> torch.Tensor:
    from PIL import Image

    if isinstance(item, (str, Path)):
        t = _array_to_tensor(read_image(item))
    elif isinstance(item, Image.Image):
        t = _array_to_tensor(_pil_to_array(item))
    elif isinstance(item, np.ndarray):
        t = _array_to_tensor(item)
    elif isinstance(item, torch.Tensor):
        t = _tensor_to_tensor(item)
    else:
        raise ImageInputError(f"cannot use an object of type {type(item).__name__} as an image")
    h, w = t.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise ImageInputError(f"image is {w}x{h} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")
    return t


def to_image_tensors(images: Any) -> list[torch.Tensor]:
    """One image or many (a list, a (B, C, H, W) tensor or a (B, H, W, C) array) -> list of (3, H, W)."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return [_one(t) for t in images]
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [_one(a) for a in images]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ImageInputError("no images given")
        return [_one(i) for i in images]
    return [_one(images)]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) or (3, H, W) float in [0, 1] -> (B, H, W, 3) or (H, W, 3) uint8."""
    x = (images.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu()
    return (x.permute(0, 2, 3, 1) if x.ndim == 4 else x.permute(1, 2, 0)).numpy()


def batched(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
