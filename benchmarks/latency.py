"""Section ``latency``: one image at a time, on the CPU (``--cpu-threads``) and, when the main device
is CUDA, on the GPU; each row in float32 and in bf16 autocast.

Rows ``latency.{cpu,cuda}.resnet.{predict,maps_tensor,reconstruct,swap}.{fp32,bf16}`` (ResNet
variant, 128 px: ``predict``, the tensor path ``part_maps``, one reconstruction, one swap with both
swapped images and both plain reconstructions), ``latency.*.shipped.{predict,swap}.*`` (the shipped
face model, frozen-MobileNetV2 encoder, when it is present) and ``latency.*.dino.predict.*`` (DINO,
256 px).
"""
from __future__ import annotations

import torch

from common import (build_model, dino_config, optimise_for_inference, precision, resnet_checkpoint,
                    resnet_config, tensor_maps, test_images, tf32, time_calls)

PRECISIONS = (("fp32", torch.float32), ("bf16", torch.bfloat16))


def _row(stats: dict, device: torch.device, size: int, tag: str) -> dict:
    """A latency row: the timings and what they were measured on."""
    d = device.type
    return {**stats, "device": d, "batch": 1, "image_px": size, "precision": tag, "tf32": d == "cuda"}


def _resnet_rows(args, results: dict, device: torch.device, warm: int, reps: int) -> None:
    """predict, the tensor path, one reconstruction and one swap of the ResNet variant."""
    model = build_model(resnet_config(args), device, resnet_checkpoint(args))
    model = optimise_for_inference(model, args)
    size = model.cfg.input_size
    imgs = test_images(size).to(device)
    a, b = imgs[:1], imgs[1:2]
    x = model.normalize(a)
    calls = {"predict": lambda: model.predict(a), "maps_tensor": lambda: tensor_maps(model, x),
             "reconstruct": lambda: model.reconstruct(a), "swap": lambda: model.swap_parts(a, b)}
    _time_rows(model, calls, f"latency.{device.type}.resnet", results, device, size, warm, reps)


def _time_rows(model, calls: dict, prefix: str, results: dict, device: torch.device, size: int, warm: int,
               reps: int) -> None:
    """Time each call in float32 and bf16 into ``results[f"{prefix}.{name}.{precision}"]``."""
    for tag, dtype in PRECISIONS:
        with precision(model, dtype):
            for name, fn in calls.items():
                stats = time_calls(fn, device, warm + 1, reps)
                results[f"{prefix}.{name}.{tag}"] = _row(stats, device, size, tag)


def _shipped_rows(args, results: dict, device: torch.device, warm: int, reps: int) -> None:
    """predict and one swap of the shipped face model (skipped with --quick or without it)."""
    from partdisc_core.checkpoint import DEFAULT_CHECKPOINT

    if args.quick or not (DEFAULT_CHECKPOINT / "model.safetensors").is_file():
        return
    model = optimise_for_inference(build_model(None, device, str(DEFAULT_CHECKPOINT)), args)
    size = model.cfg.input_size
    imgs = test_images(size).to(device)
    a, b = imgs[:1], imgs[1:2]
    calls = {"predict": lambda: model.predict(a), "swap": lambda: model.swap_parts(a, b)}
    _time_rows(model, calls, f"latency.{device.type}.shipped", results, device, size, warm, reps)


def _dino_rows(args, results: dict, device: torch.device, warm: int, reps: int) -> None:
    """predict of the DINO variant (fewer repeats on the CPU: each call takes much longer)."""
    model = optimise_for_inference(build_model(dino_config(args), device), args)
    size = model.cfg.input_size
    a = test_images(size)[:1].to(device)
    reps = max(3, reps // 4) if device.type == "cpu" else reps
    for tag, dtype in PRECISIONS:
        with precision(model, dtype):
            stats = time_calls(lambda: model.predict(a), device, warm, reps)
        results[f"latency.{device.type}.dino.predict.{tag}"] = _row(stats, device, size, tag)


def run_latency(args, results: dict, main_device: torch.device) -> None:
    """The latency rows on the CPU, then on the main device when it is CUDA."""
    devices = [torch.device("cpu")] + ([main_device] if main_device.type == "cuda" else [])
    for device in devices:
        if device.type == "cpu":
            warm, reps = 0 if args.quick else 1, args.repeats
        else:
            warm, reps = 3, max(args.repeats, 20)
        with tf32(device, True):
            _resnet_rows(args, results, device, warm, reps)
            _shipped_rows(args, results, device, warm, reps)
            _dino_rows(args, results, device, warm, reps)
