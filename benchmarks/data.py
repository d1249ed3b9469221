"""Section ``data``: what feeding the training costs.

Rows ``data.decode`` (one loader process decoding and resizing images of the ``folder`` dataset:
``--data-root``, else CelebA dev when present, else JPEGs of the portraits) and
``data.warps.{resnet,dino}`` (the batched paired views of ``partdisc_core.augment`` on the device).
Also adds ``loader_workers_needed`` (training images/s / decode images/s) to the ``train.*`` rows.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from PIL import Image

from common import ROOT, batch_of, dino_config, per_second, resnet_config, test_images, time_calls
from partdisc_core.augment import PairedViews
from partdisc_core.data import build_dataset

CELEBA_DEV = ROOT.parent / "shared" / "data" / "faces" / "celeba_dev"


def _decode_folder(args) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """The folder to decode and, when it was made here, its TemporaryDirectory (to clean up)."""
    if args.data_root and Path(args.data_root).is_dir():
        return Path(args.data_root), None
    if not args.quick and CELEBA_DEV.is_dir():
        return CELEBA_DEV, None
    # No data here: JPEGs of the public-domain portraits at CelebA's size (178 x 218).
    tmp = tempfile.TemporaryDirectory(prefix="partdisc-bench-")
    imgs = test_images(218)
    for i in range(16):
        arr = (imgs[i % 2].permute(1, 2, 0).numpy() * 255).astype("uint8")[:, 20:198]
        Image.fromarray(arr).save(Path(tmp.name) / f"{i:03d}.jpg", quality=90)
    return Path(tmp.name), tmp


def _decode_row(args, size: int) -> dict:
    """Images/s of one process reading the folder dataset (skipped when it holds no usable images)."""
    root, tmp = _decode_folder(args)
    try:
        dataset = build_dataset("folder", str(root), split="train", image_size=size)
        n = min(len(dataset), 8 if args.quick else 64)
        stats = time_calls(lambda: [dataset[i] for i in range(n)], torch.device("cpu"), 1, 3)
        return {**stats, "images": n, "image_px": size, "source": root.name,
                "images_per_s_per_worker": per_second(n, stats)}
    except ValueError as exc:
        return {"skipped": f"{type(exc).__name__}: {exc}"}
    finally:
        if tmp is not None:
            tmp.cleanup()


def _warp_rows(args, results: dict, device: torch.device) -> None:
    """Images/s of the paired views of a training batch, for each variant's image size."""
    views = PairedViews(seed=0)
    cuda = device.type == "cuda"
    batch = args.train_batch or (32 if cuda else 8)
    for name, cfg in (("resnet", resnet_config(args)), ("dino", dino_config(args))):
        images = batch_of(test_images(cfg.input_size), batch).to(device)
        with torch.no_grad():
            stats = time_calls(lambda: views(images), device, 2, 20 if cuda else 5)
        results[f"data.warps.{name}"] = {**stats, "batch": batch, "image_px": cfg.input_size,
                                         "device": device.type, "images_per_s": per_second(batch, stats)}


def run_data(args, results: dict, device: torch.device) -> None:
    """Decode and warp rows; then how many loader workers each training row needs."""
    results["data.decode"] = _decode_row(args, resnet_config(args).input_size)
    _warp_rows(args, results, device)
    decode = results["data.decode"].get("images_per_s_per_worker")
    if decode:
        for key in [k for k in results if k.startswith("train.")]:
            results[key]["loader_workers_needed"] = round(results[key]["images_per_s"] / decode, 2)
