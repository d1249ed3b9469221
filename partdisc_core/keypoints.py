"""Landmarks predicted from the parts: the evaluation's linear regressor (§4.2, soft centroids of the
K foreground maps V_1..V_K -> L landmarks) saved with a checkpoint as ``landmarks.json``.

* :func:`fit_part_landmarks` (:func:`fit_from_centroids`) fits it on images with annotated landmarks, in the model's square input
  frame (``image_size`` pixels), so it applies to any picture the model sees.
* :func:`save_part_landmarks` / :func:`load_part_landmarks` write and read ``landmarks.json``
  (``load_model`` attaches it as ``model.landmarks``; ``save_model`` writes it back).
* :func:`predict_landmarks` maps part maps to landmarks; :func:`describe_parts` gives one image's
  landmarks and names each part after the landmark its centroid lies nearest to ("part 3, near the
  left eye"), when it lies near one. (That name changes from face to face; the demo shows each
  part's one fixed name instead, from ``part_names.json``: :mod:`partdisc_core.partnames`.)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .metrics import LandmarkRegressor, apply_landmark_regressor, fit_landmark_regressor, soft_centroids

LANDMARKS_NAME = "landmarks.json"
FIVE_POINTS = ("left eye", "right eye", "nose", "left mouth corner", "right mouth corner")
"""The 5-point layout of CelebA / MAFL / MTFL / AFLW; "left" is the image's left."""
FORMAT = "partdisc-landmarks-1"


@dataclass
class PartLandmarks:
    """A fitted centroid -> landmark map for a model with ``num_parts`` parts, in a ``frame`` x
    ``frame`` pixel frame (the model's ``image_size``). ``fitted_on`` and ``scores`` say where it
    was fitted and how well it did on held-out images (NME in percent of the inter-ocular distance)."""

    regressor: LandmarkRegressor
    names: tuple[str, ...]
    num_parts: int
    frame: int
    fitted_on: str = ""
    scores: dict | None = None

    def __post_init__(self) -> None:
        self.names = tuple(self.names)
        w = self.regressor.weights
        if w.shape != (2 * self.num_parts + 1, 2 * len(self.names)):
            raise ValueError(f"landmark weights of shape {w.shape} do not fit {self.num_parts} parts and "
                             f"{len(self.names)} landmarks (expected {(2 * self.num_parts + 1, 2 * len(self.names))})")
        if not np.isfinite(w).all():
            raise ValueError("landmark weights must be finite")


def part_centroids(maps: Any, num_parts: int) -> np.ndarray:
    """Soft centroids (B, K, 2) in pixels of the maps' frame, of the K foreground maps of V
    (B, K+1, S, S) or (K+1, S, S)."""
    m = maps.detach().float() if torch.is_tensor(maps) else np.asarray(maps, np.float64)
    if m.ndim == 3:
        m = m[None]
    if m.ndim != 4 or m.shape[1] != num_parts + 1:
        raise ValueError(f"part maps must be (B, {num_parts + 1}, S, S), got {tuple(m.shape)}")
    c = soft_centroids(m[:, :num_parts])
    return c.cpu().numpy() if torch.is_tensor(c) else c


def fit_from_centroids(centroids: Any, landmarks: Any, num_parts: int, frame: int,
                       names: Sequence[str] = FIVE_POINTS, fitted_on: str = "") -> PartLandmarks:
    """Least squares from part centroids (N, K, 2) to ``landmarks`` (N, L, 2), both in pixels of a
    ``frame`` x ``frame`` picture."""
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1] != len(names):
        raise ValueError(f"landmarks must be (N, {len(names)}, 2), got {lm.shape}")
    return PartLandmarks(fit_landmark_regressor(centroids, lm), tuple(names), num_parts, int(frame), fitted_on)


