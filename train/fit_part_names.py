r"""Name every part of a checkpoint once ("left eye", "nose", "hair") and save the names beside its
weights as ``part_names.json``; ``load_model`` then gives ``model.part_names`` and the demo shows the
names in its legends, part pickers, CSVs and status texts (a checkpoint without the file keeps the
part numbers).

    python train/fit_part_names.py --checkpoint checkpoints/faces-k16 --data ../shared/data/faces/helen_val68
    python train/fit_part_names.py --checkpoint checkpoints/faces-k8 --data ../shared/data/faces/helen_val68

``--data`` is a folder of faces with ``landmarks68.csv`` (68 points per image in the iBUG order,
paths relative to the folder; ``helen_val68``: 870 Helen faces). The model labels every face at its
input size; each pixel gets a face region built from the face's points (eyes, brows, nose, mouth,
cheeks, chin, forehead, hair, temples, sides, shoulders, neck: ``partdisc_core.partnames``), and each
part is named after the region it overlaps best (Dice) over all the faces; parts sharing a region
get a side, "upper" / "lower" or a number. "Left" and "right" are the IMAGE's left and right.
Re-run it whenever the checkpoint's weights change: the names belong to these weights.
Takes about half a minute on one CPU core for helen_val68 at 128 px.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402

from partdisc_core import load_model  # noqa: E402
from partdisc_core.checkpoint import resolve_weights  # noqa: E402
from partdisc_core.data.landmarks import LandmarksDataset  # noqa: E402
from partdisc_core.partnames import PartNameCounter, PartNames, save_part_names  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder (part_names.json is written there)")
    p.add_argument("--data", required=True, help="a folder of faces with landmarks68.csv (e.g. helen_val68)")
    p.add_argument("--limit", type=int, help="only the first N faces (default: all)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dry-run", action="store_true", help="print the names without writing part_names.json")
    return p.parse_args(argv)


@torch.no_grad()
def fit_names(model, data: str | Path, limit: int | None = None, batch_size: int = 64) -> PartNames:
    """The part names of ``model`` fitted on the faces of ``data`` (a folder with landmarks68.csv),
    labelled at the model's input size (points scaled into that frame by the dataset)."""
    size = model.cfg.input_size
    dataset = LandmarksDataset(data, size, csv_name="landmarks68.csv")
    if limit is not None:
        dataset = Subset(dataset, range(min(int(limit), len(dataset))))
    counter = PartNameCounter(model.num_parts)
    for batch in DataLoader(dataset, batch_size=batch_size):
        labels = model.predict(batch["image"].to(model.device), output_size=size, return_attention=False).labels
        counter.update(labels.cpu().numpy(), batch["landmarks"].numpy())
    return counter.result(fitted_on=f"{Path(data).name} ({counter.images} faces, 68 points)")


def main(argv=None) -> PartNames:
    args = parse_args(argv)
    model = load_model(args.checkpoint, device=args.device)
    names = fit_names(model, args.data, args.limit, args.batch_size)
    for k, (name, region, dice) in enumerate(zip(names.names, names.regions, names.scores), 1):
        print(f"part {k:2d}: {name:16s} (best region {region}, Dice {dice:.2f})")
    if not args.dry_run:
        path = save_part_names(names, resolve_weights(args.checkpoint).parent)
        print(f"fitted on {names.fitted_on}; wrote {path}")
    return names


if __name__ == "__main__":
    main()
