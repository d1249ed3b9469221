"""Atomic, pickle-free training state: weights, optimizer moments and counters for ``--resume``.

Layout of ``<out>/last/``: ``model.safetensors`` + ``config.json`` (float32 weights),
``optimizer.safetensors`` (every optimizer state tensor, the RNG states) and ``state.json``
(step, learning rates, loss history). The folder is written beside the old one and swapped in by
renames, so a run killed at any moment resumes from its last complete save.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from partdisc_core import save_model
from partdisc_core.checkpoint import load_weights, read_checkpoint


def save_state(folder: Path, model, optimizer: torch.optim.Optimizer, step: int, extra: dict) -> None:
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".new")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, tmp)
    tensors, scalars = {}, {}
    for idx, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.state_dict()["param_groups"]]
    (tmp / "state.json").write_text(json.dumps({"step": step, "param_groups": groups, "scalars": scalars, **extra}, default=list))
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def find_state(out: Path) -> Path | None:
    """The newest complete save under ``out`` (``last``, or ``last.old`` if a swap was interrupted)."""
    for name in ("last", "last.old"):
        folder = Path(out) / name
        if (folder / "state.json").is_file() and (folder / "optimizer.safetensors").is_file():
            return folder
    return None


ARCHITECTURE_KEYS = ("num_parts", "num_classes", "encoder", "resnet_cut", "dino_model", "dino_head_kernel",
                     "encoder_head_width", "mobilenet_taps", "image_size", "feature_dim", "patch_size", "width", "depth", "heads",
                     "mlp_dim", "decoder_channels", "decoder_final_kernel")
"""Config fields that decide the shapes of the trained weights."""


def init_from_checkpoint(model, source) -> dict:
    """Copy the weights of a checkpoint (folder, ``.safetensors`` file, hub id, the shipped model)
    into ``model``; the optimiser is not touched (a fresh start from those weights). A checkpoint
    of another architecture raises :class:`partdisc_core.CheckpointError` naming the differences.
    Returns the checkpoint's metadata."""
    from partdisc_core import CheckpointError

    cfg, weights, meta = read_checkpoint(source)
    theirs, ours = cfg.to_dict(), model.cfg.to_dict()
    diff = {k: (theirs.get(k), ours.get(k)) for k in ARCHITECTURE_KEYS if theirs.get(k) != ours.get(k)}
    if diff:
        text = ", ".join(f"{k}: {a!r} in the checkpoint, {b!r} here" for k, (a, b) in diff.items())
        raise CheckpointError(f"--init-from {source}: another architecture ({text})")
    load_weights(model, weights, meta, f"--init-from {source}: the weights do not fit this model")
    return meta


def load_state(folder: Path, model, optimizer: torch.optim.Optimizer) -> dict:
    _, weights, _ = read_checkpoint(folder)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    bad = [k for k in missing if not k.startswith("encoder.backbone.")] + list(unexpected)
    if bad:
        raise RuntimeError(f"saved weights in {folder} do not match this model (e.g. {bad[:3]}); was --model changed?")
    info = json.loads((folder / "state.json").read_text())
    tensors = load_file(str(folder / "optimizer.safetensors"))
    sd = optimizer.state_dict()
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for key, value in info.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = sd["param_groups"]
    for group, saved in zip(groups, info["param_groups"]):
        group.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items()})
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return info
