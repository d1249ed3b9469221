"""One image in, one picture out: the image and its part overlay side by side (with the landmarks
predicted from the parts as white dots, when the checkpoint has ``landmarks.json``), the colour legend
(with the part names, when it has ``part_names.json``), then each part's soft map V and each part
token's attention map, side by side: the Discover tab of the demo in one picture.

    python -m partdisc_core.visualize face.jpg --out parts.png [--checkpoint PATH] [--crop]
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from .checkpoint import load_model
from .demo import landmark_dots
from .inputs import read_image, resize
from .partnames import names_of, part_labels
from .viz import legend_image, map_grid, overlay_masks, save_png, side_by_side, stack_rows

MAP_ROWS = 3
"""The soft maps and the attention maps are each laid out in this many rows."""
PAD = 4


def visualize(model, image: np.ndarray, opacity: float = 0.55, tile: int = 96) -> np.ndarray:
    """A (H, W, 3) uint8 figure for one (H, W, 3) uint8 image: the top row (image, overlay) as wide as
    the two map grids below it, ``tile`` pixels a map."""
    k = model.cfg.num_parts
    pred = model.predict(image, output_size="input")
    masks = pred.masks[0].float().cpu().numpy()
    labels = part_labels(k, names_of(model))
    grids = dict(size=tile, titles=labels + ["background"], columns=math.ceil((k + 1) / MAP_ROWS),
                 has_background=True)
    maps = side_by_side([map_grid(masks, normalize=None, **grids),
                         map_grid(pred.attention[0].float().cpu().numpy(), cmap="inferno", **grids)], pad=PAD)
    h, w = image.shape[:2]
    height = max(1, round((maps.shape[1] - 3 * PAD) * h / (2 * w)))  # the two pictures fill the maps' width
    shown = resize(image, (max(1, round(height * w / h)), height))
    overlay = landmark_dots(model, overlay_masks(shown, masks, opacity=opacity), masks)
    top = side_by_side([shown, overlay], pad=PAD)
    return stack_rows([top, legend_image(k, names=labels, max_width=top.shape[1]), maps])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image")
    p.add_argument("--out", default="parts.png")
    p.add_argument("--checkpoint", default=None, help="folder, .safetensors file or hub id (default: shipped)")
    p.add_argument("--crop", action="store_true", help="crop to the largest detected face first")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    model = load_model(args.checkpoint, device=args.device)
    image = read_image(args.image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if args.crop:
        from .facecrop import crop_to_face

        result = crop_to_face(image)
        print(result.message or "face found")
        image = result.image
    save_png(visualize(model, image), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
