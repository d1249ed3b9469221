"""Face detection and cropping with OpenCV's Haar cascade.

The crop is framed to resemble the training data: CelebA "aligned" images
(the face about 45 % of the width, eyes a little above the middle, some hair
and background visible) and MTFL crops (a square, fairly tight around the
face).  OpenCV is imported lazily so that the rest of the package works
without it.

Where the framing square runs past the photo's edge, it is first moved inside
the photo (:func:`fit_box`; the face always stays in it); only a square larger
than the photo still leaves it, and the pixels it adds are filled
(:func:`fill_outside`) rather than smeared from the edge.  ``CropResult.valid_box``
says which pixels of the crop are the photo's, so that overlays can leave the
fill unpainted.

Typical use::

    res = crop_to_face(rgb_uint8, output_size=128)
    if not res.found:
        print(res.message)
    model_input = res.image
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

import numpy as np

from partdisc_core.inputs import resize, to_rgb  # absolute: the module also loads on its own by path

__all__ = ["CropResult", "detect_faces", "crop_to_face", "face_frame", "fit_box", "fill_outside", "box_mask",
           "scale_box", "NO_FACE_MESSAGE", "PAD_MODES", "DEFAULT_PAD_MODE"]

CASCADE_FILE = "haarcascade_frontalface_default.xml"
NO_FACE_MESSAGE = "No face found: using the centre of the image"
PAD_MODES = ("edge", "reflect", "blur", "mean", "grey", "black")
"""How a crop's pixels outside the photo are filled (:func:`fill_outside`)."""
DEFAULT_PAD_MODE = "grey"
"""Measured on Helen crops past the photo's edge (``benchmarks/crop_fill.py``): with mid-grey the
shipped models put the fewest parts on the fill (3-21 % of it, against 37-48 % for repeated edges)
and cover the face at least as well; black is taken for a part almost everywhere."""
GREY = 128
BLUR_SIGMA = 0.05
"""The "blur" fill's Gaussian sigma, as a share of the crop's longer side."""

_cascade = None
_cascade_lock = threading.Lock()
_detect_lock = threading.Lock()  # the cascade keeps per-call scratch state: one detection at a time


def _get_cascade():
    """Load the frontal-face Haar cascade once and cache it."""
    global _cascade
    if _cascade is None:
        with _cascade_lock:
            if _cascade is None:
                import cv2

                path = cv2.data.haarcascades + CASCADE_FILE
                clf = cv2.CascadeClassifier(path)
                if clf.empty():
                    raise RuntimeError(f"could not load Haar cascade from {path}")
                _cascade = clf
    return _cascade


