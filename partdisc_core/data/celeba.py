"""``celeba``: CelebA with the MAFL split (CelebA-in-the-wild, §4.1), in the official file layout.

    ROOT/  Img/img_celeba/000001.jpg ...          in-the-wild images   (or ROOT/img_celeba/)
           Img/img_align_celeba/000001.jpg ...    aligned images       (or ROOT/img_align_celeba/)
           Anno/list_landmarks_celeba.txt         points of the in-the-wild images
           Anno/list_landmarks_align_celeba.txt   points of the aligned images
           Anno/list_bbox_celeba.txt              face boxes (in-the-wild only; for the 30 % filter)
           MAFL/training.txt, MAFL/testing.txt    MAFL image lists (one file name per line)

(``Anno/`` and ``MAFL/`` files may also sit directly in ROOT.) ``aligned=None`` picks the
in-the-wild images when present, else the aligned ones. Splits, as in the paper: ``test`` = MAFL
testing, ``val`` = MAFL training, ``train`` = every listed image not in MAFL testing. In the wild,
images whose face box covers less than ``min_face_fraction`` (0.3) of the image are dropped from
every split (needs list_bbox_celeba.txt). Each image is squashed to S x S; ``orig_landmarks`` /
``orig_size`` keep the file's pixels so NME is measured there.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from . import register_dataset
from .common import check_split, find_path, landmark_item, read_rows


def read_celeba_points(path: Path) -> tuple[list[str], np.ndarray]:
    """(file names, (N, 5, 2) xy) of list_landmarks_[align_]celeba.txt (count line, header line, rows)."""
    names, pts = [], []
    for row in read_rows(path):
        if len(row) != 11 or not row[0].lower().endswith((".jpg", ".png", ".jpeg")):
            continue  # the count and header lines
        names.append(row[0])
        pts.append([float(v) for v in row[1:]])
    if not names:
        raise ValueError(f"{path} holds no landmark rows")
    return names, np.asarray(pts, dtype=np.float32).reshape(-1, 5, 2)


def read_celeba_boxes(path: Path) -> dict[str, tuple[float, float, float, float]]:
    """file name -> (x, y, width, height) of list_bbox_celeba.txt."""
    return {r[0]: tuple(float(v) for v in r[1:5]) for r in read_rows(path)
            if len(r) == 5 and r[0].lower().endswith((".jpg", ".png", ".jpeg"))}


def read_name_list(path: Path) -> list[str]:
    return [r[0] for r in read_rows(path)]


class CelebADataset(Dataset):
    def __init__(self, root, split: str = "train", image_size: int = 128, aligned: bool | None = None,
                 min_face_fraction: float | None = None) -> None:
        self.root = Path(root)
        check_split(split)
        wild_dir = find_path(self.root, ["img_celeba"], ["Img", ""], kind="dir", required=False)
        align_dir = find_path(self.root, ["img_align_celeba"], ["Img", ""], kind="dir", required=False)
        if aligned is None:
            aligned = wild_dir is None
        image_dir = align_dir if aligned else wild_dir
        if image_dir is None:
            raise FileNotFoundError(f"{self.root}: no {'img_align_celeba' if aligned else 'img_celeba'} folder "
                                    "(in ROOT/Img/ or ROOT/); see docs/datasets.md")
        points_name = "list_landmarks_align_celeba.txt" if aligned else "list_landmarks_celeba.txt"
        names, points = read_celeba_points(find_path(self.root, [points_name], ["Anno", ""]))
        mafl = {s: set(read_name_list(find_path(self.root, [f"{s}.txt"], ["MAFL", ""])))
                for s in ("training", "testing")}
        if split == "test":
            keep = [i for i, n in enumerate(names) if n in mafl["testing"]]
        elif split == "val":
            keep = [i for i, n in enumerate(names) if n in mafl["training"]]
        else:
            keep = [i for i, n in enumerate(names) if n not in mafl["testing"]]
        if min_face_fraction is None:
            min_face_fraction = 0.0 if aligned else 0.3
        if min_face_fraction > 0:
            keep = self._filter_small_faces(keep, names, image_dir, min_face_fraction)
        if not keep:
            raise ValueError(f"the {split} split of {self.root} is empty")
        self.image_dir, self.image_size, self.aligned = image_dir, image_size, aligned
        self.names = [names[i] for i in keep]
        self.points = points[keep]

    def _filter_small_faces(self, keep, names, image_dir, fraction):
        from PIL import Image

        box_file = find_path(self.root, ["list_bbox_celeba.txt"], ["Anno", ""], required=False)
        if box_file is None:
            print(f"[partdisc] {self.root}: no list_bbox_celeba.txt, the {fraction:.0%} face-size filter is skipped",
                  file=sys.stderr)
            return keep
        boxes = read_celeba_boxes(box_file)
        out = []
        for i in keep:
            box = boxes.get(names[i])
            if box is None:
                continue
            try:
                with Image.open(image_dir / names[i]) as im:   # reads the header only
                    w, h = im.size
            except OSError:
                continue
            if box[2] * box[3] >= fraction * w * h:
                out.append(i)
        return out

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        return landmark_item(self.image_dir / self.names[index], self.points[index], self.image_size)


@register_dataset("celeba")
def build_celeba(root=None, split: str = "train", image_size: int = 128, aligned=None, min_face_fraction=None,
                 **_: object) -> Dataset:
    if root is None:
        raise ValueError("the celeba dataset needs --data-root DIR (the CelebA folder with Img/, Anno/ and MAFL/)")
    if isinstance(aligned, str):
        aligned = aligned.lower() in ("1", "true", "yes")
    if isinstance(min_face_fraction, str):
        min_face_fraction = float(min_face_fraction)
    return CelebADataset(root, split, image_size, aligned, min_face_fraction)
