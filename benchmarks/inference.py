"""Section ``infer``: part-map throughput of a batch on the main device (32 on a GPU, 8 on the CPU).

Rows ``infer.{resnet,dino}.tensor`` (``model.part_maps`` on a normalised batch already on the
device) and ``infer.{resnet,dino}.predict`` (``model.predict``, which also validates and resizes
each image), in the model's default precision: bf16 autocast on CUDA, float32 on the CPU.
"""
from __future__ import annotations

import torch

from common import (batch_of, build_model, dino_config, optimise_for_inference, peak_gib, per_second,
                    reset_peak, resnet_checkpoint, resnet_config, tensor_maps, test_images, tf32, time_calls)


def _rows(name: str, model, batch: int, reps: int, results: dict, device: torch.device) -> None:
    """Time the tensor path and predict of one model on the portraits repeated to ``batch``."""
    images = batch_of(test_images(model.cfg.input_size), batch).to(device)
    x = model.normalize(images)
    calls = {"tensor": lambda: tensor_maps(model, x),
             "predict": lambda: model.predict(images, return_attention=False, batch_size=batch)}
    for row, fn in calls.items():
        reset_peak(device)
        stats = time_calls(fn, device, 2, reps)
        results[f"infer.{name}.{row}"] = {**stats, "batch": batch, "device": device.type,
                                          "images_per_s": per_second(batch, stats),
                                          "peak_gib": peak_gib(device),
                                          "precision": "bf16" if device.type == "cuda" else "fp32"}


def run_infer(args, results: dict, device: torch.device) -> None:
    """Both variants with the optimised inference settings (channels_last, TF32)."""
    cuda = device.type == "cuda"
    batch = args.infer_batch or (32 if cuda else 2 if args.quick else 8)
    reps = 10 if cuda else (2 if args.quick else 3)
    variants = (("resnet", resnet_config(args), resnet_checkpoint(args)), ("dino", dino_config(args), None))
    for name, cfg, checkpoint in variants:
        with tf32(device, True):
            reset_peak(device)
            model = optimise_for_inference(build_model(cfg, device, checkpoint), args)
            _rows(name, model, batch, reps, results, device)
            del model
