"""Images in: decoding files (optionally under limits), converting any image to RGB, resizing.

* :func:`to_rgb` is the one conversion of the library: a PIL image in any mode, a numpy array or a
  torch tensor becomes an (H, W, 3) RGB array. Grayscale is repeated, alpha is composited on white,
  palette / CMYK / 16-bit / float images are converted, a PIL image's EXIF orientation is applied.
  The model's inputs (:func:`to_image_tensors`: (3, H, W) float32 tensors in [0, 1]), the pictures
  of :mod:`~partdisc_core.viz`, the face detector and the demo all go through it.
* :func:`read_image` reads a file at full precision; :func:`decode_image` decodes an untrusted
  upload under limits (bytes, pixels, a reduced JPEG decode and a downscale before anything else).
* :func:`resize` resizes arrays and PIL images; :func:`resize_tensor` tensors.
* :func:`portrait` gives the two public-domain portraits used by examples, tests and benchmarks.

Anything unusable raises :class:`ImageInputError` with a message a person can act on.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:  # torch is imported where it is used, so the picture helpers do not need it
    import torch

MIN_SIDE = 8
"""Smallest side the model accepts (:func:`to_image_tensors`)."""


class ImageInputError(ValueError):
    """An input that cannot be used as an image (unreadable, wrong shape, wrong values, too small)."""


# --- conversion ----------------------------------------------------------------------------------
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
              7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
"""EXIF orientation tag value -> the transpose that shows the image upright."""


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright; 1 when absent or when the EXIF block is broken)."""
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block does not make the pixels unusable
        return 1


def _canonical(img: Image.Image, notes: list[str] | None = None, eight_bit: bool = True) -> Image.Image:
    """``img`` in a mode the rest can use: L, RGB or RGBA (8 bits, which PIL resizes smoothly);
    with ``eight_bit=False`` 16-bit images stay "I;16" and 32-bit ones become "F" in [0, 1]."""
    note = notes.append if notes is not None else (lambda text: None)
    mode = img.mode
    if mode.startswith("I;16"):
        if not eight_bit:
            return img
        note("16-bit image converted to 8 bits")
        return Image.fromarray((np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8), "L")
    if mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        scaled = np.clip(arr / top, 0, 1)
        if not eight_bit:
            return Image.fromarray(scaled.astype(np.float32), "F")
        if top > 255:
            note("16-bit image converted to 8 bits")
        return Image.fromarray((scaled * 255 + 0.5).astype(np.uint8), "L")
    if mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if mode in ("PA", "LA", "La", "RGBa"):
        return img.convert("RGBA")
    if mode == "1":
        return img.convert("L")
    if mode == "CMYK":
        note("CMYK image converted to RGB")
        return img.convert("RGB")
    if mode in ("L", "RGB", "RGBA"):
        return img
    return img.convert("RGB")  # LAB, HSV, YCbCr, ...


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _tensor_pixels(t) -> np.ndarray:
    """A (C, H, W) or (H, W) tensor (images in torch are channels-first) -> an (H, W, C) array."""
    t = t.detach().cpu()
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
        raise ImageInputError(f"expected a tensor of shape (C, H, W) with C in 1, 3, 4, got {tuple(t.shape)}")
    if t.is_floating_point():
        t = t.float()
    elif str(t.dtype) != "torch.uint8":
        raise ImageInputError(f"unsupported tensor dtype {t.dtype}")
    return np.moveaxis(t.numpy(), 0, -1)


def _array_layout(arr: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, C) or channels-first (C, H, W) -> (H, W, C) with C in 1, 3, 4."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ImageInputError(f"expected an image array of shape (H, W), (H, W, C) or a batch, got {arr.shape}")
    if arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channels-first array
    if arr.shape[-1] not in (1, 3, 4):
        raise ImageInputError(f"expected 1 (gray), 3 (RGB) or 4 (RGBA) channels, got shape {arr.shape}")
    return arr


