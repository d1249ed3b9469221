"""``synthetic``: procedural faces with exact part labels and landmarks (partdisc_core.synthetic)."""
from __future__ import annotations

from torch.utils.data import Dataset

from ..synthetic import SyntheticFaces
from . import register_dataset

SPLIT_SEEDS = {"train": 0, "val": 10_000_000, "test": 20_000_000}


class SyntheticDataset(Dataset):
    """``length`` synthetic faces; sample i of a split is always the same image."""

    def __init__(self, length: int = 10_000, image_size: int = 128, split: str = "train", **face_options) -> None:
        self.faces = SyntheticFaces(size=image_size, **face_options)
        self.length = length
        self.offset = SPLIT_SEEDS.get(split, 0)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        batch = self.faces.sample(self.offset + index)
        return {"image": batch.images[0], "mask": batch.labels[0], "landmarks": batch.landmarks[0],
                "orig_landmarks": batch.landmarks[0], "orig_size": batch.images.new_tensor(batch.images.shape[-2:]).long()}


@register_dataset("synthetic")
def build_synthetic(root=None, split: str = "train", image_size: int = 128, length: int = 10_000, **options) -> Dataset:
    return SyntheticDataset(length=length, image_size=image_size, split=split, **options)
