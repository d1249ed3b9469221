"""The training loop: one optimisation step (:func:`train_step`) and the loop around it (:func:`train`).

The step does the paired views, the forward pass under autocast, the NaN stop, backward and the
optimiser update, and returns the losses. Everything periodic (log, validate and select, plot, save
state, snapshot) lives in :mod:`hooks` and is registered once; the learning-rate schedule and the
time budget in :class:`schedule.Schedule`.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from partdisc_core import CheckpointError, PartDiscLoss, PartDiscModel, save_model
from partdisc_core.augment import PairedViews, appearance_jitter
from partdisc_core.data import build_dataset
from partdisc_core.model import cpu_has_native_bf16

import hooks
from options import TrainConfig
from schedule import Schedule
from state import find_state, init_from_checkpoint, load_state


class TrainStep(nn.Module):
    """Model + losses in one module, so DistributedDataParallel sees every trained parameter."""

    def __init__(self, model: PartDiscModel, criterion: PartDiscLoss) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion

    def forward(self, view1, view2, class_ids=None, feature_views=None, prior=None):
        out = self.model(view1, view2, class_ids, feature_views)
        return self.criterion(out, self.model.arcface, class_ids, prior)


class NonFiniteLoss(RuntimeError):
    """The total loss became NaN or infinite: training stops instead of diverging silently."""

    def __init__(self, losses: dict[str, float]) -> None:
        super().__init__(f"the loss became {losses['total']} ({losses})")
        self.losses = losses


def use_autocast(cfg: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast: on CUDA when ``amp``; on the CPU when ``amp`` and the CPU has native bf16, or
    when forced with ``amp_cpu``."""
    if device.type == "cuda":
        return cfg.amp
    if device.type == "cpu":
        return cfg.amp_cpu or (cfg.amp and cpu_has_native_bf16())
    return False


def train_step(step_module: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
               class_ids: torch.Tensor | None, views: PairedViews, cfg: TrainConfig, amp: bool
               ) -> dict[str, float]:
    """One optimisation step on a batch of images (B, 3, S, S) in [0, 1]; returns the losses."""
    with torch.no_grad():
        prior = None
        if cfg.model.lambda_border > 0 and cfg.augment.background_ring > 0:
            v1, v2, *prior = views(images, with_prior=True)
        else:
            v1, v2 = views(images)
        jitter = cfg.augment.feature_jitter
        feature_views = (appearance_jitter(v1, jitter), appearance_jitter(v2, jitter)) if jitter > 0 else None
    with torch.autocast(device_type=images.device.type, dtype=torch.bfloat16, enabled=amp):
        losses = step_module(v1, v2, class_ids, feature_views, prior)
    values = mean_over_ranks(losses)
    if not math.isfinite(values["total"]):  # on every rank alike, so none is left waiting in backward
        raise NonFiniteLoss(values)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip)
    optimizer.step()
    return values


