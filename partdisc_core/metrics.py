"""Evaluation metrics of §4.2: landmark regression NME (eq. 10) and NMI / ARI of part labels.

* NME: the soft centroids of the K foreground maps V_1..V_K are mapped to the annotated
  landmarks by a linear regressor (with bias) fitted on a fit set; the error on a test set is the
  mean landmark distance over the inter-ocular distance d_norm, in percent (eq. 10).
* NMI / ARI: agreement between two clusterings, computed from their contingency table (numpy,
  no scikit-learn needed). For keypoint datasets the pairs are (part label at a keypoint,
  keypoint index); for mask datasets (part label, annotated part) at every annotated pixel.
  The FG- versions take the argmax over the K foreground maps only and, for masks, use only
  pixels whose annotation is foreground.

Coordinates are (x, y) pixels; pixel (row i, column j) has its centre at (x=j, y=i).
Map index convention as in the model: channels 0..K-1 are foreground parts, channel K background.
Functions accept numpy arrays or torch tensors; results are numpy (or python floats).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "soft_centroids", "fit_landmark_regressor", "apply_landmark_regressor", "LandmarkRegressor",
    "nme", "mean_shape_nme", "contingency_table", "nmi_from_contingency", "ari_from_contingency",
    "nmi", "ari", "keypoint_part_labels", "nmi_ari_keypoints", "ContingencyAccumulator",
    "dense_label_pairs",
]


def _np(x: Any, dtype=None) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if dtype is None and x.dtype.is_floating_point:
            x = x.float()
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


# ------------------------------------------------------------------------------------------------
# NME (eq. 10)
# ------------------------------------------------------------------------------------------------
def soft_centroids(maps: Any, eps: float = 1e-12) -> Any:
    """Soft centroid of each map: sum_ij V_k(i, j) * (x_j, y_i) / sum_ij V_k(i, j).

    maps: (B, K, H, W) non-negative maps (pass the K foreground maps, ``masks[:, :K]``).
    Returns (B, K, 2) xy pixels, a torch tensor for torch input, else a numpy array.
    A map that is zero everywhere gets the image centre.
    """
    if hasattr(maps, "detach"):
        import torch

        m = maps.detach().float()
        if m.ndim != 4:
            raise ValueError(f"maps must be (B, K, H, W), got shape {tuple(m.shape)}")
        h, w = m.shape[-2:]
        ys = torch.arange(h, dtype=m.dtype, device=m.device)
        xs = torch.arange(w, dtype=m.dtype, device=m.device)
        row = m.sum(dim=-1)            # (B, K, H): mass per row
        col = m.sum(dim=-2)            # (B, K, W): mass per column
        mass = row.sum(dim=-1)
        safe = mass.clamp_min(eps)
        cx = torch.where(mass > eps, (col * xs).sum(-1) / safe, torch.full_like(mass, (w - 1) / 2))
        cy = torch.where(mass > eps, (row * ys).sum(-1) / safe, torch.full_like(mass, (h - 1) / 2))
        return torch.stack([cx, cy], dim=-1)
    m = _np(maps, np.float64)
    if m.ndim != 4:
        raise ValueError(f"maps must be (B, K, H, W), got shape {m.shape}")
    h, w = m.shape[-2:]
    row, col = m.sum(-1), m.sum(-2)
    mass = row.sum(-1)
    safe = np.maximum(mass, eps)
    cx = np.where(mass > eps, (col * np.arange(w)).sum(-1) / safe, (w - 1) / 2)
    cy = np.where(mass > eps, (row * np.arange(h)).sum(-1) / safe, (h - 1) / 2)
    return np.stack([cx, cy], -1)


@dataclass
class LandmarkRegressor:
    """Linear map from flattened centroids (+ bias) to flattened landmarks.

    weights: (2K + 1, 2L) with the bias in the last row; num_landmarks: L; fitted: (L,) bool, False
    for landmarks never annotated in the fit set (their predictions are meaningless zeros).
    """

    weights: np.ndarray
    num_landmarks: int
    fitted: np.ndarray | None = None

    def __call__(self, centroids: Any) -> np.ndarray:
        return apply_landmark_regressor(self, centroids)


def _design(centroids: Any) -> np.ndarray:
    c = _np(centroids, np.float64)
    if c.ndim != 3 or c.shape[-1] != 2:
        raise ValueError(f"centroids must be (N, K, 2), got shape {c.shape}")
    flat = c.reshape(c.shape[0], -1)
    return np.concatenate([flat, np.ones((flat.shape[0], 1))], axis=1)


def _solve(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Weights (D + 1, T) of y ~ [x, 1] (last design column is the bias)."""
    if ridge > 0:
        # centre so the bias is not shrunk; ridge is relative to the mean feature variance
        xm, ym = x[:, :-1].mean(0), y.mean(0)
        xc, yc = x[:, :-1] - xm, y - ym
        gram = xc.T @ xc
        lam = ridge * max(np.trace(gram) / max(gram.shape[0], 1), 1e-12)
        w = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), xc.T @ yc)
        return np.concatenate([w, (ym - xm @ w)[None]], 0)
    return np.linalg.lstsq(x, y, rcond=None)[0]


