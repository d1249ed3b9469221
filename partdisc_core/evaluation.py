"""Evaluation of a part discovery model on datasets (§4.2), shared by ``train/evaluate.py`` and the
training engine's validation-based model selection.

* :func:`evaluate_landmarks` (CelebA, AFLW, CUB, landmark folders): NME of the linear regressor
  from the soft centroids of V_1..V_K to the landmarks (fitted on ``fit_dataset``, eq. 10),
  keypoint NMI / ARI and their FG- versions on ``test_dataset``, and the mean-shape baseline.
* :func:`evaluate_masks` (DeepFashion, PartImageNet, synthetic): dense NMI / ARI over annotated
  pixels and FG-NMI / FG-ARI over pixels annotated as foreground.
* :func:`evaluate_dense68` (faces with 68 points, e.g. ``helen_val68``): nmi68 / ari68 / bg68,
  coverage of the face and spill onto the scenery (definitions in :mod:`partdisc_core.dense68`).

Datasets yield the dicts of :mod:`partdisc_core.data`: ``image`` (3, S, S), ``landmarks`` (L, 2) in
that S x S frame, optionally ``orig_size`` (H, W) of the frame the NME is measured in (the file's
pixels: the S x S frame is stretched back to it, so NME on non-square images such as CelebA's
178 x 218 is computed in original pixels), ``visible`` (L,) bool, ``nme_norm`` (d_norm in that
frame, e.g. the bounding-box size for CUB), ``mask`` (S, S) part ids (0 = background,
255 / negative = not annotated) and ``class_id``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from .metrics import (ContingencyAccumulator, apply_landmark_regressor, dense_label_pairs, fit_landmark_regressor,
                      keypoint_part_labels, mean_shape_nme, nme, nmi_ari_keypoints, soft_centroids)

IGNORE_INDEX = 255

__all__ = ["rotate_batch", "collect", "Collected", "evaluate_landmarks", "evaluate_masks", "evaluate",
           "evaluate_dense68", "dataset_image_names", "limit_dataset", "interleaved_split", "IGNORE_INDEX"]


# ------------------------------------------------------------------------------------------------
# rotation (Table 7)
# ------------------------------------------------------------------------------------------------
def _rotation_theta(angle_deg: float, batch: int, device, dtype) -> torch.Tensor:
    a = math.radians(float(angle_deg))
    c, s = math.cos(a), math.sin(a)
    # output -> input coordinates in affine_grid's [-1, 1] frame (inverse of the forward rotation)
    theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], device=device, dtype=dtype)
    return theta.unsqueeze(0).expand(batch, 2, 3)


def rotate_points(points: torch.Tensor, angle_deg: float, size: int) -> torch.Tensor:
    """Rotate (..., 2) xy pixel points of a size x size image about its centre, counter-clockwise
    as displayed (y points down), matching :func:`rotate_batch`."""
    a = math.radians(float(angle_deg))
    c, s = math.cos(a), math.sin(a)
    centre = (size - 1) / 2.0
    dx, dy = points[..., 0] - centre, points[..., 1] - centre
    return torch.stack([centre + c * dx + s * dy, centre - s * dx + c * dy], dim=-1)


def rotate_batch(images: torch.Tensor, angle_deg: float, landmarks: torch.Tensor | None = None,
                 masks: torch.Tensor | None = None, fill: str = "border"):
    """Rotate square images (B, 3, S, S) about their centre by ``angle_deg`` (counter-clockwise as
    displayed), with their landmarks (B, L, 2) and part masks (B, S, S).

    ``fill``: "border" repeats edge pixels, "zeros" fills black. Mask pixels that come from outside
    the image become :data:`IGNORE_INDEX`. Returns (images, landmarks, masks)."""
    if fill not in ("border", "zeros"):
        raise ValueError(f"fill must be 'border' or 'zeros', got {fill!r}")
    b, _, h, w = images.shape
    if h != w:
        raise ValueError(f"rotate_batch needs square images, got {h}x{w}")
    if not angle_deg:
        return images, landmarks, masks
    theta = _rotation_theta(angle_deg, b, images.device, torch.float32)
    grid = F.affine_grid(theta, (b, 1, h, w), align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode=fill, align_corners=False)
    if landmarks is not None:
        landmarks = rotate_points(landmarks.float(), angle_deg, w)
    if masks is not None:
        m = masks.to(grid.device).float().unsqueeze(1)
        inside = F.grid_sample(torch.ones_like(m), grid, mode="nearest", padding_mode="zeros", align_corners=False)
        rot = F.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        masks = torch.where(inside > 0.5, rot, torch.full_like(rot, IGNORE_INDEX)).squeeze(1).round().long()
    return out.clamp(0, 1), landmarks, masks


# ------------------------------------------------------------------------------------------------
# one pass of the model over a dataset
# ------------------------------------------------------------------------------------------------
@dataclass
class Collected:
    """What one pass over a dataset gives (N images). Landmark fields are None for mask-only data.

    centroids / landmarks: (N, K, 2) / (N, L, 2) in the evaluation frame (see module docstring);
    labels / fg_labels: (N, L) part id at each landmark (argmax over K+1 maps / K foreground maps);
    visible: (N, L) bool or None; norm: (N,) d_norm or None; dense / fg_dense: contingency tables.
    """

    num: int = 0
    centroids: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    labels: np.ndarray | None = None
    fg_labels: np.ndarray | None = None
    visible: np.ndarray | None = None
    norm: np.ndarray | None = None
    dense: ContingencyAccumulator | None = None
    fg_dense: ContingencyAccumulator | None = None


def limit_dataset(dataset: Dataset, num: int | None) -> Dataset:
    """``num`` items spread evenly over a dataset, first and last included (all of it when ``num`` is
    None or larger). Evenly, not the first ``num``: datasets list their files sorted by path, so a
    prefix can be one sub-collection only (the first 1,000 MTFL training files are all LFW faces,
    whose mean shape is not the hold-out's)."""
    if num is None or num >= len(dataset):
        return dataset
    if num <= 0:
        raise ValueError(f"need a positive number of images, got {num}")
    indices = np.linspace(0, len(dataset) - 1, int(num)).round().astype(int)
    return Subset(dataset, indices.tolist())


def interleaved_split(dataset: Dataset, fit_every: int = 7, test_every: int = 14, test_offset: int = 3
                      ) -> tuple[Dataset, Dataset]:
    """Two disjoint subsets of one split, both spread over all of it: every ``fit_every``-th image
    fits the landmark regressor, every ``test_every``-th from ``test_offset`` is measured. For
    validating on a *training* split (e.g. MTFL's, whose hold-out stays untouched for the card),
    where a prefix would be one sub-collection only (see :func:`limit_dataset`)."""
    if min(fit_every, test_every) < 1 or test_offset < 0:
        raise ValueError("fit_every and test_every must be >= 1 and test_offset >= 0")
    fit = list(range(0, len(dataset), fit_every))
    taken = set(fit)
    test = [i for i in range(test_offset, len(dataset), test_every) if i not in taken]
    if not fit or not test:
        raise ValueError(f"a split of {len(dataset)} images is too small to interleave")
    return Subset(dataset, fit), Subset(dataset, test)


def _loader(dataset: Dataset, batch_size: int, num_workers: int) -> DataLoader:
    if len(dataset) == 0:
        raise ValueError("the dataset is empty")
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      drop_last=False)


