"""``aflw``: the 5-point AFLW benchmark of Thewlis et al. (§4.1; 10,122 training / 2,995 test faces),
in the layout of their release (the DVE "aflw-mtfl" folder):

    ROOT/  aflw_cropped/facedata_cropped.csv     training faces: a CSV with a header; columns
                                                 ``set`` (1 = training) and ``crop_file`` (image
                                                 path relative to aflw_cropped/), and the ten
                                                 point columns at positions 4..13 as
                                                 x1, y1, x2, y2, ... (left eye, right eye, nose,
                                                 left and right mouth corner)
           aflw_cropped/<crop_file>              150 x 150 face crops
           MTFL/testing.txt                      test faces, MTFL format: ``path x1..x5 y1..y5
                                                 [gender smile glasses pose]`` (paths may use
                                                 backslashes), relative to MTFL/
           MTFL/<path>                           the test images

Points in both lists are 1-based (MATLAB) pixels and are shifted by -1 (``one_based=False``
turns that off). ``train`` = rows with set == 1, ``val`` = every 10th of them, ``test`` =
MTFL/testing.txt. Images are squashed to S x S; NME is measured in the files' pixels.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from . import register_dataset
from .common import check_split, every_nth, find_path, landmark_item, read_rows


def read_mtfl_list(path: Path) -> tuple[list[str], np.ndarray]:
    """(relative paths, (N, 5, 2) xy) of an MTFL list (x1..x5 then y1..y5 per row)."""
    names, pts = [], []
    for row in read_rows(path):
        if len(row) < 11:
            raise ValueError(f"{path}: expected 'path x1..x5 y1..y5 ...' rows, got {' '.join(row)!r}")
        names.append(row[0].replace("\\", "/"))
        v = np.asarray([float(x) for x in row[1:11]], dtype=np.float32)
        pts.append(np.stack([v[:5], v[5:]], axis=1))
    return names, np.asarray(pts, dtype=np.float32).reshape(-1, 5, 2)


def read_aflw_cropped(path: Path) -> tuple[list[str], np.ndarray]:
    """(crop files, (N, 5, 2) xy) of the training rows (set == 1) of facedata_cropped.csv."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path} is empty")
    header = [h.strip() for h in rows[0]]
    for col in ("set", "crop_file"):
        if col not in header:
            raise ValueError(f"{path}: the header must have a {col!r} column, got {header}")
    i_set, i_file = header.index("set"), header.index("crop_file")
    names, pts = [], []
    for row in rows[1:]:
        if not row or int(float(row[i_set])) != 1:
            continue
        names.append(row[i_file].replace("\\", "/"))
        pts.append([float(v) for v in row[4:14]])
    return names, np.asarray(pts, dtype=np.float32).reshape(-1, 5, 2)


class AFLWDataset(Dataset):
    def __init__(self, root, split: str = "train", image_size: int = 128, one_based: bool = True) -> None:
        self.root = Path(root)
        check_split(split)
        if split == "test":
            lst = find_path(self.root, ["testing.txt"], ["MTFL"])
            names, pts = read_mtfl_list(lst)
        else:
            lst = find_path(self.root, ["facedata_cropped.csv"], ["aflw_cropped"])
            names, pts = read_aflw_cropped(lst)
            if split == "val":
                idx = every_nth(range(len(names)))
                names, pts = [names[i] for i in idx], pts[idx]
        if not names:
            raise ValueError(f"the {split} split of {self.root} is empty")
        self.base = lst.parent
        self.names = names
        self.points = pts - 1.0 if one_based else pts
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        return landmark_item(self.base / self.names[index], self.points[index], self.image_size)


@register_dataset("aflw")
def build_aflw(root=None, split: str = "train", image_size: int = 128, one_based=True, **_: object) -> Dataset:
    if root is None:
        raise ValueError("the aflw dataset needs --data-root DIR (with aflw_cropped/ and MTFL/)")
    if isinstance(one_based, str):
        one_based = one_based.lower() in ("1", "true", "yes")
    return AFLWDataset(root, split, image_size, one_based)
