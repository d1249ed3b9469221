"""Dense face figures over 68 landmarks: what a user sees of the parts, beyond the five points.

The five-landmark NMI / ARI of §4.2 reward small blobs on the eyes, nose tip and mouth corners; they
cannot see parts that spill onto the walls or a face left as "background". On faces with 68
annotated points (iBUG / 300-W order: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67)
these figures can (all in percent, pooled over images):

* ``nmi68`` / ``ari68``: NMI / ARI between the landmark index (0..67) and the part label at that
  landmark: the argmax over all K + 1 maps (background included) at the image's own size, the
  landmark rounded to the nearest pixel; over all (image, landmark) pairs inside the image.
* ``bg68``: the share of those pairs labelled background (the last map).
* ``coverage``: the share of the face region's pixels labelled as a foreground part. The face
  region (:func:`face_region`) is the polygon of the jaw points 0..16 closed over the brow points
  26..17, each raised by 15 % of the height from the brows' top to the jaw's bottom (the forehead).
* ``spill``: the share of the scenery's pixels labelled as a foreground part; the scenery
  (:func:`scenery`) is every pixel farther than 0.3 face widths (the jaw's x-extent) from the face
  region, so hair and ears next to the face sit inside the margin and count as neither.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from .metrics import ContingencyAccumulator

NUM_POINTS = 68
JAW = tuple(range(0, 17))
BROWS = tuple(range(17, 27))
FOREHEAD_RAISE = 0.15
"""The brow points are raised by this share of the brow-top-to-jaw-bottom height (eq. of the docstring)."""
SCENERY_MARGIN = 0.3
"""Scenery starts this many face widths (jaw x-extent) away from the face region."""

__all__ = ["face_region", "scenery", "Dense68Accumulator", "NUM_POINTS", "check_points"]


def check_points(points: np.ndarray) -> np.ndarray:
    """(68, 2) float64 xy landmarks in the iBUG order, or a clear ValueError."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (NUM_POINTS, 2):
        raise ValueError(f"need ({NUM_POINTS}, 2) xy landmarks in the iBUG order, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("landmarks must be finite")
    return p


def face_region_polygon(points: np.ndarray) -> np.ndarray:
    """(27, 2) xy vertices of the face region: jaw 0..16, then brows 26..17 raised by
    FOREHEAD_RAISE x (jaw bottom - brow top)."""
    p = check_points(points)
    jaw, brows = p[list(JAW)], p[list(BROWS)][::-1].copy()
    height = jaw[:, 1].max() - brows[:, 1].min()
    brows[:, 1] -= FOREHEAD_RAISE * max(height, 0.0)
    return np.concatenate([jaw, brows])


def face_region(points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies inside the face region polygon (module docstring)."""
    h, w = int(hw[0]), int(hw[1])
    mask = np.zeros((h, w), np.uint8)
    # cv2 rasterises integer vertices; 4 fractional bits keep sub-pixel landmarks
    verts = np.round(face_region_polygon(points) * 16).astype(np.int32)
    cv2.fillPoly(mask, [verts], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def scenery(points: np.ndarray, region: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels farther than SCENERY_MARGIN face widths from the face region."""
    p = check_points(points)
    width = float(p[list(JAW), 0].max() - p[list(JAW), 0].min())
    if not region.any():
        return np.zeros_like(region)
    distance = cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance > SCENERY_MARGIN * width


class Dense68Accumulator:
    """Sums the dense figures over images without keeping their label maps.

    ``update(labels, points, background)`` with labels (H, W) part ids at the image's own size,
    points (68, 2) xy in that image's pixels and ``background`` the background's label (K);
    ``result()`` gives nmi68, ari68, bg68, coverage, spill (percent) and num_images."""

    def __init__(self) -> None:
        self.pairs = ContingencyAccumulator(NUM_POINTS, 1)
        self.landmarks = 0
        self.background_landmarks = 0
        self.face_pixels = 0
        self.covered_pixels = 0
        self.scenery_pixels = 0
        self.spilled_pixels = 0
        self.images = 0

    def update(self, labels: Any, points: Any, background: int) -> None:
        lab = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels)
        if lab.ndim != 2:
            raise ValueError(f"labels must be (H, W), got shape {lab.shape}")
        p = check_points(np.asarray(points.cpu() if hasattr(points, "cpu") else points))
        h, w = lab.shape
        xy = np.round(p).astype(np.int64)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        at = lab[xy[inside, 1], xy[inside, 0]].astype(np.int64)
        self.pairs.update(np.flatnonzero(inside), at)
        self.landmarks += int(inside.sum())
        self.background_landmarks += int((at == background).sum())
        foreground = lab != background
        region = face_region(p, (h, w))
        far = scenery(p, region)
        self.face_pixels += int(region.sum())
        self.covered_pixels += int((foreground & region).sum())
        self.scenery_pixels += int(far.sum())
        self.spilled_pixels += int((foreground & far).sum())
        self.images += 1

    def result(self) -> dict:
        if self.landmarks == 0:
            raise ValueError("no landmark fell inside an image: nothing to measure")
        nmi, ari = self.pairs.nmi_ari()
        share = lambda a, b: 100.0 * a / b if b else float("nan")  # noqa: E731
        return {"nmi68": nmi, "ari68": ari, "bg68": share(self.background_landmarks, self.landmarks),
                "coverage": share(self.covered_pixels, self.face_pixels),
                "spill": share(self.spilled_pixels, self.scenery_pixels), "num_dense68": self.images}
