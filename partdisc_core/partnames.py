"""One fixed name per part of a model ("left eye", "nose", "hair"), fitted once on faces with 68
annotated points and saved beside the checkpoint as ``part_names.json``.

The parts are discovered without labels, so they come as numbers 1..K. To name them, every pixel
of an annotated face is given a *face region* built from its 68 points (iBUG / 300-W order: jaw
0-16, brows 17-26, nose 27-35, eyes 36-47 with 36-41 the image-left eye, mouth 48-67), see
:func:`face_regions`:

* the features: ``left eye``, ``right eye``, ``left brow``, ``right brow``, ``nose`` and ``mouth``
  (the points' outline, widened by a margin in proportion to the face's width);
* the rest of the face (the jaw line closed over the brows, :func:`partdisc_core.dense68.face_region`):
  ``forehead`` above the brows, ``chin`` below the mouth, ``left cheek`` / ``right cheek`` beside
  the nose line in between;
* around the face: ``forehead`` up to :data:`FOREHEAD_HEIGHT` face heights above the brows (within
  the jaw's width), ``hair`` above that and above the brows beyond the jaw's width; beside the face
  ``left temple`` / ``right temple`` down to the eyes, ``left side`` / ``right side`` down to the
  chin, and below the chin ``neck`` (within the jaw's width) and ``left shoulder`` / ``right shoulder``.

Each part is then named after the region it overlaps best over all images: the largest Dice score
2 |part and region| / (|part| + |region|), so a small part on an eye is "left eye" and a large part
on the cheek is "left cheek" even though a few mouth points lie under it. Parts that get the same
region are told apart by where they lie in it (:func:`qualify`): "left" / "right", then "upper" /
"lower" (the mouth's halves: "upper lip" / "lower lip"), and numbers beyond two. "Left" and "right" are always the
IMAGE's left and right (the person's right eye is the "left eye"), as in the 5-point landmark files.

* :class:`PartNameCounter` sums part-by-region pixel counts over batches of label maps;
  :meth:`PartNameCounter.result` names the parts (:class:`PartNames`).
* :func:`save_part_names` / :func:`load_part_names` write and read ``part_names.json``
  (``load_model`` attaches it as ``model.part_names``; ``save_model`` writes it back; ``hub.py``
  publishes it).
* :func:`part_label` / :func:`part_labels`: "3 · nose" for a model with names, "part 3" without.

``train/fit_part_names.py`` runs the fit for a checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .dense68 import check_points as _check_points

PART_NAMES_NAME = "part_names.json"
FORMAT = "partdisc-part-names-1"

FEATURES: tuple[tuple[str, tuple[int, ...], float], ...] = (
    # (region, iBUG points, margin in face widths); later entries win where they overlap
    ("nose", tuple(range(27, 36)), 0.05),
    ("mouth", tuple(range(48, 60)), 0.06),
    ("left brow", tuple(range(17, 22)), 0.05),
    ("right brow", tuple(range(22, 27)), 0.05),
    ("left eye", tuple(range(36, 42)), 0.07),
    ("right eye", tuple(range(42, 48)), 0.07),
)
"""The facial features as regions: the outline (convex hull) of their points, widened by a margin."""
REGIONS: tuple[str, ...] = ("hair", "forehead", "left temple", "right temple", "left side", "right side",
                            "left shoulder", "right shoulder", "neck", "left cheek", "right cheek", "chin",
                            ) + tuple(name for name, _, _ in FEATURES)
"""Every face region a part can be named after (the index of :func:`face_regions`' map)."""
FOREHEAD_HEIGHT = 0.45
"""The forehead reaches this many face heights (brow top to chin) above the brows."""
SIDE = 0.05
"""A part whose mean position lies this many face widths left or right of the nose bridge is on that side."""
QUALIFIED = {"upper mouth": "upper lip", "lower mouth": "lower lip"}
"""Nicer words for some qualified names."""

_R = {name: i for i, name in enumerate(REGIONS)}


def face_regions(points: Any, size: int | tuple[int, int]) -> np.ndarray:
    """(H, W) int map of the :data:`REGIONS` index of every pixel, for one face's 68 points (xy in
    pixels of an H x W picture; ``size`` an int for a square one). See the module docstring."""
    import cv2

    from .dense68 import face_region

    p = _check_points(points)
    h, w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    ys, xs = np.mgrid[0:h, 0:w] + 0.5                      # pixel centres
    jaw = p[0:17]
    left, right = jaw[:, 0].min(), jaw[:, 0].max()
    width = max(right - left, 1.0)
    brow_top, chin = p[17:27, 1].min(), jaw[:, 1].max()
    height = max(chin - brow_top, 1.0)
    mid = p[27:31, 0].mean()                               # the nose bridge
    mouth_bottom = p[48:60, 1].max()
    within = (xs >= left) & (xs <= right)

    left_of = xs < mid
    region = np.where(left_of, _R["left side"], _R["right side"])
    region = np.where(ys < p[36:48, 1].mean(), np.where(left_of, _R["left temple"], _R["right temple"]), region)
    region = np.where(ys > chin, np.where(within, _R["neck"], np.where(left_of, _R["left shoulder"],
                                                                        _R["right shoulder"])), region)
    above = ys < brow_top
    region = np.where(above, np.where(within & (ys >= brow_top - FOREHEAD_HEIGHT * height), _R["forehead"],
                                      _R["hair"]), region)
    inner = np.where(above, _R["forehead"], np.where(ys > mouth_bottom, _R["chin"],
                                                     np.where(left_of, _R["left cheek"], _R["right cheek"])))
    region = np.where(face_region(p, (h, w)), inner, region)
    for name, index, margin in FEATURES:
        mask = np.zeros((h, w), np.uint8)
        hull = cv2.convexHull(np.round(p[list(index)] * 16).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
        r = max(1, int(round(margin * width)))
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        region[mask.astype(bool)] = _R[name]
    return region.astype(np.int64)


@dataclass
class PartNames:
    """The fixed names of a model's ``num_parts`` parts (``names[k - 1]`` for part k), with the region
    each was named after and its Dice score, where they were fitted and on how many images."""

    names: tuple[str, ...]
    num_parts: int
    regions: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    fitted_on: str = ""
    images: int = 0

    def __post_init__(self) -> None:
        self.names = tuple(str(n) for n in self.names)
        self.regions, self.scores = tuple(self.regions), tuple(float(s) for s in self.scores)
        if len(self.names) != self.num_parts:
            raise ValueError(f"{len(self.names)} names for {self.num_parts} parts")
        if any(not n.strip() for n in self.names) or len(set(self.names)) != len(self.names):
            raise ValueError(f"part names must be unique and not empty, got {list(self.names)}")


@dataclass
class PartNameCounter:
    """Pixel counts of every (part, face region) pair over label maps of annotated faces::

        counter = PartNameCounter(num_parts=16)
        for labels, points in batches:            # (B, S, S) part ids 0..K, (B, 68, 2) xy in that frame
            counter.update(labels, points)
        names = counter.result(fitted_on="helen_val68")

    Label K is the background and is not named. Also sums each pair's pixel positions in face
    coordinates (x from the nose bridge, y from the brow top, in face widths and heights), to tell
    parts apart that share a region."""

    num_parts: int
    counts: np.ndarray = field(init=False)
    sum_x: np.ndarray = field(init=False)
    sum_y: np.ndarray = field(init=False)
    images: int = 0

    def __post_init__(self) -> None:
        shape = (self.num_parts + 1, len(REGIONS))
        self.counts, self.sum_x, self.sum_y = np.zeros(shape, np.int64), np.zeros(shape), np.zeros(shape)

    def update(self, labels: Any, points: Any) -> None:
        """Add label maps (B, H, W) or (H, W) with values 0..K and their faces' points (B, 68, 2) or
        (68, 2), xy in the label maps' pixels."""
        lab = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels)
        pts = np.asarray(points.cpu() if hasattr(points, "cpu") else points, np.float64)
        if lab.ndim == 2:
            lab, pts = lab[None], pts[None]
        if lab.ndim != 3 or len(pts) != len(lab):
            raise ValueError(f"labels must be (B, H, W) with (B, 68, 2) points, got {lab.shape} and {pts.shape}")
        if lab.size and (lab.min() < 0 or lab.max() > self.num_parts):
            raise ValueError(f"labels must lie in 0..{self.num_parts}")
        h, w = lab.shape[1:]
        ys, xs = np.mgrid[0:h, 0:w] + 0.5
        shape = self.counts.shape
        for one, p in zip(lab, pts):  # one face at a time: its regions come from its own points
            p = _check_points(p)
            index = one.astype(np.int64).ravel() * len(REGIONS) + face_regions(p, (h, w)).ravel()
            width = max(np.ptp(p[0:17, 0]), 1.0)
            brow_top = p[17:27, 1].min()
            height = max(p[0:17, 1].max() - brow_top, 1.0)
            u = ((xs - p[27:31, 0].mean()) / width).ravel()
            v = ((ys - brow_top) / height).ravel()
            self.counts += np.bincount(index, minlength=self.counts.size).reshape(shape)
            self.sum_x += np.bincount(index, weights=u, minlength=self.counts.size).reshape(shape)
            self.sum_y += np.bincount(index, weights=v, minlength=self.counts.size).reshape(shape)
            self.images += 1

    def dice(self) -> np.ndarray:
        """(K, R) Dice scores of every foreground part against every region."""
        c = self.counts[:self.num_parts].astype(np.float64)
        part, region = self.counts[:self.num_parts].sum(1, keepdims=True), self.counts.sum(0, keepdims=True)
        return 2.0 * c / np.maximum(part + region, 1)

    def result(self, fitted_on: str = "") -> PartNames:
        """Each part named after its best region, made unique (module docstring); a part that never
        appeared keeps its number ("part 7")."""
        if self.images == 0:
            raise ValueError("no annotated faces were counted")
        dice = self.dice()
        best = dice.argmax(1)
        seen = self.counts[:self.num_parts].sum(1) > 0
        base = [REGIONS[r] if ok else f"part {k + 1}" for k, (r, ok) in enumerate(zip(best, seen))]
        names = list(base)
        for name in sorted(set(base)):
            group = [k for k in range(self.num_parts) if base[k] == name]
            if len(group) > 1:
                where = [self._position(k, best[k]) for k in group]
                for k, qualified in zip(group, qualify(name, where)):
                    names[k] = qualified
        return PartNames(tuple(unique(names)), self.num_parts, tuple(base),
                         tuple(round(float(dice[k, r]), 3) for k, r in enumerate(best)), fitted_on, self.images)

    def _position(self, k: int, r: int) -> tuple[float, float]:
        n = max(int(self.counts[k, r]), 1)
        return float(self.sum_x[k, r] / n), float(self.sum_y[k, r] / n)


def qualify(name: str, where: Sequence[tuple[float, float]]) -> list[str]:
    """Names for parts that share the region ``name``, from their mean positions (x, y) in it, in
    face widths from the nose bridge and face heights from the brows: a part more than
    :data:`SIDE` to the left or right is "left NAME" / "right NAME" (unless NAME has a side); two
    that still share a name are "upper NAME" / "lower NAME" (the mouth's: "upper lip" / "lower
    lip"), more are numbered from the top."""
    xy = np.asarray(where, np.float64).reshape(-1, 2)
    has_side = name.split()[0] in ("left", "right")
    out = [name if has_side or abs(x) <= SIDE else f"{'left' if x < 0 else 'right'} {name}" for x, _ in xy]
    for shared in sorted(set(out)):
        group = [i for i, n in enumerate(out) if n == shared]
        if len(group) < 2:
            continue
        for rank, i in enumerate(sorted(group, key=lambda i: xy[i, 1])):
            if len(group) == 2:
                word = ("upper", "lower")[rank]
                out[i] = QUALIFIED.get(f"{word} {shared}", f"{word} {shared}")
            else:
                out[i] = f"{shared} {rank + 1}"
    return out


def unique(names: Sequence[str]) -> list[str]:
    """``names`` with later repeats numbered ("nose", "nose 2"); the first of each keeps its name."""
    out: list[str] = []
    for name in names:
        candidate, n = name, 1
        while candidate in out:
            n += 1
            candidate = f"{name} {n}"
        out.append(candidate)
    return out


def part_label(k: int, names: Sequence[str] | None = None) -> str:
    """Part ``k`` (1..K) as people read it: "3 · nose" with names, "part 3" without."""
    return f"{k} · {names[k - 1]}" if names else f"part {k}"


def part_labels(num_parts: int, names: Sequence[str] | None = None) -> list[str]:
    """:func:`part_label` of parts 1..K."""
    return [part_label(k, names) for k in range(1, num_parts + 1)]


def names_of(model: Any) -> tuple[str, ...] | None:
    """The fixed part names of a model (``model.part_names``, from ``part_names.json``), or None."""
    fitted = getattr(model, "part_names", None)
    return None if fitted is None else fitted.names


def save_part_names(names: PartNames, folder: str | Path) -> Path:
    """Write ``part_names.json`` into a checkpoint folder (atomic)."""
    from .checkpoint import save_side_file

    record = {"format": FORMAT, "num_parts": names.num_parts, "names": list(names.names),
              "regions": list(names.regions), "dice": list(names.scores), "fitted_on": names.fitted_on,
              "images": names.images,
              "note": "left and right are the image's left and right; each part is named after the face "
                      "region it overlaps best on the annotated faces (partdisc_core/partnames.py)"}
    return save_side_file(folder, PART_NAMES_NAME, record)


def load_part_names(folder: str | Path, num_parts: int) -> PartNames | None:
    """``part_names.json`` of a checkpoint folder, or None when there is none. A file that is not
    valid JSON of this format, or made for another number of parts, raises ValueError."""
    from .checkpoint import load_side_file

    def parse(record: dict) -> PartNames:
        return PartNames(tuple(record["names"]), int(record["num_parts"]), tuple(record.get("regions", ())),
                         tuple(record.get("dice", ())), str(record.get("fitted_on", "")), int(record.get("images", 0)))

    names = load_side_file(folder, PART_NAMES_NAME, FORMAT, "part-names file", parse)
    if names is not None and names.num_parts != num_parts:
        raise ValueError(f"{Path(folder) / PART_NAMES_NAME} names {names.num_parts} parts, the model has {num_parts}")
    return names


__all__ = ["FEATURES", "PART_NAMES_NAME", "PartNameCounter", "PartNames", "REGIONS", "face_regions",
           "load_part_names", "names_of", "part_label", "part_labels", "qualify", "save_part_names", "unique"]
