"""The training loop: data, paired views, losses, optimiser, logging, evaluation and saving."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from partdisc_core import PartDiscLoss, PartDiscModel, save_model
from partdisc_core.augment import PairedViews
from partdisc_core.data import build_dataset

from options import TrainConfig
from state import find_state, load_state, save_state


class TrainStep(nn.Module):
    """Model + losses in one module, so DistributedDataParallel sees every trained parameter."""

    def __init__(self, model: PartDiscModel, criterion: PartDiscLoss) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion

    def forward(self, view1, view2, class_ids=None):
        out = self.model(view1, view2, class_ids)
        return self.criterion(out, self.model.arcface, class_ids), out


def setup_distributed(device_arg: str) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg == "auto":
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_arg)
        if device.type == "cuda" and device.index is None and world > 1:
            device = torch.device(f"cuda:{local}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda was asked for, but CUDA is not available here")
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        torch.set_float32_matmul_precision("high")  # TF32 for the float32 parts outside autocast
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def lr_factor(step: int, cfg: TrainConfig) -> float:
    factor = 1.0
    if cfg.warmup_steps and step < cfg.warmup_steps:
        factor = (step + 1) / cfg.warmup_steps
    for milestone in cfg.lr_milestones:
        if step >= int(milestone * cfg.max_steps):
            factor *= cfg.lr_gamma
    return factor


def _collate(samples: list[dict]) -> dict:
    out = {"image": torch.stack([s["image"] for s in samples])}
    if "class_id" in samples[0]:
        out["class_id"] = torch.as_tensor([int(s["class_id"]) for s in samples])
    return out


def _infinite(loader: DataLoader, sampler, start_epoch: int):
    epoch = start_epoch
    while True:
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        for batch in loader:
            yield batch
        epoch += 1


def build_validation(cfg: TrainConfig):
    if not cfg.val_root:
        return None
    from partdisc_core.data.landmarks import LandmarksDataset

    full = LandmarksDataset(cfg.val_root, cfg.model.image_size)
    n = min(len(full), cfg.val_max)
    fit = LandmarksDataset(cfg.val_root, cfg.model.image_size, indices=range(0, min(cfg.val_fit, n - 1)))
    test = LandmarksDataset(cfg.val_root, cfg.model.image_size, indices=range(min(cfg.val_fit, n - 1), n))
    return fit, test


def run_validation(model: PartDiscModel, val, batch_size: int) -> dict | None:
    try:
        from partdisc_core.evaluation import evaluate_landmarks
    except ImportError as exc:  # pragma: no cover - only while the evaluation module is missing
        print(f"[partdisc] validation skipped: {exc}", file=sys.stderr)
        return None
    model.eval()
    try:
        return evaluate_landmarks(model, val[0], val[1], batch_size=batch_size)
    finally:
        model.train()


def _better(metric: str, new: float, best: float | None) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(new)
    return new < best if metric.startswith("nme") else new > best


def train(cfg: TrainConfig) -> Path:
    rank, world, device = setup_distributed(cfg.device)
    main = rank == 0
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed + rank)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.to_json(out / "train_config.json")
        cfg.model.to_json(out / "model_config.json")

    dataset = build_dataset(cfg.dataset, cfg.data_root or None, split="train",
                            image_size=cfg.model.input_size, **cfg.dataset_options)
    if len(dataset) < cfg.batch_size // world:
        raise SystemExit(f"the dataset has {len(dataset)} images, fewer than one batch ({cfg.batch_size})")
    sampler = DistributedSampler(dataset, world, rank, seed=cfg.seed) if world > 1 else \
        RandomSampler(dataset, generator=torch.Generator().manual_seed(cfg.seed))
    loader = DataLoader(dataset, batch_size=cfg.batch_size // world, sampler=sampler, drop_last=True,
                        num_workers=cfg.num_workers, pin_memory=device.type == "cuda", collate_fn=_collate,
                        persistent_workers=cfg.num_workers > 0)

    model = PartDiscModel(cfg.model).to(device)
    criterion = PartDiscLoss(cfg.model).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_module: nn.Module = TrainStep(model, criterion)
    params = [p for p in model.parameters() if p.requires_grad]
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                                  fused=fused)

    start, history, best = 0, [], None
    if cfg.resume:
        folder = find_state(out)
        if folder is None:
            if main:
                print(f"[partdisc] --resume: no saved state in {out}, starting from scratch")
        else:
            info = load_state(folder, model, optimizer)
            start, history, best = info["step"], info.get("history", []), info.get("best")
            if main:
                print(f"[partdisc] resumed from {folder} at step {start}")
    if world > 1:
        unused = cfg.model.lambda_sc == 0 or cfg.model.reconstruction == "none"
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused)
    if cfg.compile:
        step_module = torch.compile(step_module)

    views = PairedViews(cfg.augment)
    amp = (cfg.amp and device.type == "cuda") or (cfg.amp_cpu and device.type == "cpu")
    val = build_validation(cfg) if main else None
    batches = _infinite(loader, sampler, start_epoch=start * cfg.batch_size // max(len(dataset), 1))
    fixed = next(iter(DataLoader(dataset, batch_size=8, shuffle=False, collate_fn=_collate)))["image"] if main else None

    from tqdm import tqdm

    bar = tqdm(total=cfg.max_steps, initial=start, disable=not main, dynamic_ncols=True, mininterval=2.0,
               file=sys.stdout, desc="train")
    model.train()
    tic, seen = time.perf_counter(), 0
    step = start
    while step < cfg.max_steps:
        batch = next(batches)
        images = batch["image"].to(device, non_blocking=True)
        class_ids = batch.get("class_id")
        class_ids = class_ids.to(device) if class_ids is not None else None
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, cfg)
        with torch.no_grad():
            v1, v2 = views(images)
        if cfg.channels_last:
            v1, v2 = v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            losses, _ = step_module(v1, v2, class_ids)
        total = losses["total"]
        if not torch.isfinite(total):
            bar.close()
            saved = find_state(out)
            where = f"The last good save is in {saved}" if saved is not None else "No training state was saved yet"
            raise SystemExit(f"[partdisc] the loss became {total.item()} at step {step} "
                             f"({ {k: float(v.detach()) for k, v in losses.items()} }). {where}; "
                             "lower --lr or check the data, then rerun with --resume.")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        step += 1
        seen += images.shape[0] * world
        if not main:
            continue
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            elapsed = time.perf_counter() - tic
            record = {"step": step, "lr": optimizer.param_groups[0]["lr"], "images_per_s": seen / max(elapsed, 1e-9),
                      **{k: float(v.detach()) for k, v in losses.items()}}
            history.append(record)
            tic, seen = time.perf_counter(), 0
            bar.set_postfix(loss=f"{record['total']:.3f}", rec=f"{record['rec']:.3f}", con=f"{record['con']:.3f}",
                            area=f"{record['area']:.3f}", ips=f"{record['images_per_s']:.1f}")
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        if val is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            metrics = run_validation(model, val, batch_size=64) or {cfg.select_metric: float("nan")}
            value = metrics[cfg.select_metric]
            with open(out / "val.jsonl", "a") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\n")
            bar.write(f"[partdisc] step {step} validation: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()
                                                                         if isinstance(v, float)))
            if _better(cfg.select_metric, value, best):
                best = value
                save_model(model, out, dtype=getattr(torch, cfg.save_dtype),
                           metadata={"step": step, "selected_by": cfg.select_metric, "validation": metrics})
        if step % cfg.sample_every == 0 or step == cfg.max_steps:
            from plots import plot_losses, plot_samples

            plot_losses(out / "log.jsonl", out / "loss.png")
            plot_samples(model, fixed, out / "samples.png", step)
        if step % cfg.save_every == 0 or step == cfg.max_steps:
            save_state(out / "last", model, optimizer, step, {"history": history[-2000:], "best": best})
        if cfg.snapshot_every and step % cfg.snapshot_every == 0:
            save_model(model, out / "snapshots" / f"step_{step:07d}", dtype=getattr(torch, cfg.save_dtype),
                       metadata={"step": step})
    bar.close()
    if main and (val is None or best is None):
        save_model(model, out, dtype=getattr(torch, cfg.save_dtype), metadata={"step": step})
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out
