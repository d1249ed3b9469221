"""Face detection and cropping with OpenCV's Haar cascade.

The crop is framed to resemble the training data: CelebA "aligned" images
(the face about 45 % of the width, eyes a little above the middle, some hair
and background visible) and MTFL crops (a square, fairly tight around the
face).  OpenCV is imported lazily so that the rest of the package works
without it.

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

__all__ = ["CropResult", "detect_faces", "crop_to_face", "face_frame", "NO_FACE_MESSAGE"]

CASCADE_FILE = "haarcascade_frontalface_default.xml"
NO_FACE_MESSAGE = "No face found: using the centre of the image"

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
    box: (x0, y0, x1, y1) of the crop in original pixels (exclusive end); may
        extend outside the image, in which case the outside was padded.
    found: whether a face was detected.
    message: a human-readable note (empty on success).
    face_box: the Haar box (x, y, w, h) used, or None.
    num_faces: how many faces were detected (the largest one is used).
    """

    image: np.ndarray
    box: Tuple[int, int, int, int]
    found: bool
    message: str = ""
    face_box: Optional[Tuple[int, int, int, int]] = None
    num_faces: int = 0
    all_faces: List[Tuple[int, int, int, int]] = field(default_factory=list)


def _extract(img: np.ndarray, box, pad_mode: str) -> np.ndarray:
    """Crop box (x0, y0, x1, y1) from img, padding where it leaves the image."""
    H, W = img.shape[:2]
    x0, y0, x1, y1 = box
    pl, pt = max(0, -x0), max(0, -y0)
    pr, pb = max(0, x1 - W), max(0, y1 - H)
    inner = img[max(0, y0):min(H, y1), max(0, x0):min(W, x1)]
    if pl or pt or pr or pb:
        if pad_mode == "reflect" and min(inner.shape[:2]) < 2:
            pad_mode = "edge"  # nothing to reflect
        inner = np.pad(inner, ((pt, pb), (pl, pr), (0, 0)), mode=pad_mode)
    return np.ascontiguousarray(inner)


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
    pad_mode: str = "edge",
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
    pad_mode: "edge" (replicate) or "reflect" — how pixels outside the
        image are filled when the crop box leaves it.

    If no face is found, `found` is False and the result is the largest
    centred square of the image (with `message` = NO_FACE_MESSAGE).
    """
    img = _as_rgb_uint8(image)
    H, W = img.shape[:2]
    if margin is not None:
        scale = 1.0 + 2.0 * float(margin)
    if scale <= 0:
        raise ValueError("scale must be positive")

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

    crop = _extract(img, box, pad_mode)
    if out_wh is not None:
        crop = resize(crop, out_wh)
    return CropResult(
        image=crop,
        box=tuple(int(v) for v in box),
        found=found,
        message=message,
        face_box=face_box,
        num_faces=len(boxes),
        all_faces=list(boxes),
    )