@torch.no_grad()
def collect(model, dataset: Dataset, batch_size: int = 32, rotate: float = 0.0, fill: str = "border",
            num_workers: int = 0, keypoints: bool = True, dense: bool = True, progress: bool = False) -> Collected:
    """Run ``model`` (in eval mode) over ``dataset`` and gather centroids, keypoint part labels and
    dense contingency tables, as far as the dataset has landmarks / masks."""
    if model.training:
        raise RuntimeError("call model.eval() before evaluation")
    k = model.cfg.num_parts
    conditional = model.cfg.num_classes > 1
    out = Collected()
    parts: dict[str, list] = {n: [] for n in ("centroids", "landmarks", "labels", "fg_labels", "visible", "norm")}
    loader = _loader(dataset, batch_size, num_workers)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="evaluating", unit="batch", dynamic_ncols=True)
    for batch in loader:
        images = batch["image"]
        b, _, s, s2 = images.shape
        if s != s2:
            raise ValueError(f"datasets must yield square images, got {s}x{s2}")
        lm = batch.get("landmarks") if keypoints else None
        masks = batch.get("mask") if dense else None
        images, lm, masks = rotate_batch(images, rotate, lm, masks, fill=fill)
        class_ids = None
        if conditional:
            if "class_id" not in batch:
                raise ValueError("a class-conditional model needs datasets that yield class_id")
            class_ids = batch["class_id"]
        pred = model.predict(images, class_ids=class_ids, return_attention=False, output_size=s,
                             batch_size=batch_size)
        maps = pred.masks                                        # (B, K+1, S, S) on the model's device
        out.num += b
        if lm is not None:
            lm = lm.float()
            cen = soft_centroids(maps[:, :k]).cpu()
            parts["labels"].append(keypoint_part_labels(maps, lm))
            parts["fg_labels"].append(keypoint_part_labels(maps, lm, foreground_only=True))
            if "orig_size" in batch:   # stretch the S x S frame back to the evaluation frame
                hw = batch["orig_size"].float().reshape(b, 2)
                scale = torch.stack([hw[:, 1], hw[:, 0]], dim=1).unsqueeze(1) / s   # (B, 1, 2) = (W/S, H/S)
            else:
                scale = torch.ones(b, 1, 2)
            parts["centroids"].append((cen * scale).numpy())
            parts["landmarks"].append((lm.cpu() * scale).numpy())
            if "visible" in batch:
                parts["visible"].append(batch["visible"].bool().numpy())
            if "nme_norm" in batch:
                parts["norm"].append(batch["nme_norm"].double().reshape(-1).numpy())
        if masks is not None:
            if out.dense is None:
                out.dense, out.fg_dense = ContingencyAccumulator(k + 1), ContingencyAccumulator(k)
            out.dense.update(*dense_label_pairs(maps, masks, ignore_index=IGNORE_INDEX))
            out.fg_dense.update(*dense_label_pairs(maps, masks, foreground_only=True, ignore_index=IGNORE_INDEX))
    for name, chunks in parts.items():
        if chunks:
            setattr(out, name, np.concatenate(chunks))
    return out