def fit_landmark_regressor(centroids: Any, landmarks: Any, ridge: float = 0.0,
                           visible: Any = None) -> LandmarkRegressor:
    """Least squares from centroids (N, K, 2) to landmarks (N, L, 2): the "transformation matrix" of
    §4.2, fitted on the fit set. ``ridge`` > 0 adds a small ridge penalty (relative to the mean
    centroid variance; the bias is not penalised). With ``visible`` (N, L) bool, each landmark is
    fitted only on the images where it is annotated (CUB)."""
    x = _design(centroids)
    y = _np(landmarks, np.float64)
    if y.ndim != 3 or y.shape[-1] != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"landmarks must be (N, L, 2) with N = {x.shape[0]}, got shape {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError("centroids must be finite")
    n, num = y.shape[:2]
    if visible is None:
        if not np.isfinite(y).all():
            raise ValueError("landmarks must be finite")
        return LandmarkRegressor(_solve(x, y.reshape(n, -1), ridge), num)
    v = _np(visible).astype(bool).reshape(n, num)
    weights = np.zeros((x.shape[1], 2 * num))
    fitted = v.any(0)
    for j in np.flatnonzero(fitted):  # one small solve per landmark: each has its own annotated images
        rows = v[:, j]
        weights[:, 2 * j:2 * j + 2] = _solve(x[rows], y[rows, j], ridge)
    return LandmarkRegressor(weights, num, fitted)


def apply_landmark_regressor(regressor: LandmarkRegressor, centroids: Any) -> np.ndarray:
    """Predicted landmarks (N, L, 2) of centroids (N, K, 2)."""
    x = _design(centroids)
    if x.shape[1] != regressor.weights.shape[0]:
        raise ValueError(f"the regressor was fitted on {(regressor.weights.shape[0] - 1) // 2} centroids per "
                         f"image, got {(x.shape[1] - 1) // 2}")
    return (x @ regressor.weights).reshape(x.shape[0], regressor.num_landmarks, 2)


def nme(pred: Any, gt: Any, left_eye: int = 0, right_eye: int = 1, norm: Any = None,
        visible: Any = None) -> float:
    """Eq. (10) in percent: mean over images of the mean landmark error over d_norm.

    pred, gt: (N, L, 2). d_norm is the inter-ocular distance |gt[left_eye] - gt[right_eye]| unless
    ``norm`` (N,) gives it (e.g. the bounding-box size for CUB). ``visible`` (N, L) bool limits
    the mean to annotated points (images with none are skipped).
    """
    p, g = _np(pred, np.float64), _np(gt, np.float64)
    if p.shape != g.shape or p.ndim != 3 or p.shape[-1] != 2:
        raise ValueError(f"pred and gt must both be (N, L, 2), got {p.shape} and {g.shape}")
    if norm is None:
        d = np.linalg.norm(g[:, left_eye] - g[:, right_eye], axis=-1)
    else:
        d = _np(norm, np.float64).reshape(-1)
        if d.shape[0] != g.shape[0]:
            raise ValueError(f"norm must have one value per image ({g.shape[0]}), got {d.shape[0]}")
    if np.any(d <= 0):
        raise ValueError("the normalising distance d_norm must be positive for every image "
                         f"({int((d <= 0).sum())} images have d_norm <= 0)")
    err = np.linalg.norm(p - g, axis=-1) / d[:, None]           # (N, L)
    if visible is None:
        per_image = err.mean(1)
    else:
        v = _np(visible).astype(bool).reshape(err.shape)
        count = v.sum(1)
        keep = count > 0
        per_image = (err * v).sum(1)[keep] / count[keep]
    if per_image.size == 0:
        raise ValueError("no images to compute the NME on")
    return float(per_image.mean() * 100.0)


def mean_shape_nme(fit_landmarks: Any, test_landmarks: Any, left_eye: int = 0, right_eye: int = 1,
                   fit_visible: Any = None, **kw) -> float:
    """NME of predicting the fit set's mean landmarks for every test image (the floor to beat).
    ``fit_visible`` (N, L) averages each landmark over the fit images that annotate it; other
    keywords (``norm``, ``visible``) go to :func:`nme`."""
    fit = _np(fit_landmarks, np.float64)
    test = _np(test_landmarks, np.float64)
    if fit_visible is None:
        mean = fit.mean(0, keepdims=True)
    else:
        v = _np(fit_visible).astype(bool).reshape(fit.shape[:2])[..., None]
        mean = ((fit * v).sum(0) / np.maximum(v.sum(0), 1))[None]
    return nme(np.broadcast_to(mean, test.shape), test, left_eye, right_eye, **kw)


