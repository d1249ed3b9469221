"""Section ``check``: the optimised paths against the plain float32 path on the same inputs.

Plain: float32, NCHW modules, TF32 off. Optimised: ``fp32_fast`` (channels_last, and the compiled
modules with ``--compile``; the training check runs eager) and ``bf16`` (bf16 autocast +
channels_last). Rows ``check.{resnet,dino}.maps.*`` (part maps V), ``check.resnet.swap.*`` (both
swapped images and both reconstructions) and ``check.train.{resnet,dino}.*`` (one step's losses
and gradients), each with its tolerance and ``passed``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from common import (build_model, dino_config, optimise_for_inference, paired_views, precision,
                    resnet_checkpoint, resnet_config, test_images, tf32)
from partdisc_core import PartDiscLoss, PartDiscModel

TOL_FP32 = {"maps_max_abs": 1e-3, "image_max_abs": 1e-3, "loss_rel": 1e-3, "grad_cos": 0.9999}
TOL_BF16 = {"maps_mean_abs": 0.02, "maps_max_abs": 0.25, "label_agreement": 0.95,
            "image_mean_abs": 0.02, "loss_rel": 0.03, "grad_cos": 0.99}
"""Tolerances of the optimised paths (README: "Correctness check"); a key a path lacks is not judged."""

SWAP_FIELDS = ("swapped_a", "swapped_b", "recon_a", "recon_b")

# (statistic, tolerance key, True when the statistic must stay at or below the tolerance) per kind.
_LIMITS = {
    "maps": (("max_abs", "maps_max_abs", True), ("mean_abs", "maps_mean_abs", True),
             ("label_agreement", "label_agreement", False)),
    "image": (("max_abs", "image_max_abs", True), ("mean_abs", "image_mean_abs", True)),
    "train": (("loss_rel", "loss_rel", True), ("grad_cos", "grad_cos", False)),
}


def _judge(stats: dict, tol: dict, kind: str) -> dict:
    """``stats`` with the tolerance, ``passed`` and the names of the ``failed`` statistics."""
    fails = []
    for stat, key, at_most in _LIMITS[kind]:
        if key in tol and (stats[stat] > tol[key] if at_most else stats[stat] < tol[key]):
            fails.append(stat)
    return {**stats, "tolerance": tol, "passed": not fails, "failed": fails}


def _compare_maps(ref: torch.Tensor, got: torch.Tensor) -> dict:
    """Max and mean absolute difference of two sets of part maps, and their argmax agreement."""
    diff = (ref.float() - got.float()).abs()
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "label_agreement": float((ref.argmax(1) == got.argmax(1)).float().mean())}


def _compare_swaps(ref, got) -> dict:
    """Max and mean absolute difference over the four images of two swap results."""
    diffs = torch.cat([(getattr(ref, f) - getattr(got, f)).abs().flatten() for f in SWAP_FIELDS])
    return {"max_abs": float(diffs.max()), "mean_abs": float(diffs.mean())}


def _plain_and_fast(cfg, device: torch.device, args, checkpoint: str | None = None) -> tuple:
    """Two models with the same weights: plain, and with the optimised inference settings."""
    plain = build_model(cfg, device, checkpoint)
    fast = optimise_for_inference(build_model(cfg, device, checkpoint), args)
    fast.load_state_dict(plain.state_dict())
    return plain, fast


def check_inference(args, results: dict, device: torch.device) -> None:
    """Part maps (both variants) and swaps (ResNet) of each optimised path against plain float32."""
    modes = (("fp32_fast", torch.float32, TOL_FP32), ("bf16", torch.bfloat16, TOL_BF16))
    variants = (("resnet", resnet_config(args), resnet_checkpoint(args)), ("dino", dino_config(args), None))
    for name, cfg, checkpoint in variants:
        plain, fast = _plain_and_fast(cfg, device, args, checkpoint)
        imgs = test_images(plain.cfg.input_size).to(device)
        a, b = imgs[:1], imgs[1:2]
        with tf32(device, False), precision(plain, torch.float32):
            ref = plain.predict(imgs, return_attention=False).masks
            ref_swap = plain.swap_parts(a, b) if name == "resnet" else None
        for tag, dtype, tol in modes:
            with tf32(device, dtype == torch.bfloat16), precision(fast, dtype):
                got = fast.predict(imgs, return_attention=False).masks
                results[f"check.{name}.maps.{tag}"] = _judge(_compare_maps(ref, got), tol, "maps")
                if ref_swap is not None:
                    swap = _compare_swaps(ref_swap, fast.swap_parts(a, b))
                    results[f"check.{name}.swap.{tag}"] = _judge(swap, tol, "image")
        del plain, fast


def _train_grads(cfg, device: torch.device, views, amp: bool, channels_last: bool, state=None) -> tuple:
    """One training step's losses, the flattened gradients and the (initial) weights it used."""
    torch.manual_seed(0)
    model = PartDiscModel(cfg).to(device).train()
    criterion = PartDiscLoss(cfg).to(device)
    if state is not None:
        model.load_state_dict(state)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        criterion.to(memory_format=torch.channels_last)
    v1, v2 = views
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        losses = criterion(model(v1, v2), model.arcface)
    losses["total"].backward()
    grads = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
    return {k: float(v.detach()) for k, v in losses.items()}, grads, model.state_dict()


def check_training(args, results: dict, device: torch.device) -> None:
    """One step's losses and gradients of each optimised mode against plain float32 (eager)."""
    batch = 4 if device.type == "cuda" else 2
    modes = (("fp32_fast", False, TOL_FP32), ("bf16", True, TOL_BF16))
    for name, cfg in (("resnet", resnet_config(args)), ("dino", dino_config(args))):
        views = paired_views(test_images(cfg.input_size, 4).to(device), batch)
        with tf32(device, False):
            ref_losses, ref_grads, state = _train_grads(cfg, device, views, False, False)
        for tag, amp, tol in modes:
            with tf32(device, amp):
                losses, grads, _ = _train_grads(cfg, device, views, amp, args.channels_last, state)
            rel = max(abs(losses[k] - ref_losses[k]) / max(abs(ref_losses[k]), 1e-6) for k in ref_losses)
            cos = float(F.cosine_similarity(ref_grads.double(), grads.double(), dim=0))
            results[f"check.train.{name}.{tag}"] = _judge(
                {"loss_rel": rel, "grad_cos": cos, "losses_fp32": ref_losses, "losses": losses}, tol, "train")


def run_check(args, results: dict, device: torch.device) -> None:
    """The inference checks, then the training checks."""
    check_inference(args, results, device)
    check_training(args, results, device)