# ------------------------------------------------------------------------------------------------
# metrics over datasets
# ------------------------------------------------------------------------------------------------
def _check_landmarks(c: Collected, what: str) -> None:
    if c.landmarks is None:
        raise ValueError(f"the {what} dataset yields no 'landmarks'; it cannot be used for landmark evaluation")


def landmark_metrics(fit: Collected, test: Collected, ridge: float = 0.0, left_eye: int = 0,
                     right_eye: int = 1) -> dict:
    """NME (eq. 10), keypoint (FG-)NMI / (FG-)ARI and the mean-shape NME from two passes."""
    _check_landmarks(fit, "fit")
    _check_landmarks(test, "test")
    if fit.landmarks.shape[1:] != test.landmarks.shape[1:]:
        raise ValueError(f"fit and test landmarks differ in shape: {fit.landmarks.shape[1:]} vs "
                         f"{test.landmarks.shape[1:]}")
    num_params = fit.centroids.shape[1] * 2 + 1
    if fit.num < num_params and ridge <= 0:
        warnings.warn(f"only {fit.num} fit images for a regressor with {num_params} inputs per coordinate: "
                      "the least-squares fit is underdetermined; use more fit images or a small ridge")
    reg = fit_landmark_regressor(fit.centroids, fit.landmarks, ridge=ridge, visible=fit.visible)
    pred = apply_landmark_regressor(reg, test.centroids)
    test_visible = test.visible
    if reg.fitted is not None and not reg.fitted.all():
        missing = np.flatnonzero(~reg.fitted).tolist()
        warnings.warn(f"landmarks {missing} are never annotated in the fit set: left out of the NME")
        base = np.ones(test.landmarks.shape[:2], bool) if test_visible is None else test_visible
        test_visible = base & reg.fitted[None]
    kw = dict(left_eye=left_eye, right_eye=right_eye, norm=test.norm, visible=test_visible)
    nmi, ari = nmi_ari_keypoints(test.labels, test.visible)
    fg_nmi, fg_ari = nmi_ari_keypoints(test.fg_labels, test.visible)
    return {
        "nme": nme(pred, test.landmarks, **kw),
        "nmi": nmi, "ari": ari, "fg_nmi": fg_nmi, "fg_ari": fg_ari,
        "num_fit": fit.num, "num_test": test.num,
        "nme_mean_shape": mean_shape_nme(fit.landmarks, test.landmarks, fit_visible=fit.visible, **kw),
    }


def mask_metrics(test: Collected) -> dict:
    """Dense NMI / ARI over annotated pixels, FG- versions over foreground pixels (percent)."""
    if test.dense is None:
        raise ValueError("the test dataset yields no 'mask'; it cannot be used for dense evaluation")
    if test.dense.count == 0:
        raise ValueError("no annotated pixels in the test set")
    nmi, ari = test.dense.nmi_ari()
    fg_nmi, fg_ari = test.fg_dense.nmi_ari() if test.fg_dense.count else (float("nan"), float("nan"))
    return {"nmi": nmi, "ari": ari, "fg_nmi": fg_nmi, "fg_ari": fg_ari, "num_test": test.num}


