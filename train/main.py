"""Train a part discovery model.

    python train/main.py --config faces --out runs/faces
    python train/main.py --dataset folder --data-root my_photos --num-parts 4 --out runs/mine
    python train/main.py --out runs/mine --resume          # continue an interrupted run
    torchrun --nproc_per_node 2 train/main.py --config faces --out runs/faces   # several GPUs

On a multi-core CPU it trains in one process per core (``--cpu-processes``, see ``launch.py``).

See ``python train/main.py --help`` for every option; the resolved configuration is saved as
``<out>/train_config.json`` and the final model as ``<out>/model.safetensors`` + ``config.json``
(``partdisc_core.load_model(<out>)`` loads it).
"""
from __future__ import annotations

# train/ is on sys.path as the script's folder; partdisc_core comes from the installed package
# (scripts/setup_env.sh installs it editable: pip install -e .).
import os
import sys
from pathlib import Path

from engine import device_type, train
from launch import available_cores, cpu_process_count, keep_freed_memory, launch
from options import resolve_config


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = resolve_config(argv)
    device = device_type(cfg.device)
    processes = cpu_process_count(cfg.cpu_processes, cfg.batch_size, device)
    if processes > 1:
        threads = max(1, available_cores() // processes)
        print(f"[partdisc] {processes} data-parallel training processes on the CPU, {threads} thread(s) each, "
              f"each on {cfg.batch_size // processes} images of every batch of {cfg.batch_size} "
              "(--cpu-processes 1: one process)", flush=True)
        raise SystemExit(launch(processes, argv, Path(__file__).resolve(), threads))
    if device == "cpu":
        keep_freed_memory()  # every CPU training process, one or a launcher's rank
    out = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[partdisc] done: load it with partdisc_core.load_model({str(out)!r})")


if __name__ == "__main__":
    main()
