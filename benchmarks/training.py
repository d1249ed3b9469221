"""Section ``train``: training steps (both views forward, the four losses, backward, AdamW).

Rows ``train.{resnet,dino}.{fp32,opt}`` at ``--train-batch`` (32 on CUDA, 4 on the CPU) and, on the
CPU only, ``train.cpu.{faces,faces_scratch}.{fp32,opt}``: the face recipes of ``train/configs`` at
their real settings (batch 16, 128 px). Modes: ``fp32`` = plain float32, no TF32, NCHW, foreach
AdamW; ``opt`` = bf16 autocast (CUDA, a CPU with native bf16, or ``--cpu-bf16-train``),
channels_last, TF32 and fused AdamW on CUDA, ``--compile`` on request.
"""
from __future__ import annotations

import torch

from common import (dino_config, faces_configs, paired_views, peak_gib, per_second,
                    reset_peak, resnet_config, test_images, tf32, time_calls)
from partdisc_core import PartDiscLoss, PartDiscModel
from partdisc_core.model import cpu_has_native_bf16

MODES = ("fp32", "opt")


def _setup(cfg, device: torch.device, batch: int, opt: bool, args) -> tuple:
    """Model, loss, AdamW and the two views of one timed mode, in its memory format."""
    torch.manual_seed(0)
    model = PartDiscModel(cfg).to(device).train()
    criterion = PartDiscLoss(cfg).to(device)
    views = paired_views(test_images(cfg.input_size, 4).to(device), batch)
    if opt and args.channels_last:
        model.to(memory_format=torch.channels_last)
        criterion.to(memory_format=torch.channels_last)
        views = tuple(v.contiguous(memory_format=torch.channels_last) for v in views)
    params = [p for p in model.parameters() if p.requires_grad]
    fused = True if (opt and device.type == "cuda") else None
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=fused)
    return model, criterion, optimizer, views


def train_once(cfg, device: torch.device, batch: int, steps: int, warmup: int, mode: str, args) -> dict:
    """Time ``steps`` training steps (after ``warmup``) in mode "fp32" or "opt"."""
    opt = mode == "opt"
    reset_peak(device)
    model, criterion, optimizer, (views1, views2) = _setup(cfg, device, batch, opt, args)
    amp = opt and (device.type == "cuda" or args.cpu_bf16_train or cpu_has_native_bf16())
    if opt and args.compile:
        model.compile()
        criterion.compile()
        warmup += 2

    def step():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            losses = criterion(model(views1, views2), model.arcface)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()

    with tf32(device, opt):
        stats = time_calls(step, device, warmup, steps)
    res = {**stats, "batch": batch, "images_per_s": per_second(batch, stats),
           "peak_gib": peak_gib(device), "device": device.type, "amp_bf16": amp,
           "channels_last": bool(opt and args.channels_last), "fused_adamw": device.type == "cuda" and opt,
           "tf32": bool(opt and device.type == "cuda"), "compile": bool(opt and args.compile)}
    del model, criterion, optimizer
    reset_peak(device)
    return res


def run_train(args, results: dict, device: torch.device) -> None:
    """Both variants in both modes; on the CPU also the face recipes at their real settings."""
    cuda = device.type == "cuda"
    batch = args.train_batch or (32 if cuda else 2 if args.quick else 4)
    steps = args.train_steps or (20 if cuda else 2 if args.quick else 3)
    warmup = 3 if cuda else 1
    for name, cfg in (("resnet", resnet_config(args)), ("dino", dino_config(args))):
        for mode in MODES:
            results[f"train.{name}.{mode}"] = train_once(cfg, device, batch, steps, warmup, mode, args)
    if not cuda:
        for name, cfg in faces_configs(args).items():
            for mode in MODES:
                results[f"train.cpu.{name}.{mode}"] = train_once(cfg, device, 16, max(steps, 3), 1, mode, args)
