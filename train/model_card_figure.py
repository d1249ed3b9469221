"""The picture in a model card: the part maps of the offline example faces (public-domain portraits
and synthetic faces) and one part swap, made with the demo's own functions.

    python train/model_card_figure.py --checkpoint checkpoints/faces-k8 --out checkpoints/faces-k8/examples.png
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from partdisc_core import demo, load_model  # noqa: E402
from partdisc_core.viz import save_png, side_by_side, stack_rows  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    model = load_model(args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        examples = demo.write_examples(tmp)
        overlays = [demo.discover(model, path, crop=True, hard=True, opacity=0.55).overlay
                    for path in examples.values()]
        first = demo.discover(model, next(iter(examples.values())), crop=True)
        names = list(examples)
        swap = demo.swap(model, examples[names[0]], examples[names[1]], parts=None, crop=True)
    rows = [side_by_side(overlays, height=300), side_by_side([first.part_maps, first.attention]), swap.grid]
    save_png(stack_rows(rows, pad=8), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
