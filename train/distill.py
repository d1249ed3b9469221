r"""Fit a cheaper feature encoder to a trained model: the student keeps the teacher's PartFormer and
decoder and learns to give the teacher's feature map F from less work.

    python train/distill.py --teacher checkpoints/faces-k8 --set mobilenet_taps=3,6,13 \
        encoder_image_size=128 --data-root ../shared/data/faces/celeba_train --minutes 10 --out runs/distill
    python train/main.py --config faces --init-from runs/distill ...   # then fine-tune as usual

Only the encoder's trainable head learns, on the mean squared error between the two F maps (the
part maps V = softmax_k(tau G . F), eq. 2, follow from F and the unchanged G); every other weight,
and every head weight whose shape did not change, starts as the teacher's. Where a tapped block of
the frozen network is shared by both (MobileNetV2 taps), the head's first convolution keeps the
teacher's weights for those channels and starts at zero for new ones, so the student begins close
to the teacher. The result is an ordinary checkpoint (fp32) that ``--init-from`` takes, with the
command's settings in ``distill_config.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as nnf
from torch.utils.data import DataLoader

from partdisc_core import PartDiscModel, load_model
from partdisc_core.checkpoint import save_model
from partdisc_core.config import apply_overrides
from partdisc_core.data import build_dataset
from partdisc_core.encoders import MobileNetEncoder


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="checkpoint folder, file or hub id of the trained model")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="the student's config changes")
    p.add_argument("--data-root", nargs="+", required=True, help="image folders (the 'folder' dataset)")
    p.add_argument("--holdout-percent", type=float, default=5.0, help="files left out, as in training")
    p.add_argument("--minutes", type=float, default=10.0, help="time budget")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def tap_slices(encoder: MobileNetEncoder) -> dict[int, slice]:
    """Input channels of the head's first convolution that each tapped block fills."""
    out, start = {}, 0
    for t, width in zip(encoder.taps, encoder.tap_channels()):
        out[t] = slice(start, start + width)
        start += width
    return out


@torch.no_grad()
def init_student(student: PartDiscModel, teacher: PartDiscModel) -> list[str]:
    """Copy every teacher weight of the same name and shape; embed the head's first convolution
    channel by channel for the taps both encoders share. Returns the names started afresh."""
    theirs = teacher.state_dict()
    fresh = []
    for name, value in student.state_dict().items():
        if name in theirs and theirs[name].shape == value.shape:
            value.copy_(theirs[name])
        else:
            fresh.append(name)
    if isinstance(student.encoder, MobileNetEncoder) and isinstance(teacher.encoder, MobileNetEncoder):
        first_s, first_t = student.encoder.head[0].weight, teacher.encoder.head[0].weight
        if first_s.shape != first_t.shape:
            first_s.zero_()
            mine, yours = tap_slices(student.encoder), tap_slices(teacher.encoder)
            for tap in set(mine) & set(yours):
                first_s[:, mine[tap]] = first_t[:, yours[tap]]
    return fresh


def features(model: PartDiscModel, images: torch.Tensor) -> torch.Tensor:
    """F (B, C, h, w) at the model's feature size, of images in [0, 1]."""
    f = model.features(model.normalize(images))
    return f if f.shape[-1] == model.cfg.feature_size else nnf.interpolate(
        f, size=model.cfg.feature_size, mode="bilinear", align_corners=False)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    teacher = load_model(args.teacher).eval()
    cfg = apply_overrides(teacher.cfg, args.set)
    student = PartDiscModel(cfg)
    fresh = init_student(student, teacher)
    print(f"[distill] student: {len(fresh)} tensors not taken from the teacher: {fresh[:6]}")
    student.requires_grad_(False)
    student.encoder.head.requires_grad_(True)
    student.eval()
    student.encoder.head.train()
    params = list(student.encoder.head.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    data = build_dataset("folder", args.data_root, split="train", image_size=cfg.input_size,
                         holdout_percent=args.holdout_percent)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True)
    budget, start, step = args.minutes * 60.0, time.monotonic(), 0
    while time.monotonic() - start < budget:
        for batch in loader:
            images = batch["image"]
            flip = torch.rand(images.shape[0]) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            with torch.no_grad():
                target = features(teacher, images)
            loss = nnf.mse_loss(features(student, images), target) / target.var().clamp_min(1e-8)
            progress = (time.monotonic() - start) / budget
            for group in optimizer.param_groups:   # cosine decay over the time budget
                group["lr"] = args.lr * 0.5 * (1 + math.cos(min(progress, 1.0) * math.pi))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % 20 == 0 or step == 1:
                print(f"[distill] step {step}  {time.monotonic() - start:6.0f} s  relative MSE {loss.item():.4f}",
                      flush=True)
            if time.monotonic() - start >= budget:
                break
    student.eval()
    record = {**vars(args), "steps": step, "images": step * args.batch_size}
    out = save_model(student, args.out, metadata={"distilled_from": str(args.teacher), "steps": step})
    (Path(args.out) / "distill_config.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"[distill] saved {out} after {step} steps")


if __name__ == "__main__":
    main()
