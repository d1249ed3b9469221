"""``partimagenet``: PartImageNet with COCO-style part polygons (§4.1, §4.4; class-conditional).

Two layouts are recognised:

1. The split of PDiscoNet [44] that the paper follows (109 classes, 14,876 train / 1,664 test
   images taken from the official train set)::

       ROOT/  train.json                 official COCO annotations of the train set
              newdset.txt                tab-separated ``index  is_test  label  wnid  file_name``
              train/<wnid>/<file_name>   images

   ``train`` = rows with is_test 0, ``val`` = every 10th of them, ``test`` = rows with is_test 1;
   ``class_id`` = the ``label`` column.

2. The official release: ``ROOT/annotations/<split>.json`` (or ``ROOT/<split>.json``) and
   ``ROOT/images/<split>/[<wnid>/]<file_name>`` for split in train / val / test; ``class_id`` =
   index of the wnid (file-name prefix) among the sorted wnids of that split.

Masks: 0 = background, part category c (sorted by COCO category id) = c + 1; polygons are
rasterised at the image's size (later annotations drawn on top), then resized with the image to
S x S (nearest neighbour). Uncompressed RLE segmentations are supported; compressed ones raise.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from ..inputs import resize_tensor
from . import register_dataset
from .common import check_split, every_nth, load_tensor, read_rows, resize_mask


def rasterize(annotations: list[dict], category_index: dict[int, int], height: int, width: int) -> np.ndarray:
    """(H, W) uint8 part ids (0 = background) of COCO part annotations of one image."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for ann in annotations:
        value = category_index[int(ann["category_id"])] + 1
        seg = ann.get("segmentation")
        if isinstance(seg, list):
            for poly in seg:
                if len(poly) >= 6:
                    draw.polygon([(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly) - 1, 2)], fill=value)
        elif isinstance(seg, dict):
            counts = seg.get("counts")
            if not isinstance(counts, list):
                raise ValueError("compressed RLE segmentations are not supported; convert them to polygons or "
                                 "uncompressed RLE")
            h, w = seg.get("size", (height, width))
            flat = np.zeros(h * w, dtype=bool)
            pos, on = 0, False
            for c in counts:
                if on:
                    flat[pos:pos + c] = True
                pos += c
                on = not on
            m = flat.reshape(w, h).T   # COCO RLE is column-major
            arr = np.asarray(canvas).copy()
            arr[m[:height, :width]] = value
            canvas = Image.fromarray(arr)
            draw = ImageDraw.Draw(canvas)
    return np.asarray(canvas)


class PartImageNetDataset(Dataset):
    def __init__(self, root, split: str = "train", image_size: int = 128) -> None:
        self.root = Path(root)
        check_split(split)
        split_file = self.root / "newdset.txt"
        if split_file.is_file():
            ann_path = self.root / "train.json"
            rows = [r for r in read_rows(split_file) if len(r) >= 5]
            want = "1" if split == "test" else "0"
            rows = [r for r in rows if r[1] == want]
            if split == "val":
                rows = [rows[i] for i in every_nth(range(len(rows)))]
            wanted = {r[4]: (int(r[2]), self.root / "train" / r[3] / r[4]) for r in rows}
        else:
            ann_path = next((p for p in (self.root / "annotations" / f"{split}.json", self.root / f"{split}.json")
                             if p.is_file()), None)
            if ann_path is None:
                raise FileNotFoundError(f"{self.root}: neither newdset.txt (PDiscoNet split) nor "
                                        f"annotations/{split}.json found; see docs/datasets.md")
            wanted = None
        if not ann_path.is_file():
            raise FileNotFoundError(f"{ann_path} not found; see docs/datasets.md")
        with open(ann_path) as f:
            coco = json.load(f)
        cats = sorted(int(c["id"]) for c in coco.get("categories", []))
        self.category_index = {c: i for i, c in enumerate(cats)}
        self.num_part_classes = len(cats)
        by_image = defaultdict(list)
        for ann in coco.get("annotations", []):
            by_image[int(ann["image_id"])].append(ann)
        items = []
        if wanted is not None:
            for im in coco["images"]:
                hit = wanted.get(Path(im["file_name"]).name)
                if hit is not None:
                    items.append((im, hit[1], hit[0]))
        else:
            wnids = sorted({Path(im["file_name"]).name.split("_")[0] for im in coco["images"]})
            index = {w: i for i, w in enumerate(wnids)}
            for im in coco["images"]:
                name = Path(im["file_name"]).name
                wnid = name.split("_")[0]
                base = self.root / "images" / split
                path = next((p for p in (base / im["file_name"], base / wnid / name) if p.is_file()), base / wnid / name)
                items.append((im, path, index[wnid]))
        if not items:
            raise ValueError(f"the {split} split of {self.root} is empty")
        self.items, self.by_image, self.image_size = items, by_image, image_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        info, path, class_id = self.items[index]
        image = load_tensor(path)
        h, w = image.shape[-2:]
        mask = rasterize(self.by_image.get(int(info["id"]), []), self.category_index, h, w)
        s = self.image_size
        return {"image": resize_tensor(image, s), "mask": resize_mask(mask, s), "class_id": int(class_id),
                "path": str(path)}


@register_dataset("partimagenet")
def build_partimagenet(root=None, split: str = "train", image_size: int = 128, **_: object) -> Dataset:
    if root is None:
        raise ValueError("the partimagenet dataset needs --data-root DIR")
    return PartImageNetDataset(root, split, image_size)