# ------------------------------------------------------------------------------------------------
# NMI / ARI
# ------------------------------------------------------------------------------------------------
def contingency_table(a: Any, b: Any) -> np.ndarray:
    """(n_a, n_b) int64 counts of label pairs; rows/columns are the distinct labels present."""
    a, b = _np(a).reshape(-1), _np(b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"label vectors differ in length: {a.shape[0]} vs {b.shape[0]}")
    ua, ia = np.unique(a, return_inverse=True)
    ub, ib = np.unique(b, return_inverse=True)
    flat = np.bincount(ia.reshape(-1) * len(ub) + ib.reshape(-1), minlength=len(ua) * len(ub))
    return flat.reshape(len(ua), len(ub)).astype(np.int64)


def _entropy(counts: np.ndarray) -> float:
    n = counts.sum()
    p = counts[counts > 0] / n
    return float(-(p * np.log(p)).sum())


def nmi_from_contingency(table: np.ndarray, average: str = "arithmetic") -> float:
    """Normalised mutual information in [0, 1]: MI / mean(H(a), H(b)) (``average``: "arithmetic"
    as scikit-learn's default, "geometric", "min" or "max"). Two single-cluster labelings give 1."""
    t = np.asarray(table, dtype=np.float64)
    t = t[t.sum(1) > 0][:, t.sum(0) > 0]
    n = t.sum()
    if n == 0:
        raise ValueError("no samples")
    if t.shape[0] == t.shape[1] == 1:
        return 1.0
    ra, cb = t.sum(1), t.sum(0)
    nz = t > 0
    outer = np.outer(ra, cb)
    mi = float((t[nz] / n * (np.log(t[nz] * n) - np.log(outer[nz]))).sum())
    ha, hb = _entropy(ra), _entropy(cb)
    if average == "arithmetic":
        den = (ha + hb) / 2
    elif average == "geometric":
        den = np.sqrt(ha * hb)
    elif average == "min":
        den = min(ha, hb)
    elif average == "max":
        den = max(ha, hb)
    else:
        raise ValueError(f"unknown average {average!r}")
    if den <= 0 or mi <= 0:
        return 0.0
    return float(min(max(mi / den, 0.0), 1.0))


def ari_from_contingency(table: np.ndarray) -> float:
    """Adjusted Rand index (Hubert & Arabie, 1985) from a contingency table; 1 for identical
    partitions, about 0 for independent ones, can be negative."""
    t = np.asarray(table, dtype=np.float64)
    n = t.sum()
    if n == 0:
        raise ValueError("no samples")

    def comb2(x):
        return x * (x - 1) / 2

    index = comb2(t).sum()
    sa, sb = comb2(t.sum(1)).sum(), comb2(t.sum(0)).sum()
    total = comb2(n)
    if total == 0:
        return 1.0
    expected = sa * sb / total
    maximum = (sa + sb) / 2
    if maximum == expected:  # both partitions trivial (all one cluster, or all singletons)
        return 1.0
    return float((index - expected) / (maximum - expected))


def nmi(a: Any, b: Any, average: str = "arithmetic") -> float:
    """NMI in [0, 1] of two label vectors (same length)."""
    return nmi_from_contingency(contingency_table(a, b), average)


def ari(a: Any, b: Any) -> float:
    """ARI of two label vectors (same length)."""
    return ari_from_contingency(contingency_table(a, b))


def keypoint_part_labels(labels_or_maps: Any, landmarks: Any, foreground_only: bool = False) -> np.ndarray:
    """Part id at each keypoint: (N, L) int64.

    labels_or_maps: (N, H, W) integer label maps, or (N, K+1, H, W) soft maps (last = background);
    with maps and ``foreground_only`` the argmax runs over the K foreground maps only.
    landmarks: (N, L, 2) xy pixels of that frame, rounded to the nearest pixel and clipped to it.
    """
    pts = _np(landmarks, np.float64)
    if pts.ndim != 3 or pts.shape[-1] != 2:
        raise ValueError(f"landmarks must be (N, L, 2), got shape {pts.shape}")
    n, num = pts.shape[:2]
    is_torch = hasattr(labels_or_maps, "detach")
    ndim = labels_or_maps.ndim
    if ndim == 4:
        h, w = labels_or_maps.shape[-2:]
    elif ndim == 3:
        if foreground_only:
            raise ValueError("foreground_only needs the soft maps (N, K+1, H, W), not hard labels")
        h, w = labels_or_maps.shape[-2:]
    else:
        raise ValueError(f"expected (N, H, W) labels or (N, K+1, H, W) maps, got {ndim} dims")
    if labels_or_maps.shape[0] != n:
        raise ValueError(f"{labels_or_maps.shape[0]} maps but {n} landmark sets")
    xs = np.clip(np.rint(pts[..., 0]), 0, w - 1).astype(np.int64)
    ys = np.clip(np.rint(pts[..., 1]), 0, h - 1).astype(np.int64)
    rows = np.repeat(np.arange(n), num).reshape(n, num)
    if ndim == 3:
        lab = _np(labels_or_maps)
        return lab[rows, ys, xs].astype(np.int64)
    if is_torch:  # gather the score vectors first: avoids an argmax over the full maps
        import torch

        m = labels_or_maps.detach()
        idx = (torch.as_tensor(rows, device=m.device), torch.as_tensor(ys, device=m.device),
               torch.as_tensor(xs, device=m.device))
        scores = m.permute(0, 2, 3, 1)[idx].float().cpu().numpy()   # (N, L, K+1)
    else:
        scores = _np(labels_or_maps).transpose(0, 2, 3, 1)[rows, ys, xs]
    if foreground_only:
        scores = scores[..., :-1]
    return scores.argmax(-1).astype(np.int64)