def _as_rgb_uint8(image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from any image form (:func:`partdisc_core.inputs.to_rgb`, values clipped)."""
    if hasattr(image, "detach") and hasattr(image, "cpu"):
        image = image.detach().cpu().numpy()
    return to_rgb(image, "uint8", clip=True)


def detect_faces(
    image,
    max_side: int = 640,
    min_side: int = 160,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    min_size_frac: float = 0.06,
) -> List[Tuple[int, int, int, int]]:
    """Detect frontal faces; return (x, y, w, h) boxes, largest area first.

    Detection runs on a grayscale, histogram-equalised copy whose longest
    side is at most `max_side` (images smaller than `min_side` are upscaled
    to it, which helps on tiny inputs such as 80x80 crops); boxes are mapped
    back to the original pixel coordinates.
    """
    import cv2

    img = _as_rgb_uint8(image)
    H, W = img.shape[:2]
    if H < 2 or W < 2:
        return []
    longest = max(H, W)
    s = 1.0
    if longest > max_side:
        s = max_side / longest
    elif longest < min_side:
        s = min_side / longest
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if s != 1.0:
        size = (max(1, int(round(W * s))), max(1, int(round(H * s))))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        gray = cv2.resize(gray, size, interpolation=interp)
    gray = cv2.equalizeHist(gray)
    m = max(24, int(round(min(gray.shape[:2]) * min_size_frac)))
    cascade = _get_cascade()
    with _detect_lock:
        found = cascade.detectMultiScale(
            gray, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(m, m)
        )
    boxes = []
    for x, y, w, h in np.asarray(found).reshape(-1, 4):
        x0, y0 = int(round(x / s)), int(round(y / s))
        bw, bh = int(round(w / s)), int(round(h / s))
        x0, y0 = max(0, min(x0, W - 1)), max(0, min(y0, H - 1))
        bw, bh = max(1, min(bw, W - x0)), max(1, min(bh, H - y0))
        boxes.append((x0, y0, bw, bh))
    boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
    return boxes


@dataclass
class CropResult:
    """Result of `crop_to_face`.

    image: the crop, (h, w, 3) uint8 RGB (resized to `output_size` if given).
    box: (x0, y0, x1, y1) of the crop in original pixels (exclusive end); it
        leaves the image only where the crop is larger than the image, and the
        outside is then filled (see `pad_mode`).
    found: whether a face was detected.
    message: a human-readable note (empty on success).
    face_box: the Haar box (x, y, w, h) used, or None.
    num_faces: how many faces were detected (the largest one is used).
    valid_box: (x0, y0, x1, y1) of the photo's own pixels in `image`'s pixels
        (the whole image when nothing was filled); :meth:`valid_mask` as a mask.
    """

    image: np.ndarray
    box: Tuple[int, int, int, int]
    found: bool
    message: str = ""
    face_box: Optional[Tuple[int, int, int, int]] = None
    num_faces: int = 0
    all_faces: List[Tuple[int, int, int, int]] = field(default_factory=list)
    valid_box: Optional[Tuple[int, int, int, int]] = None

    def __post_init__(self) -> None:
        if self.valid_box is None:
            self.valid_box = (0, 0, int(self.image.shape[1]), int(self.image.shape[0]))

    @property
    def padded(self) -> bool:
        """Whether part of the crop is fill, not photo."""
        return tuple(self.valid_box) != (0, 0, int(self.image.shape[1]), int(self.image.shape[0]))

    def valid_mask(self, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
        """(h, w) bool, True on the photo's own pixels of `image`, or of `image` resized to
        `size` = (width, height)."""
        return box_mask(self.valid_box, self.image.shape[1::-1], size)


def _place(start: float, length: float, limit: float) -> float:
    """The start, nearest to `start`, of a segment of `length` that stays inside [0, limit] or,
    when it is longer than that, covers it."""
    lo, hi = sorted((0.0, float(limit) - float(length)))
    return type(start)(min(max(start, lo), hi))


def fit_box(box, width: int, height: int):
    """Shift box (x0, y0, x1, y1) the least that keeps it inside a `width` x `height` image along
    each axis where it fits; along an axis where it is longer than the image it is shifted to cover
    the image's whole extent, so the outside it adds is as small as it can be.  A box framing a face
    that lies in the image keeps the whole face (it only moves towards the face).  Works for
    integer and float boxes."""
    x0, y0, x1, y1 = box
    nx0, ny0 = _place(x0, x1 - x0, width), _place(y0, y1 - y0, height)
    return (nx0, ny0, nx0 + (x1 - x0), ny0 + (y1 - y0))


def _pixels_within(a: float, b: float, n: int) -> Tuple[int, int]:
    """(start, stop) of the pixels 0..n-1 whose centres (i + 0.5) lie in [a, b]."""
    start = int(np.clip(np.ceil(a - 0.5), 0, n))
    stop = int(np.clip(np.floor(b - 0.5) + 1, start, n))
    return start, stop


def scale_box(box, from_size: Tuple[int, int], to_size: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """A pixel box (x0, y0, x1, y1) of an image of (width, height) `from_size`, in the pixels of
    that image resized to `to_size`: those whose centres fall in the scaled box."""
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    x0, x1 = _pixels_within(box[0] * sx, box[2] * sx, int(to_size[0]))
    y0, y1 = _pixels_within(box[1] * sy, box[3] * sy, int(to_size[1]))
    return x0, y0, x1, y1


def box_mask(box, image_size: Tuple[int, int], size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """(h, w) bool mask of the pixel box (x0, y0, x1, y1) in an image of (width, height)
    `image_size`, or of that image resized to `size` = (width, height)."""
    w, h = (int(v) for v in (size or image_size))
    x0, y0, x1, y1 = scale_box(box, image_size, (w, h)) if size else box
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    return (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)


def fill_outside(crop: np.ndarray, valid_box, pad_mode: str = DEFAULT_PAD_MODE) -> np.ndarray:
    """`crop` (h, w, 3) uint8 with the pixels outside `valid_box` (x0, y0, x1, y1), the photo's
    own, filled from the inside by `pad_mode`:

    * "edge": the border pixels repeated (streaks);  "reflect": mirrored at the border;
    * "blur": the mirror blurred (Gaussian, sigma BLUR_SIGMA x the longer side), so no detail
      is repeated;
    * "mean": the mean colour of the crop's photo pixels;  "grey": mid-grey (GREY);  "black": black.
    """
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    h, w = crop.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in valid_box)
    if (x0, y0, x1, y1) == (0, 0, w, h):
        return crop
    inner = crop[y0:y1, x0:x1]
    if inner.size == 0:
        pad_mode = "grey"  # nothing inside to take a fill from
    elif pad_mode in ("reflect", "blur") and min(inner.shape[:2]) < 2:
        pad_mode = "edge"  # nothing to reflect
    widths = ((y0, h - y1), (x0, w - x1), (0, 0))
    if pad_mode == "edge":
        return np.pad(inner, widths, mode="edge")
    if pad_mode in ("reflect", "blur"):
        mirrored = np.pad(inner, widths, mode="reflect")
        if pad_mode == "reflect":
            return mirrored
        import cv2

        sigma = BLUR_SIGMA * max(h, w)
        blurred = cv2.GaussianBlur(mirrored, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
        blurred[y0:y1, x0:x1] = inner
        return blurred
    colour = {"black": 0.0, "grey": float(GREY)}.get(pad_mode)
    if colour is None:
        colour = inner.reshape(-1, inner.shape[-1]).mean(0)
    out = np.empty_like(crop)
    out[...] = np.round(colour).astype(crop.dtype)
    out[y0:y1, x0:x1] = inner
    return out


def _extract(img: np.ndarray, box, pad_mode: str) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """Crop box (x0, y0, x1, y1) from img, filling where it leaves the image; also return the
    box of the image's own pixels in the crop."""
    H, W = img.shape[:2]
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    vx0, vy0 = min(max(0, -x0), w), min(max(0, -y0), h)
    vx1, vy1 = max(vx0, min(w, W - x0)), max(vy0, min(h, H - y0))
    inner = img[y0 + vy0:y0 + vy1, x0 + vx0:x0 + vx1]
    if (vx0, vy0, vx1, vy1) == (0, 0, w, h):
        return np.ascontiguousarray(inner), (0, 0, w, h)
    crop = np.zeros((h, w, img.shape[2]), img.dtype)
    crop[vy0:vy1, vx0:vx1] = inner
    return fill_outside(crop, (vx0, vy0, vx1, vy1), pad_mode), (vx0, vy0, vx1, vy1)


def _centred_box(cx: float, cy: float, width: float, height: float):
    x0 = int(round(cx - width / 2.0))
    y0 = int(round(cy - height / 2.0))
    return (x0, y0, x0 + max(1, int(round(width))), y0 + max(1, int(round(height))))


def face_frame(face_box, scale: float = 1.75, shift: float = 0.06) -> Tuple[float, float, float]:
    """(cx, cy, side) of the square that frames a Haar face box (x, y, w, h) like the training
    photos: side = `scale` x the box side, centre moved up by `shift` x the box height."""
    x, y, w, h = face_box
    return x + w / 2.0, y + h / 2.0 - shift * h, scale * max(w, h)


def crop_to_face(
    image,
    margin: Optional[float] = None,
    output_size: Union[int, Tuple[int, int], None] = None,
    scale: float = 1.75,
    shift: float = 0.06,
    pad_mode: str = DEFAULT_PAD_MODE,
    keep_inside: bool = True,
    **detect_kwargs,
) -> CropResult:
    """Crop an image around its largest face.

    The crop is a square centred on the Haar box centre moved up by
    `shift` x box height, with side = `scale` x Haar box side (the Haar box
    spans roughly brows to chin, so 1.75 keeps the hair, ears and a little
    background, with the eyes at ~47 % of the crop height).  `margin`, if
    given, overrides `scale` as the extra fraction of the box side added on
    each side (scale = 1 + 2 * margin).

    output_size: None (keep the crop's pixel size), an int (square output),
        or (width, height); a non-square size widens the crop vertically to
        that aspect ratio before resizing (e.g. (178, 218) for CelebA-like
        framing).
    keep_inside: move the crop inside the image where it fits (:func:`fit_box`;
        the face then sits off the centre) instead of filling what lies outside.
    pad_mode: how the pixels outside the image are filled where the crop still
        leaves it (one of PAD_MODES, see :func:`fill_outside`); `valid_box`
        marks the image's own pixels.

    If no face is found, `found` is False and the result is the largest
    centred square of the image (with `message` = NO_FACE_MESSAGE).
    """
    img = _as_rgb_uint8(image)
    H, W = img.shape[:2]
    if margin is not None:
        scale = 1.0 + 2.0 * float(margin)
    if scale <= 0:
        raise ValueError("scale must be positive")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")

    if output_size is None:
        out_wh = None
        aspect = 1.0
    elif isinstance(output_size, (int, np.integer)):
        out_wh = (int(output_size), int(output_size))
        aspect = 1.0
    else:
        out_wh = (int(output_size[0]), int(output_size[1]))
        aspect = out_wh[1] / out_wh[0]

    boxes = detect_faces(img, **detect_kwargs)
    if boxes:
        cx, cy, side = face_frame(boxes[0], scale, shift)
        box = _centred_box(cx, cy, side, side * aspect)
        found, message, face_box = True, "", boxes[0]
    else:
        side = float(min(H, W))
        if aspect >= 1.0:
            cw, ch = side / aspect, side
        else:
            cw, ch = side, side * aspect
        box = _centred_box(W / 2.0, H / 2.0, cw, ch)
        found, message, face_box = False, NO_FACE_MESSAGE, None
    if keep_inside:
        box = fit_box(box, W, H)

    crop, valid = _extract(img, box, pad_mode)
    if out_wh is not None:
        valid = scale_box(valid, crop.shape[1::-1], out_wh)
        crop = resize(crop, out_wh)
    return CropResult(
        image=crop,
        box=tuple(int(v) for v in box),
        found=found,
        message=message,
        face_box=face_box,
        num_faces=len(boxes),
        all_faces=list(boxes),
        valid_box=tuple(int(v) for v in valid),
    )
