"""Train a part discovery model.

    python train/main.py --config faces --out runs/faces
    python train/main.py --dataset folder --data-root my_photos --num-parts 4 --out runs/mine
    python train/main.py --out runs/mine --resume          # continue an interrupted run
    torchrun --nproc_per_node 2 train/main.py --config faces --out runs/faces

See ``python train/main.py --help`` for every option; the resolved configuration is saved as
``<out>/train_config.json`` and the final model as ``<out>/model.safetensors`` + ``config.json``
(``partdisc_core.load_model(<out>)`` loads it).
"""
from __future__ import annotations

# train/ is on sys.path as the script's folder; partdisc_core comes from the installed package
# (scripts/setup_env.sh installs it editable: pip install -e .).
from engine import train
from options import resolve_config


def main(argv: list[str] | None = None) -> None:
    cfg = resolve_config(argv)
    out = train(cfg)
    print(f"[partdisc] done: load it with partdisc_core.load_model({str(out)!r})")


if __name__ == "__main__":
    main()
