"""A face crop that follows a face through a stream of frames (webcam, video) without jitter.

Detecting the face anew in every frame and cropping to it makes the crop shake: the Haar detector's
box wanders by a few pixels from frame to frame even when the face is still. :class:`FaceTracker`
keeps the crop square (centre and side) as state and moves it towards each new detection with an
adaptive step (:func:`smooth_square`): small differences, which are detector noise, move it a
little; large ones, which are real motion, move it almost at once (the idea of the One Euro filter,
with the displacement in place of the speed). When the face is lost the square holds still for a
while, then drifts to the centre of the frame. Crops are cut at sub-pixel positions
(:func:`crop_square`), so a slowly moving square gives a slowly moving picture, not 1-pixel jumps;
the square is moved inside the frame where it fits (:func:`fit_square`), and what still lies outside
is filled as ``facecrop`` fills it, with the frame's own pixels marked (``TrackedView.valid_box``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .facecrop import (DEFAULT_PAD_MODE, NO_FACE_MESSAGE, _as_rgb_uint8, _pixels_within, detect_faces, face_frame,
                       fill_outside, fit_box)

DETECT_SIDE = 256
"""Frames are shrunk to this longest side for detection (a webcam face is large; ~4x faster than 640)."""
MIN_FACE_FRACTION = 0.2
"""Smallest face searched for, as a fraction of the frame's shorter side (a webcam face is larger; 0.2 halves the time)."""


def smooth_square(previous: np.ndarray, measured: np.ndarray, slow: float = 0.15, fast: float = 0.85,
                  fast_at: float = 0.25) -> np.ndarray:
    """Move the square ``previous`` = (cx, cy, side) towards ``measured`` by a fraction that grows
    with the distance: ``slow`` for differences that are tiny next to the side, ``fast`` from
    ``fast_at`` x side on (linear in between). One fraction for all three numbers, so the square
    moves as a whole. Works on (3,) or batched (..., 3) arrays."""
    previous, measured = np.asarray(previous, np.float64), np.asarray(measured, np.float64)
    side = np.maximum(previous[..., 2:3], 1.0)
    change = np.abs(measured - previous).max(axis=-1, keepdims=True) / side
    step = slow + (fast - slow) * np.clip(change / fast_at, 0.0, 1.0)
    return previous + step * (measured - previous)


def fit_square(square, frame_size: tuple[int, int]) -> np.ndarray:
    """The square (cx, cy, side) moved the least that keeps it inside a frame of (width, height)
    along each axis where it fits (:func:`partdisc_core.facecrop.fit_box`; continuous in the
    square, so a smoothly moving square stays smooth)."""
    cx, cy, side = (float(v) for v in square)
    x0, y0, _, _ = fit_box((cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0), *frame_size)
    return np.array([x0 + side / 2.0, y0 + side / 2.0, side])


