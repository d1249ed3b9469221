"""The pictures in a model card, made with the demo's own functions.

* the offline example faces (public-domain portraits and synthetic faces) and one part swap
  (``partdisc_core.hub.example_figure``, which ``python -m partdisc_core.hub push`` also uses);
* ``--gallery``: the parts of 12 faces of a validation folder (evenly spread over it) in one grid,
  in the same part colours, then swaps of all parts between three pairs of them (A, B, A's
  reconstruction, A with B's parts, B with A's parts). The picture to look at before shipping.

    python train/model_card_figure.py --checkpoint checkpoints/faces-k8 --out checkpoints/faces-k8/examples.png
    python train/model_card_figure.py --checkpoint checkpoints/faces-k8 --gallery ../shared/data/faces/helen_val68 \\
        --out checkpoints/faces-k8/gallery_helen_val68.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from partdisc_core import load_model
from partdisc_core.hub import example_figure
from partdisc_core.viz import overlay_masks, save_png, titled_grid, to_numpy, with_legend

GALLERY_FACES = 12
SWAP_PAIRS = ((0, 1), (2, 3), (4, 5))
"""Swapped pairs, as indices into the gallery's faces."""


def gallery_paths(folder, num: int = GALLERY_FACES) -> list[Path]:
    """``num`` images listed in a landmarks folder's CSV (or found in it), evenly spread."""
    from partdisc_core.data.landmarks import read_landmarks_csv

    root = Path(folder)
    csv = root / "landmarks.csv"
    if csv.is_file():
        names = read_landmarks_csv(csv)[0]
        files = [root / n for n in names]
    else:
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(files) < num:
        raise SystemExit(f"error: {folder} has {len(files)} images, the gallery needs {num}")
    return [files[i] for i in np.linspace(0, len(files) - 1, num).round().astype(int)]


@torch.no_grad()
def gallery_figure(model, paths, columns: int = 6, cell: int = 160) -> np.ndarray:
    """Parts of every face (hard overlay, background untinted) and all-part swaps of SWAP_PAIRS."""
    pred = model.predict([str(p) for p in paths], return_attention=False, output_size=model.cfg.image_size)
    images = [np.asarray(model._prepare(str(p))[0][0].permute(1, 2, 0).cpu() * 255).astype(np.uint8)
              for p in paths]
    overlays = [overlay_masks(im, m, opacity=0.55) for im, m in zip(images, to_numpy(pred.masks))]
    rows = [overlays[i:i + columns] for i in range(0, len(overlays), columns)]
    titles = [[Path(p).stem[:18] for p in paths[i:i + columns]] for i in range(0, len(paths), columns)]
    for a, b in SWAP_PAIRS:
        s = model.swap_parts(str(paths[a]), str(paths[b]))
        pics = [images[a], images[b], s.recon_a[0], s.swapped_a[0], s.swapped_b[0], s.recon_b[0]]
        rows.append([(to_numpy(p.permute(1, 2, 0)) * 255).round().astype(np.uint8) if torch.is_tensor(p) else p
                     for p in pics])
        titles.append(["A", "B", "A reconstructed", "A with B's parts", "B with A's parts", "B reconstructed"])
    return with_legend(titled_grid(rows, titles, cell=cell), model.cfg.num_parts)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--gallery", metavar="FOLDER", help="a folder of faces (e.g. helen_val68): the gallery figure")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    model = load_model(args.checkpoint)
    figure = gallery_figure(model, gallery_paths(args.gallery)) if args.gallery else example_figure(model)
    save_png(figure, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