def mean_over_ranks(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    """The losses as floats; under data parallelism, their mean over the processes (the whole
    batch's losses, one small all-reduce), so every rank logs and checks the same values."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return {k: float(v.detach()) for k, v in losses.items()}
    stacked = torch.stack([v.detach().float().reshape(()) for v in losses.values()])
    dist.all_reduce(stacked)
    return dict(zip(losses, (stacked / dist.get_world_size()).tolist()))


def device_type(device_arg: str) -> str:
    """"cuda" or "cpu" (or another torch device type) for ``--device``: "auto" is CUDA when present."""
    if device_arg == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device_arg).type


def setup_distributed(device_arg: str) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg == "auto":
        device = torch.device(f"cuda:{local}" if device_type(device_arg) == "cuda" else "cpu")
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


def build_loader(cfg: TrainConfig, rank: int, world: int, device: torch.device):
    dataset = build_dataset(cfg.dataset, cfg.data_root or None, split="train",
                            image_size=cfg.model.input_size, **cfg.dataset_options)
    if len(dataset) < cfg.batch_size // world:
        raise SystemExit(f"the dataset has {len(dataset)} images, fewer than one batch ({cfg.batch_size})")
    sampler = DistributedSampler(dataset, world, rank, seed=cfg.seed) if world > 1 else \
        RandomSampler(dataset, generator=torch.Generator().manual_seed(cfg.seed))
    loader = DataLoader(dataset, batch_size=cfg.batch_size // world, sampler=sampler, drop_last=True,
                        num_workers=cfg.num_workers, pin_memory=device.type == "cuda", collate_fn=_collate,
                        persistent_workers=cfg.num_workers > 0)
    return dataset, sampler, loader


def build_model(cfg: TrainConfig, device: torch.device, main: bool) -> PartDiscModel:
    """The model to train: fresh, or with the weights of ``init_from`` (unless a saved state of
    this run will be resumed, which wins)."""
    model = PartDiscModel(cfg.model).to(device)
    if cfg.init_from and not (cfg.resume and find_state(Path(cfg.out)) is not None):
        try:
            init_from_checkpoint(model, cfg.init_from)
        except CheckpointError as exc:
            raise SystemExit(f"[partdisc] {exc}") from None
        if main:
            print(f"[partdisc] initialised from {cfg.init_from}")
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    freeze_all_but(model, cfg.trainable)
    return model


def freeze_all_but(model: nn.Module, trainable: str) -> None:
    """Freeze every parameter outside the comma-separated module names of ``trainable`` ("all":
    nothing), and keep the BatchNorm statistics of frozen modules as they are."""
    if trainable.strip() in ("", "all"):
        return
    names = tuple(n.strip() for n in trainable.split(",") if n.strip())
    known = {name for name, _ in model.named_children()}
    unknown = [n for n in names if n.split(".")[0] not in known]
    if unknown:
        raise SystemExit(f"trainable: unknown module(s) {unknown}; the model has {sorted(known)}")
    prefixes = tuple(n + "." for n in names)
    for name, param in model.named_parameters():
        if not name.startswith(prefixes):
            param.requires_grad_(False)
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not (name + ".").startswith(prefixes):
            module.momentum = 0.0  # running statistics stay those of the checkpoint


def resume(ctx: hooks.RunContext) -> None:
    """With ``--resume``, load the last complete save of the run folder into the context."""
    folder = find_state(ctx.out)
    if folder is None:
        if ctx.main:
            print(f"[partdisc] --resume: no saved state in {ctx.out}, starting from scratch")
        return
    ctx.restore(load_state(folder, ctx.model, ctx.optimizer))
    if ctx.main:
        print(f"[partdisc] resumed from {folder} at step {ctx.step}")


def wrap_step(step_module: nn.Module, cfg: TrainConfig, device: torch.device, world: int) -> nn.Module:
    """DistributedDataParallel under torchrun, then ``torch.compile`` when asked."""
    if world > 1:
        unused = cfg.model.lambda_sc == 0 or cfg.model.reconstruction == "none"
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused,
            gradient_as_bucket_view=True)  # the gradients live in the all-reduce buckets: no copy in or out
    return torch.compile(step_module) if cfg.compile else step_module


def train(cfg: TrainConfig) -> Path:
    rank, world, device = setup_distributed(cfg.device)
    main = rank == 0
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed + rank)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.to_json(out / "train_config.json")
        cfg.model.to_json(out / "model_config.json")
    dataset, sampler, loader = build_loader(cfg, rank, world, device)
    model = build_model(cfg, device, main)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                                  fused=device.type in ("cuda", "cpu"))  # one kernel for all tensors (CPU: 10.6 -> 3.6 ms)
    ctx = hooks.RunContext(cfg=cfg, out=out, model=model, optimizer=optimizer, main=main)
    if cfg.resume:
        resume(ctx)
    step_module = wrap_step(TrainStep(model, PartDiscLoss(cfg.model).to(device)), cfg, device, world)
    views, amp = PairedViews(cfg.augment), use_autocast(cfg, device)
    schedule = ctx.schedule = Schedule(cfg, start_step=ctx.step, elapsed_s=ctx.elapsed_s)
    actions = hooks.default_actions(ctx, dataset) if main else []
    batches = _infinite(loader, sampler, start_epoch=ctx.step * cfg.batch_size // max(len(dataset), 1))
    bar = hooks.ProgressBar(cfg, ctx.step, enabled=main)
    if main:
        print(f"[partdisc] training on {device} ({'bf16 autocast' if amp else 'float32'}, "
              f"{torch.get_num_threads()} threads" + (f" x {world} processes" if world > 1 else "") + ")" + (f", budget {cfg.max_minutes:g} min" if cfg.max_minutes else ""))
    model.train()
    last = schedule.finished(ctx.step)
    while not last:
        batch = next(batches)
        images = batch["image"].to(device, non_blocking=True)
        class_ids = batch["class_id"].to(device) if "class_id" in batch else None
        schedule.set_lr(optimizer, ctx.step)
        try:
            losses = train_step(step_module, optimizer, images, class_ids, views, cfg, amp)
        except NonFiniteLoss as exc:
            bar.close()
            saved = find_state(out)
            where = f"The last good save is in {saved}" if saved is not None else "No training state was saved yet"
            raise SystemExit(f"[partdisc] {exc} at step {ctx.step}. {where}; "
                             "lower --lr or check the data, then rerun with --resume.") from None
        ctx.step += 1
        ctx.meter.update(losses, images.shape[0] * world)
        last = schedule.finished(ctx.step)
        for action in actions:
            action.maybe_run(ctx, last)
        bar.update(ctx, schedule)
    bar.close()
    if main and ctx.best is None:
        save_model(model, out, dtype=getattr(torch, cfg.save_dtype), metadata={"step": ctx.step})
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out


__all__ = ["TrainStep", "train_step", "train", "device_type", "NonFiniteLoss", "use_autocast", "cpu_has_native_bf16"]