def square_valid_box(square, frame_size: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the pixels of the ``size`` x ``size`` crop of the square (cx, cy, side)
    whose centres fall inside the frame of (width, height)."""
    cx, cy, side = (float(v) for v in square)
    s = size / max(side, 1e-6)
    (x0, x1), (y0, y1) = (_pixels_within(s * (side / 2.0 - c), s * (n + side / 2.0 - c), size)
                          for c, n in ((cx, frame_size[0]), (cy, frame_size[1])))
    return x0, y0, x1, y1


def crop_square(image: np.ndarray, square, size: int, pad_mode: str = DEFAULT_PAD_MODE) -> np.ndarray:
    """The square (cx, cy, side) of ``image`` resampled to ``size`` x ``size`` pixels in one
    bilinear warp (sub-pixel position); where the square leaves the image, the crop is filled by
    ``pad_mode`` (:func:`partdisc_core.facecrop.fill_outside`)."""
    import cv2

    cx, cy, side = (float(v) for v in square)
    s = size / max(side, 1e-6)
    x0, y0 = cx - side / 2.0, cy - side / 2.0
    # pixel index i covers [i, i + 1): output index u = s * (x + 0.5 - x0) - 0.5 for input index x
    matrix = np.array([[s, 0.0, s * (0.5 - x0) - 0.5], [0.0, s, s * (0.5 - y0) - 0.5]], np.float64)
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return fill_outside(crop, square_valid_box(square, image.shape[1::-1], size), pad_mode)


@dataclass
class TrackedView:
    """One frame's crop: ``image`` (size, size, 3) uint8, the ``square`` (cx, cy, side) it was cut
    from in frame pixels, whether a face was detected in this frame, a sentence on it, and
    ``valid_box`` (x0, y0, x1, y1): the frame's own pixels of ``image`` (the rest is fill)."""

    image: np.ndarray
    square: np.ndarray
    found: bool
    message: str
    valid_box: tuple[int, int, int, int] | None = None


class FaceTracker:
    """Follows the largest face through consecutive frames of one stream (one tracker per stream;
    not shared between threads)::

        tracker = FaceTracker()
        for frame in frames:
            view = tracker.update(frame, size=320)   # view.image: the smoothed face crop

    ``hold`` frames without a face keep the last square; after that it drifts to the centred
    square of the frame. ``slow`` / ``fast`` / ``fast_at``: see :func:`smooth_square`."""

    def __init__(self, detect_side: int = DETECT_SIDE, min_face: float = MIN_FACE_FRACTION, hold: int = 15,
                 slow: float = 0.15, fast: float = 0.85, fast_at: float = 0.25, scale: float = 1.75,
                 shift: float = 0.06):
        self.detect_side, self.min_face, self.hold = int(detect_side), float(min_face), int(hold)
        self.slow, self.fast, self.fast_at = float(slow), float(fast), float(fast_at)
        self.scale, self.shift = float(scale), float(shift)
        self.reset()

    def reset(self) -> None:
        self.square: np.ndarray | None = None
        self.missed = 0
        self.frame_size: tuple[int, int] | None = None

    def measure(self, frame: np.ndarray) -> np.ndarray | None:
        """(cx, cy, side) framing the largest face in ``frame``, or None."""
        boxes = detect_faces(frame, max_side=self.detect_side, min_side=min(self.detect_side, 160),
                             min_size_frac=self.min_face)
        return np.asarray(face_frame(boxes[0], self.scale, self.shift), np.float64) if boxes else None

    def step(self, measured: np.ndarray | None, frame_size: tuple[int, int]) -> tuple[np.ndarray, bool]:
        """Advance the state by one frame of size (width, height) given its measurement (or None);
        return the square to crop and whether a face was measured. A new frame size restarts."""
        w, h = frame_size
        if self.frame_size != (w, h):
            self.reset()
            self.frame_size = (w, h)
        centre = np.array([w / 2.0, h / 2.0, float(min(w, h))])
        if measured is not None:
            self.missed = 0
            self.square = measured.copy() if self.square is None else smooth_square(
                self.square, measured, self.slow, self.fast, self.fast_at)
            return self.square, True
        self.missed += 1
        if self.square is None:
            return centre, False
        if self.missed > self.hold:
            self.square = smooth_square(self.square, centre, self.slow, self.slow, self.fast_at)
        return self.square, False

    def update(self, frame, size: int) -> TrackedView:
        """Detect, smooth and crop one frame (any RGB layout ``facecrop`` accepts)."""
        img = _as_rgb_uint8(frame)
        h, w = img.shape[:2]
        square, found = self.step(self.measure(img), (w, h))
        if found:
            message = "Face found: following it."
        elif self.square is not None and self.missed <= self.hold:
            message = "Face lost: holding the last position."
        else:
            message = NO_FACE_MESSAGE
        square = fit_square(square, (w, h))  # the state keeps following the face; the crop stays inside
        return TrackedView(crop_square(img, square, size), square, found, message,
                           square_valid_box(square, (w, h), size))


__all__ = ["DETECT_SIDE", "FaceTracker", "TrackedView", "crop_square", "fit_square", "smooth_square",
           "square_valid_box"]