def _values(arr: np.ndarray, clip: bool) -> np.ndarray:
    """uint8 arrays as they are, everything else as float32 in [0, 1]; out-of-range values are an
    error, or clipped with ``clip``."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float32)
        if clip:
            return np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        if not np.isfinite(x).all():
            raise ImageInputError("image contains NaN or infinite values")
        if x.min(initial=0) < -1e-3 or x.max(initial=0) > 1.0 + 1e-3:
            raise ImageInputError("float images must have values in [0, 1] (got "
                                  f"{x.min():.3g}..{x.max():.3g}); pass uint8 for 0..255")
        return np.clip(x, 0.0, 1.0)
    if np.issubdtype(arr.dtype, np.integer):
        if not clip and (arr.min(initial=0) < 0 or arr.max(initial=0) > 255):
            raise ImageInputError("integer images must be uint8 (0..255) or uint16")
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise ImageInputError(f"unsupported image dtype {arr.dtype}")


def to_rgb(image: Any, dtype: str | None = "float32", clip: bool = False) -> np.ndarray:
    """Any image -> an (H, W, 3) RGB array: ``dtype`` "float32" (in [0, 1]), "uint8", or None
    (uint8 when the source has 8 bits per channel, else float32: nothing is lost).

    Accepts PIL images in any mode (EXIF orientation applied), numpy arrays (H, W), (H, W, C) or
    channels-first (C, H, W) with C = 1, 3 or 4, as uint8, uint16, bool, other integers in 0..255 or
    floats in [0, 1], and torch tensors (C, H, W) or (H, W), uint8 or float. One channel is repeated;
    a fourth is alpha, composited on white. Out-of-range values raise :class:`ImageInputError`,
    unless ``clip`` (for drawing results, whose values may overshoot a little)."""
    if isinstance(image, Image.Image):
        transpose = _TRANSPOSE.get(exif_orientation(image))
        if transpose is not None:
            image = image.transpose(transpose)
        pil = _canonical(image, eight_bit=False)
        arr = _array_layout(np.asarray(pil, dtype=np.uint16) if pil.mode.startswith("I;16") else np.asarray(pil))
    elif _is_tensor(image):
        arr = _tensor_pixels(image)
    elif isinstance(image, np.ndarray):
        arr = _array_layout(image)
    else:
        raise ImageInputError(f"cannot use an object of type {type(image).__name__} as an image")
    x = _values(arr, clip)
    if x.shape[-1] == 4:
        rgb = x[..., :3].astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
        alpha = x[..., 3:4].astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
        x = rgb * alpha + (1.0 - alpha)  # composite on white
    elif x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if dtype is None:
        dtype = "uint8" if x.dtype == np.uint8 else "float32"
    if dtype == "uint8":
        if x.dtype != np.uint8:
            x = (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif dtype == "float32":
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32, copy=False)
    else:
        raise ValueError(f"dtype must be 'uint8', 'float32' or None, got {dtype!r}")
    return np.ascontiguousarray(x)


def to_image_tensors(images: Any) -> list["torch.Tensor"]:
    """One image or many (a list, a (B, C, H, W) tensor or a (B, H, W, C) array) -> a list of
    (3, H, W) float32 tensors in [0, 1]; each may also be a file path."""
    if _is_tensor(images) and images.ndim == 4:
        return [_one(t) for t in images]
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [_one(a) for a in images]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ImageInputError("no images given")
        return [_one(i) for i in images]
    return [_one(images)]


def _one(item: Any) -> "torch.Tensor":
    import torch

    arr = read_image(item) if isinstance(item, (str, Path)) else item
    t = torch.from_numpy(to_rgb(arr, "float32")).permute(2, 0, 1)
    h, w = t.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise ImageInputError(f"image is {w}x{h} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")
    return t.contiguous() if _is_tensor(item) else t


def to_uint8(images: "torch.Tensor") -> np.ndarray:
    """The model's output direction: (B, 3, H, W) or (3, H, W) float in [0, 1] -> (B, H, W, 3) or
    (H, W, 3) uint8."""
    import torch

    x = (images.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu()
    return (x.permute(0, 2, 3, 1) if x.ndim == 4 else x.permute(1, 2, 0)).numpy()


# --- files ---------------------------------------------------------------------------------------
def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an (H, W, 3) RGB array (uint8, or float32 for 16-bit and float
    files), EXIF orientation applied, no size limits; clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise ImageInputError(f"no such image file: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img, dtype=None)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageInputError):
            raise
        raise ImageInputError(f"could not read {path.name} as an image ({exc})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"{path.name} is too large to open safely ({exc})") from exc


def configure_pil(max_pixels: int) -> None:
    """Make PIL refuse decompression bombs early: ``Image.open`` raises ``DecompressionBombError``
    above 2 x ``max_pixels`` before decoding anything (:func:`decode_image` refuses above 1 x)."""
    Image.MAX_IMAGE_PIXELS = int(max_pixels)


@dataclass
class DecodedImage:
    """An upload decoded by :func:`decode_image`: ``array`` (H, W, 3) uint8 RGB, upright."""

    array: np.ndarray
    original_size: tuple[int, int]  # (width, height) of the file, before EXIF rotation
    notes: list[str] = field(default_factory=list)  # what was done to it, e.g. "downscaled from ..."


def decode_image(path: Any, max_side: int | None = None, max_pixels: int | None = None,
                 max_bytes: int | None = None, min_side: int = MIN_SIDE) -> DecodedImage:
    """Decode an image file that nobody vouches for, under limits: files over ``max_bytes`` and
    images over ``max_pixels`` are refused before decoding, JPEGs much larger than ``max_side``
    are decoded at 1/2, 1/4 or 1/8 scale, and the image is downscaled to at most ``max_side`` on its
    longer side before it is converted to RGB (animated images: the first frame). Every refusal is
    an :class:`ImageInputError` whose message can be shown to the person who sent the file."""
    path = Path(os.fspath(path))
    if not path.is_file():
        raise ImageInputError(f"There is no file at {path}.")
    size = path.stat().st_size
    if size == 0:
        raise ImageInputError("The uploaded file is empty.")
    if max_bytes is not None and size > max_bytes:
        raise ImageInputError(f"The file is {size / 2**20:.0f} MB; the limit is {max_bytes // 2**20} MB.")
    notes: list[str] = []
    try:
        with Image.open(path) as img:
            w, h = img.size
            if max_pixels is not None and w * h > max_pixels:
                raise ImageInputError(
                    f"The image is {w}x{h} pixels ({w * h / 1e6:.0f} MP); the limit is "
                    f"{max_pixels / 1e6:.0f} MP. Please send a smaller image.")
            if min(w, h) < min_side:
                raise ImageInputError(f"The image is only {w}x{h} pixels; at least {min_side}x{min_side} is needed.")
            if getattr(img, "n_frames", 1) > 1:
                notes.append("animated image: the first frame is used")
            if max_side is not None and img.format == "JPEG" and max(w, h) > 2 * max_side:
                img.draft(None, (max_side, max_side))
            img.load()
            orientation = exif_orientation(img)
            work = _canonical(img, notes)
            if max_side is not None and max(work.size) > max_side:
                s = max_side / max(work.size)
                work = resize(work, (max(1, round(work.width * s)), max(1, round(work.height * s))),
                              "lanczos", reducing_gap=3.0)
                notes.append(f"downscaled from {w}x{h}")
            if orientation in _TRANSPOSE:  # applied here, once, on the small image
                work = work.transpose(_TRANSPOSE[orientation])
                notes.append("rotated as its EXIF orientation says")
            if min(work.size) < MIN_SIDE:  # a long thin strip, downscaled
                raise ImageInputError(f"This image cannot be used: image is {work.width}x{work.height} pixels; "
                                      f"at least {MIN_SIDE}x{MIN_SIDE} is needed")
            array = to_rgb(np.asarray(work), "uint8")
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        limit = f" (over {max_pixels / 1e6:.0f} MP)" if max_pixels else ""
        raise ImageInputError(f"The image is too large to open safely{limit}.") from exc
    except UnidentifiedImageError as exc:
        raise ImageInputError("This file is not an image that can be read (JPEG, PNG, WebP, BMP, TIFF or GIF "
                              "are fine).") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise ImageInputError(f"The image could not be decoded; the file may be corrupt or truncated ({exc}).") from exc
    except MemoryError as exc:
        raise ImageInputError("The image is too large to decode.") from exc
    return DecodedImage(array, (w, h), notes)


# --- resizing ------------------------------------------------------------------------------------
_RESAMPLE = {"lanczos": Image.LANCZOS, "bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR,
             "nearest": Image.NEAREST}


def resize(image: Any, size: tuple[int, int], resample: str | None = None, reducing_gap: float | None = None):
    """Resize to ``size`` = (width, height): a PIL image, an (H, W, 3) uint8 array or an (H, W)
    float map (returned as the same kind; unchanged when already that size). ``resample``:
    "lanczos", "bicubic", "bilinear" or "nearest"; by default Lanczos when shrinking and bicubic
    when enlarging (sharp pictures)."""
    width, height = int(size[0]), int(size[1])
    is_pil = isinstance(image, Image.Image)
    current = image.size if is_pil else (image.shape[1], image.shape[0])
    if current == (width, height):
        return image if is_pil or image.dtype != np.float64 else image.astype(np.float32)
    if resample is None:
        resample = "lanczos" if current[0] > width else "bicubic"
    if is_pil:
        return image.resize((width, height), _RESAMPLE[resample], reducing_gap=reducing_gap)
    floating = np.issubdtype(image.dtype, np.floating)
    src = np.ascontiguousarray(image, dtype=np.float32) if floating else np.ascontiguousarray(image)
    out = Image.fromarray(src).resize((width, height), _RESAMPLE[resample], reducing_gap=reducing_gap)
    return np.asarray(out, dtype=np.float32) if floating else np.asarray(out)


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a stack of float maps (N, H, W) to ``size`` = (width, height), all N in one
    vectorised call (half-pixel centres like :func:`resize`'s bilinear; antialiased when shrinking).
    Returns float32 (N, height, width), stored pixel-major (a view of (height, width, N) memory), so
    that per-pixel reductions over the N maps, such as an argmax, read contiguous memory."""
    import torch
    import torch.nn.functional as F

    width, height = int(size[0]), int(size[1])
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    if maps.shape[1:] == (height, width):
        return maps
    shrink = height < maps.shape[1] or width < maps.shape[2]
    src = torch.from_numpy(maps)[None].contiguous(memory_format=torch.channels_last)
    out = F.interpolate(src, size=(height, width), mode="bilinear", align_corners=False, antialias=shrink)
    return out[0].numpy()


def resize_tensor(t: "torch.Tensor", size: int | tuple[int, int]) -> "torch.Tensor":
    """Bilinear (antialiased) resize of a (3, H, W) tensor in [0, 1] to size x size or (h, w)."""
    import torch.nn.functional as F

    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(t.shape[-2:]) == hw:
        return t
    return F.interpolate(t.unsqueeze(0), size=hw, mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)


# --- sample images -------------------------------------------------------------------------------
PORTRAITS = ("astronaut", "grace_hopper")
"""Public-domain portraits shipped inside installed packages, for examples, tests and benchmarks."""


def portrait(name: str) -> np.ndarray:
    """A public-domain portrait as (H, W, 3) uint8 RGB, read from the package that ships it:
    "astronaut" (scikit-image, 512x512) or "grace_hopper" (matplotlib, 512 wide, 600 high)."""
    if name == "astronaut":
        import skimage.data

        return np.ascontiguousarray(skimage.data.astronaut())
    if name == "grace_hopper":
        import matplotlib.cbook

        return read_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    raise ValueError(f"unknown portrait {name!r}; expected one of {', '.join(PORTRAITS)}")


def batched(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