def evaluate_landmarks(model, fit_dataset: Dataset, test_dataset: Dataset, batch_size: int = 32,
                       rotate: float = 0.0, ridge: float = 0.0, num_workers: int = 0, fill: str = "border",
                       progress: bool = False) -> dict:
    """Landmark evaluation: fit the centroid -> landmark regressor on ``fit_dataset``; report on
    ``test_dataset`` (rotated by ``rotate`` degrees, Table 7; the fit set is never rotated).

    Returns {nme, nmi, ari, fg_nmi, fg_ari, num_fit, num_test, nme_mean_shape} (metrics in percent).
    """
    was_training = model.training
    model.eval()
    try:
        fit = collect(model, fit_dataset, batch_size, 0.0, fill, num_workers, dense=False, progress=progress)
        test = collect(model, test_dataset, batch_size, rotate, fill, num_workers, dense=False, progress=progress)
    finally:
        model.train(was_training)
    return landmark_metrics(fit, test, ridge=ridge)


def evaluate_masks(model, test_dataset: Dataset, batch_size: int = 32, rotate: float = 0.0,
                   num_workers: int = 0, fill: str = "border", progress: bool = False) -> dict:
    """Dense evaluation against annotated part masks: {nmi, ari, fg_nmi, fg_ari, num_test}."""
    was_training = model.training
    model.eval()
    try:
        test = collect(model, test_dataset, batch_size, rotate, fill, num_workers, keypoints=False,
                       progress=progress)
    finally:
        model.train(was_training)
    return mask_metrics(test)


def dataset_image_names(dataset: Dataset) -> list[str]:
    """The image names (relative to its folder) of a landmarks dataset or a Subset of one."""
    if isinstance(dataset, Subset):
        names = dataset_image_names(dataset.dataset)
        return [names[i] for i in dataset.indices]
    if not hasattr(dataset, "names"):
        raise TypeError(f"{type(dataset).__name__} does not list its images' names")
    return list(dataset.names)


@torch.no_grad()
def evaluate_dense68(model, dataset: Dataset, batch_size: int = 32, num_workers: int = 0,
                     progress: bool = False) -> dict:
    """The dense face figures of :mod:`partdisc_core.dense68` over a dataset whose items carry
    ``orig_landmarks`` (68, 2) and ``orig_size`` (e.g. ``LandmarksDataset(root, csv_name=
    "landmarks68.csv")``): the soft maps are resized to each image's own size before the argmax.
    Returns {nmi68, ari68, bg68, coverage, spill, num_dense68} (percent)."""
    from .dense68 import Dense68Accumulator

    was_training = model.training
    model.eval()
    acc = Dense68Accumulator()
    background = model.cfg.num_tokens - 1
    loader = _loader(dataset, batch_size, num_workers)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="dense68", unit="batch", dynamic_ncols=True)
    try:
        for batch in loader:
            maps = model.predict(batch["image"], return_attention=False, output_size=None,
                                 batch_size=batch_size).masks
            sizes = [tuple(int(v) for v in hw) for hw in batch["orig_size"].reshape(-1, 2).tolist()]
            for size in sorted(set(sizes)):   # one resize per distinct image size in the batch
                rows = [i for i, s in enumerate(sizes) if s == size]
                resized = F.interpolate(maps[rows].float(), size=size, mode="bilinear", align_corners=False)
                for labels, i in zip(resized.argmax(1).cpu(), rows):
                    acc.update(labels.numpy(), batch["orig_landmarks"][i].numpy(), background)
    finally:
        model.train(was_training)
    return acc.result()


def evaluate(model, test_dataset: Dataset, fit_dataset: Dataset | None = None, batch_size: int = 32,
             rotate: float = 0.0, ridge: float = 0.0, num_workers: int = 0, fill: str = "border",
             progress: bool = False) -> dict:
    """Whatever the data allows in one pass: landmark metrics when the datasets have landmarks and a
    fit set is given; dense mask metrics when the test set has masks (under ``dense_*`` keys if
    landmark metrics are also present, else as nmi / ari / fg_nmi / fg_ari)."""
    was_training = model.training
    model.eval()
    try:
        test = collect(model, test_dataset, batch_size, rotate, fill, num_workers, progress=progress)
        fit = None
        if fit_dataset is not None and test.landmarks is not None:
            fit = collect(model, fit_dataset, batch_size, 0.0, fill, num_workers, dense=False, progress=progress)
    finally:
        model.train(was_training)
    result: dict[str, Any] = {}
    if fit is not None:
        result.update(landmark_metrics(fit, test, ridge=ridge))
    if test.dense is not None:
        dense = mask_metrics(test)
        if result:
            result.update({f"dense_{k}": v for k, v in dense.items() if k != "num_test"})
        else:
            result.update(dense)
    if not result:
        if test.landmarks is not None:
            raise ValueError("landmark evaluation needs a fit set (fit_dataset)")
        raise ValueError("the test dataset yields neither landmarks nor masks: nothing to evaluate")
    return result
