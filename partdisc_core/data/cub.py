"""``cub``: CUB-200-2011 (§4.1; 5,994 training / 5,794 test birds, 15 keypoints with visibility),
in the official layout (ROOT may also be the folder that holds ``CUB_200_2011/``):

    ROOT/  images.txt               ``<image_id> <path relative to images/>``
           train_test_split.txt     ``<image_id> <1 = train, 0 = test>``
           bounding_boxes.txt       ``<image_id> <x> <y> <width> <height>``
           image_class_labels.txt   ``<image_id> <class_id 1..200>``
           parts/part_locs.txt      ``<image_id> <part_id 1..15> <x> <y> <visible>``
           images/<path>

Each bird is cropped to its box (``margin`` widens it by that fraction per side) and squashed to
S x S. ``classes`` keeps some species only ("1" = CUB-1, "1,2,3", or a list; default all = CUB-F).
``train`` / ``test`` follow train_test_split.txt, ``val`` = every 10th training image. Items carry
``landmarks`` (15, 2) in the S x S frame (unannotated ones at 0), ``visible`` (15,) and
``nme_norm`` = S: the NME is normalised by the box size (the box spans the whole S x S frame).
``class_id`` is the species index 0..199.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..inputs import resize_tensor
from . import register_dataset
from .common import check_split, crop_box, every_nth, find_path, load_tensor, read_rows

NUM_KEYPOINTS = 15


def _parse_classes(classes) -> set[int] | None:
    if classes is None or classes == "" or classes == "all":
        return None
    if isinstance(classes, (int, np.integer)):
        return {int(classes)}
    if isinstance(classes, str):
        return {int(c) for c in classes.replace(" ", "").split(",") if c}
    return {int(c) for c in classes}


class CUBDataset(Dataset):
    def __init__(self, root, split: str = "train", image_size: int = 128, classes=None, margin: float = 0.0) -> None:
        root = Path(root)
        if not (root / "images.txt").is_file() and (root / "CUB_200_2011" / "images.txt").is_file():
            root = root / "CUB_200_2011"
        self.root = root
        check_split(split)
        paths = {int(r[0]): r[1] for r in read_rows(find_path(root, ["images.txt"]))}
        is_train = {int(r[0]): r[1] == "1" for r in read_rows(find_path(root, ["train_test_split.txt"]))}
        boxes = {int(r[0]): tuple(float(v) for v in r[1:5]) for r in read_rows(find_path(root, ["bounding_boxes.txt"]))}
        labels = {int(r[0]): int(r[1]) for r in read_rows(find_path(root, ["image_class_labels.txt"]))}
        keep_classes = _parse_classes(classes)
        ids = sorted(i for i in paths if is_train.get(i, False) == (split != "test")
                     and (keep_classes is None or labels.get(i) in keep_classes))
        if split == "val":
            ids = every_nth(ids)
        if not ids:
            raise ValueError(f"the {split} split of {root} is empty (classes={classes})")
        row = {i: j for j, i in enumerate(ids)}
        pts = np.zeros((len(ids), NUM_KEYPOINTS, 2), dtype=np.float32)
        vis = np.zeros((len(ids), NUM_KEYPOINTS), dtype=bool)
        for r in read_rows(find_path(root, ["part_locs.txt"], ["parts", ""])):
            j = row.get(int(r[0]))
            if j is None:
                continue
            p = int(r[1]) - 1
            if not 0 <= p < NUM_KEYPOINTS:
                raise ValueError(f"part_locs.txt: part id {r[1]} outside 1..{NUM_KEYPOINTS}")
            pts[j, p] = (float(r[2]), float(r[3]))
            vis[j, p] = float(r[4]) > 0
        self.ids, self.paths, self.boxes, self.labels = ids, paths, boxes, labels
        self.points, self.visible = pts, vis
        self.image_size, self.margin = image_size, float(margin)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        i = self.ids[index]
        path = self.root / "images" / self.paths[i]
        image = load_tensor(path)
        x, y, w, h = self.boxes[i]
        m = self.margin
        crop, (x0, y0) = crop_box(image, (x - m * w, y - m * h, x + w + m * w, y + h + m * h))
        ch, cw = crop.shape[-2:]
        s = self.image_size
        vis = torch.from_numpy(self.visible[index].copy())
        pts = (torch.from_numpy(self.points[index].copy()) - torch.tensor([x0, y0])) * torch.tensor([s / cw, s / ch])
        pts = torch.where(vis[:, None], pts, torch.zeros_like(pts))
        return {"image": resize_tensor(crop, s), "landmarks": pts.float(), "visible": vis,
                "nme_norm": torch.tensor(float(s)), "class_id": self.labels[i] - 1, "path": str(path)}


@register_dataset("cub")
def build_cub(root=None, split: str = "train", image_size: int = 128, classes=None, margin=0.0, **_: object) -> Dataset:
    if root is None:
        raise ValueError("the cub dataset needs --data-root DIR (the CUB_200_2011 folder)")
    return CUBDataset(root, split, image_size, classes, float(margin))
