"""The picture in a model card: the part maps of the offline example faces (public-domain portraits
and synthetic faces) and one part swap, made with the demo's own functions
(``partdisc_core.hub.example_figure``, which ``python -m partdisc_core.hub push`` also uses).

    python train/model_card_figure.py --checkpoint checkpoints/faces-k16 --out checkpoints/faces-k16/examples.png
"""
from __future__ import annotations

import argparse

from partdisc_core import load_model
from partdisc_core.hub import example_figure
from partdisc_core.viz import save_png


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    save_png(example_figure(load_model(args.checkpoint)), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