def nmi_ari_keypoints(part_labels: Any, visible: Any = None) -> tuple[float, float]:
    """NMI and ARI in percent between the part label at each keypoint and the keypoint's index.

    part_labels: (N, L) from :func:`keypoint_part_labels` over all test images; ``visible``
    (N, L) bool drops unannotated keypoints (CUB)."""
    lab = _np(part_labels).astype(np.int64)
    if lab.ndim != 2:
        raise ValueError(f"part_labels must be (N, L), got shape {lab.shape}")
    kp = np.broadcast_to(np.arange(lab.shape[1]), lab.shape)
    if visible is not None:
        v = _np(visible).astype(bool).reshape(lab.shape)
        lab, kp = lab[v], kp[v]
    table = contingency_table(lab, kp)
    return 100.0 * nmi_from_contingency(table), 100.0 * ari_from_contingency(table)


def dense_label_pairs(maps: Any, gt: Any, foreground_only: bool = False, ignore_index: int = 255,
                      background_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(predicted part, annotated part) at every annotated pixel, for dense (mask) evaluation.

    maps: (N, K+1, H, W) soft maps; gt: (N, H, W) annotated part ids (``background_index`` =
    background; ``ignore_index`` and negative values = not annotated). With ``foreground_only``
    only pixels annotated as foreground count and the argmax runs over the K foreground maps.
    """
    g = _np(gt).astype(np.int64)
    if maps.ndim != 4 or tuple(maps.shape[-2:]) != g.shape[-2:] or maps.shape[0] != g.shape[0]:
        raise ValueError(f"maps (N, K+1, H, W) and gt (N, H, W) must agree, got {tuple(maps.shape)} and {g.shape}")
    if hasattr(maps, "detach"):
        m = maps.detach()
        pred = (m[:, :-1] if foreground_only else m).argmax(1).cpu().numpy()
    else:
        m = np.asarray(maps)
        pred = (m[:, :-1] if foreground_only else m).argmax(1)
    keep = (g >= 0) & (g != ignore_index)
    if foreground_only:
        keep &= g != background_index
    return pred[keep].astype(np.int64), g[keep]


class ContingencyAccumulator:
    """Contingency table summed over batches (dense evaluation over many images without storing
    every pixel). Labels are non-negative integers; the table grows when a larger one appears."""

    def __init__(self, num_a: int = 1, num_b: int = 1) -> None:
        self.table = np.zeros((max(int(num_a), 1), max(int(num_b), 1)), dtype=np.int64)

    def update(self, a: Any, b: Any) -> None:
        a, b = _np(a).reshape(-1).astype(np.int64), _np(b).reshape(-1).astype(np.int64)
        if a.shape != b.shape:
            raise ValueError(f"label vectors differ in length: {a.shape[0]} vs {b.shape[0]}")
        if a.size == 0:
            return
        if a.min() < 0 or b.min() < 0:
            raise ValueError("labels must be non-negative integers")
        na, nb = max(self.table.shape[0], int(a.max()) + 1), max(self.table.shape[1], int(b.max()) + 1)
        if (na, nb) != self.table.shape:
            grown = np.zeros((na, nb), dtype=np.int64)
            grown[:self.table.shape[0], :self.table.shape[1]] = self.table
            self.table = grown
        self.table += np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb)

    @property
    def count(self) -> int:
        return int(self.table.sum())

    def nmi_ari(self) -> tuple[float, float]:
        """(NMI, ARI) in percent."""
        if self.count == 0:
            raise ValueError("no samples were accumulated")
        return 100.0 * nmi_from_contingency(self.table), 100.0 * ari_from_contingency(self.table)
