"""``folder``: every image under a folder, recursively (the "train on my own photos" path)."""
from __future__ import annotations

import sys
from pathlib import Path

from torch.utils.data import Dataset

from ..inputs import ImageInputError
from . import register_dataset
from .common import IMAGE_EXTENSIONS, load_square, split_filter


class ImageFolderDataset(Dataset):
    """All images below ``root`` (sorted, recursive). Unreadable files are reported once and replaced
    by the next readable image, so one bad file never stops a training run."""

    def __init__(self, root, image_size: int = 128, files: list[Path] | None = None, split: str = "all",
                 holdout_percent: float = 0.0) -> None:
        self.root = Path(root)
        if files is None:
            if not self.root.is_dir():
                raise FileNotFoundError(f"image folder {self.root} does not exist")
            files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            keep = split_filter([p.relative_to(self.root).as_posix() for p in files], split, holdout_percent)
            files = [files[i] for i in keep]
        if not files:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {self.root}")
        self.files = files
        self.image_size = image_size
        self._reported: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        for offset in range(len(self.files)):
            i = (index + offset) % len(self.files)
            try:
                image, _ = load_square(self.files[i], self.image_size)
                return {"image": image, "path": str(self.files[i])}
            except ImageInputError as exc:
                if i not in self._reported:
                    self._reported.add(i)
                    print(f"[partdisc] skipping unreadable image: {exc}", file=sys.stderr)
        raise RuntimeError(f"no readable image under {self.root}")


@register_dataset("folder")
def build_folder(root=None, split: str = "train", image_size: int = 128, holdout_percent: float = 0.0,
                 **_: object) -> Dataset:
    """``holdout_percent``: that share of the files (chosen by path hash) is left out of "train" and
    is all that split "holdout" holds, for model selection on images never trained on."""
    if root is None:
        raise ValueError("the folder dataset needs --data-root DIR")
    return ImageFolderDataset(root, image_size, split=split, holdout_percent=holdout_percent)
