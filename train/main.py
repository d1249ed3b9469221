"""Train a part discovery model.

    python train/main.py --config faces --out runs/faces
    python train/main.py --dataset folder --data-root my_photos --num-parts 4 --out runs/mine
    python train/main.py --out runs/mine --resume          # continue an interrupted run
    python train/main.py --config faces --max-minutes 120  # a staged recipe, every stage scaled
    torchrun --nproc_per_node 2 train/main.py --config faces --out runs/faces   # several GPUs

On a multi-core CPU it trains in one process per core (``--cpu-processes``, see ``launch.py``). A
config with ``stages`` runs them in turn, each from the previous one's model (``stages.py``).

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
from options import TrainConfig, resolve_config
from stages import run_stages


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = resolve_config(argv)
    if cfg.stages:
        out = run_stages(cfg, lambda stage, path: run_one(stage, ["--config", str(path)]
                                                          + (["--resume"] if stage.resume else [])))
        print(f"[partdisc] recipe done: load it with partdisc_core.load_model({str(out)!r})")
        return
    run_one(cfg, argv)


def run_one(cfg: TrainConfig, argv: list[str]) -> None:
    """One training run: in data-parallel CPU processes (each started with ``argv``) or here."""
    device = device_type(cfg.device)
    processes = cpu_process_count(cfg.cpu_processes, cfg.batch_size, device)
    if processes > 1:
        threads = max(1, available_cores() // processes)
        print(f"[partdisc] {processes} data-parallel training processes on the CPU, {threads} thread(s) each, "
              f"each on {cfg.batch_size // processes} images of every batch of {cfg.batch_size} "
              "(--cpu-processes 1: one process)", flush=True)
        status = launch(processes, argv, Path(__file__).resolve(), threads)
        if status:
            raise SystemExit(status)
        return
    if device == "cpu":
        keep_freed_memory()  # every CPU training process, one or a launcher's rank
    out = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[partdisc] done: load it with partdisc_core.load_model({str(out)!r})")


if __name__ == "__main__":
    main()