def fit_part_landmarks(maps: Any, landmarks: Any, num_parts: int, frame: int,
                       names: Sequence[str] = FIVE_POINTS, fitted_on: str = "") -> PartLandmarks:
    """:func:`fit_from_centroids` on the centroids of part maps (N, K+1, S, S) at ``frame`` pixels."""
    return fit_from_centroids(part_centroids(maps, num_parts), landmarks, num_parts, frame, names, fitted_on)


def landmarks_from_centroids(head: PartLandmarks, centroids: Any, side: int) -> np.ndarray:
    """Landmarks (B, L, 2) from part centroids (B, K, 2), both in pixels of a ``side``-px picture."""
    scale = head.frame / side
    return apply_landmark_regressor(head.regressor, np.asarray(centroids) * scale) / scale


def predict_landmarks(head: PartLandmarks, maps: Any) -> np.ndarray:
    """Landmarks (B, L, 2) in pixels of the maps' own frame, from part maps V (B or none, K+1, s, s)."""
    return landmarks_from_centroids(head, part_centroids(maps, head.num_parts), maps.shape[-1])


def describe_parts(head: PartLandmarks, maps: Any, near: float = 0.35) -> tuple[np.ndarray, list[str | None]]:
    """For one image's maps (K+1, s, s): its landmarks (L, 2) and, for each part, the nearest
    landmark's name when the part's centroid lies within ``near`` x the distance between the first
    two landmarks (the eyes), else None."""
    centroids = part_centroids(maps, head.num_parts)                    # (1, K, 2)
    points = landmarks_from_centroids(head, centroids, maps.shape[-1])[0]  # (L, 2)
    scale = max(float(np.linalg.norm(points[0] - points[1])), 1e-6) if len(points) > 1 else float(maps.shape[-1])
    dist = np.linalg.norm(centroids[0][:, None] - points[None], axis=-1)   # (K, L)
    nearest = dist.argmin(1)
    return points, [head.names[j] if dist[k, j] <= near * scale else None for k, j in enumerate(nearest)]


def part_landmark_names(head: PartLandmarks, maps: Any, near: float = 0.35) -> list[str | None]:
    """The part names of :func:`describe_parts`."""
    return describe_parts(head, maps, near)[1]


def save_part_landmarks(head: PartLandmarks, folder: str | Path) -> Path:
    """Write ``landmarks.json`` into a checkpoint folder (atomic)."""
    from .checkpoint import save_side_file

    record = {"format": FORMAT, "names": list(head.names), "num_parts": head.num_parts, "frame": head.frame,
              "weights": head.regressor.weights.tolist(), "fitted_on": head.fitted_on, "scores": head.scores or {}}
    return save_side_file(folder, LANDMARKS_NAME, record)


def load_part_landmarks(folder: str | Path, num_parts: int) -> PartLandmarks | None:
    """``landmarks.json`` of a checkpoint folder, or None when there is none. A file that is not
    valid JSON of this format, or made for another number of parts, raises ValueError."""
    from .checkpoint import load_side_file

    def parse(record: dict) -> PartLandmarks:
        weights = np.asarray(record["weights"], np.float64)
        names = tuple(str(n) for n in record["names"])
        return PartLandmarks(LandmarkRegressor(weights, len(names)), names, int(record["num_parts"]),
                             int(record["frame"]), str(record.get("fitted_on", "")), record.get("scores") or None)

    head = load_side_file(folder, LANDMARKS_NAME, FORMAT, "landmark file", parse)
    if head is not None and head.num_parts != num_parts:
        raise ValueError(f"{Path(folder) / LANDMARKS_NAME} was fitted for {head.num_parts} parts, "
                         f"the model has {num_parts}")
    return head


__all__ = ["FIVE_POINTS", "LANDMARKS_NAME", "PartLandmarks", "describe_parts", "fit_from_centroids",
           "fit_part_landmarks", "landmarks_from_centroids", "load_part_landmarks", "part_centroids",
           "part_landmark_names", "predict_landmarks", "save_part_landmarks"]
