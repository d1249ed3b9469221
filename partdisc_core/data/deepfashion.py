"""``deepfashion``: DeepFashion In-shop Clothes Retrieval Benchmark with its parsing masks (§4.1), in
the layout used by Choudhury et al. [60] (whose split the paper follows):

    ROOT/  Anno/segmentation/DeepFashion_segmentation_train.json     COCO-style: {"images": [
           Anno/segmentation/DeepFashion_segmentation_query.json       {"file_name": ...}, ...]}
           Anno/segmentation/DeepFashion_segmentation_gallery.json
           Anno/segmentation/<file_name>                             the image (.jpg)
           Anno/segmentation/<file_name minus .jpg>_segment.png      its RGB colour-coded mask

ROOT is the ``In-shop Clothes Retrieval Benchmark`` folder (or a folder holding
``DeepFashion/In-shop Clothes Retrieval Benchmark``). ``train`` = the train list, ``val`` = every
10th of it, ``test`` = query + gallery. Images are resized so the longer side is S and padded to
S x S (white; the mask is padded with background, as in [60]). Mask colours map to ids
0 (background, black) .. 15 by :data:`PART_COLORS`; unknown colours become 255 (not annotated).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from . import register_dataset
from .common import check_split, every_nth, letterbox, letterbox_mask, load_tensor

# The 16 RGB colours of the parsing masks (index 0 = background).
PART_COLORS = np.array([
    [0, 0, 0], [0, 100, 0], [16, 78, 139], [50, 205, 50], [70, 130, 180], [127, 255, 212],
    [144, 238, 144], [211, 211, 211], [220, 220, 220], [245, 222, 179], [250, 235, 215],
    [255, 0, 0], [255, 140, 0], [255, 250, 205], [255, 250, 250], [255, 255, 0]], dtype=np.int64)
SUBDIR = Path("Anno") / "segmentation"


def colors_to_ids(rgb: np.ndarray, colors: np.ndarray = PART_COLORS, unknown: int = 255) -> np.ndarray:
    """(H, W, 3) uint8 colour mask -> (H, W) uint8 ids (index into ``colors``; else ``unknown``)."""
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    keys = (colors[:, 0] << 16) | (colors[:, 1] << 8) | colors[:, 2]
    order = np.argsort(keys)
    pos = np.clip(np.searchsorted(keys[order], code), 0, len(keys) - 1)
    hit = keys[order][pos] == code
    return np.where(hit, order[pos], unknown).astype(np.uint8)


def _resolve_root(root: Path) -> Path:
    for cand in (root, root / "In-shop Clothes Retrieval Benchmark",
                 root / "DeepFashion" / "In-shop Clothes Retrieval Benchmark"):
        if (cand / SUBDIR).is_dir():
            return cand
    raise FileNotFoundError(f"{root}: no Anno/segmentation/ folder found (looked in ROOT, ROOT/In-shop Clothes "
                            "Retrieval Benchmark and ROOT/DeepFashion/In-shop Clothes Retrieval Benchmark); "
                            "see docs/datasets.md")


def _file_names(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; see docs/datasets.md for the DeepFashion layout")
    with open(path) as f:
        return [e["file_name"] for e in json.load(f)["images"]]


class DeepFashionDataset(Dataset):
    def __init__(self, root, split: str = "train", image_size: int = 128, pad_value: float = 1.0) -> None:
        self.root = _resolve_root(Path(root))
        check_split(split)
        seg = self.root / SUBDIR
        if split == "test":
            names = _file_names(seg / "DeepFashion_segmentation_query.json") + \
                _file_names(seg / "DeepFashion_segmentation_gallery.json")
        else:
            names = _file_names(seg / "DeepFashion_segmentation_train.json")
            if split == "val":
                names = [names[i] for i in every_nth(range(len(names)))]
        if not names:
            raise ValueError(f"the {split} split of {self.root} is empty")
        self.names, self.image_size, self.pad_value = names, image_size, float(pad_value)

    def __len__(self) -> int:
        return len(self.names)

    def mask_path(self, index: int) -> Path:
        name = self.names[index]
        stem = name[:-len(Path(name).suffix)] if Path(name).suffix else name
        return self.root / SUBDIR / f"{stem}_segment.png"

    def __getitem__(self, index: int) -> dict:
        path = self.root / SUBDIR / self.names[index]
        image, _, _ = letterbox(load_tensor(path), self.image_size, self.pad_value)
        with Image.open(self.mask_path(index)) as im:
            ids = colors_to_ids(np.asarray(im.convert("RGB")))
        return {"image": image, "mask": letterbox_mask(ids, self.image_size, fill=0), "path": str(path)}


@register_dataset("deepfashion")
def build_deepfashion(root=None, split: str = "train", image_size: int = 128, pad_value=1.0, **_: object) -> Dataset:
    if root is None:
        raise ValueError("the deepfashion dataset needs --data-root DIR (the In-shop Clothes Retrieval Benchmark folder)")
    return DeepFashionDataset(root, split, image_size, float(pad_value))
