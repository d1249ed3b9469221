"""One image in, one picture out: the image, its part overlay with a legend, each part's soft map
and each part token's attention map.

    python -m partdisc_core.visualize face.jpg --out parts.png [--checkpoint PATH] [--crop]
"""
from __future__ import annotations

import argparse

import numpy as np

from .checkpoint import load_model
from .inputs import read_image
from .viz import legend_image, map_grid, overlay_masks, save_png, side_by_side, stack_rows


def visualize(model, image: np.ndarray, opacity: float = 0.55) -> np.ndarray:
    """A (H, W, 3) uint8 figure for one (H, W, 3) image."""
    k = model.cfg.num_parts
    pred = model.predict(image, output_size="input")
    masks = pred.masks[0].cpu().numpy()
    overlay = overlay_masks(image, masks, opacity=opacity)
    top = side_by_side([image, overlay])
    titles = [f"part {i + 1}" for i in range(k)] + ["background"]
    soft = map_grid(masks, size=96, titles=titles, columns=k + 1, has_background=True)
    attention = map_grid(pred.attention[0].cpu().numpy(), size=96, titles=titles, columns=k + 1,
                         has_background=True)
    return stack_rows([top, legend_image(k), soft, attention])


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
