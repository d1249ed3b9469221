"""Shared helpers of the benchmark sections: timing, peak memory, TF32 and precision switches,
the machine's description, the test images and the model configurations that every section times.

The scripts in this folder import each other by module name (the running script's folder is on
``sys.path``), as ``onnx_latency.py`` does with ``bench``.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: it reads this once

import torch  # noqa: E402

from partdisc_core import PartDiscConfig, PartDiscModel, load_model  # noqa: E402
from partdisc_core.augment import PairedViews  # noqa: E402
from partdisc_core.checkpoint import DEFAULT_CHECKPOINT, shipped_checkpoint  # noqa: E402
from partdisc_core.inputs import portrait, resize_tensor  # noqa: E402
from partdisc_core.model import CPU_BF16_PROBES  # noqa: E402
from partdisc_core.testing import TINY  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (train/configs, and ../shared/data next to it)."""

# --- timing --------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that wall times cover it (CUDA is asynchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, device: torch.device, warmup: int, repeats: int) -> dict:
    """Median / min / max wall time (ms) of ``fn`` after ``warmup`` untimed calls, and the median
    CPU time of this process per call (``cpu_ms``: with one thread, what the call costs on an idle
    core however busy the machine is; with more threads it also counts their spin-waiting)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times, cpu = [], []
    for _ in range(repeats):
        sync(device)
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "cpu_ms": statistics.median(cpu), "repeats": repeats}


def per_second(count: int, stats: dict) -> float:
    """Throughput: ``count`` items per median call of ``stats`` (from :func:`time_calls`)."""
    return count / (stats["median_ms"] / 1000.0)


def reset_peak(device: torch.device) -> None:
    """Start a fresh peak-memory measurement (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    """Peak allocated memory since :func:`reset_peak` in GiB; None on the CPU (not measured)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return None


@contextlib.contextmanager
def tf32(device: torch.device, enabled: bool):
    """TF32 matmuls/convolutions on CUDA on or off for the block; no-op elsewhere."""
    if device.type != "cuda":
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@contextlib.contextmanager
def precision(model, dtype: torch.dtype):
    """Run the model's inference paths in ``dtype`` (float32 or bfloat16 autocast) for the block."""
    old = model.inference_dtype
    model.inference_dtype = dtype
    try:
        yield
    finally:
        model.inference_dtype = old


# --- the machine ---------------------------------------------------------------------------------
def _cpu_description() -> dict:
    """The CPU's model name and its bf16-relevant flags, from /proc/cpuinfo where there is one."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return {"cpu": platform.processor()}
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return {"cpu": names[0] if names else platform.processor(),
            "cpu_bf16": sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "avx512f", "avx2"))}


def machine_info(device: torch.device) -> dict:
    """What the figures depend on: platform, torch, threads, CPU (and what PyTorch detects of its
    bf16 support), and the GPU when ``device`` is CUDA."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    info.update(_cpu_description())
    for name in CPU_BF16_PROBES:
        probe = getattr(torch.cpu, name, None)
        if probe is not None:
            info[name.strip("_")] = bool(probe())
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    return info


def loadavg() -> float | None:
    """The 1-minute load average (other people's work on a shared machine), or None."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - not on every OS
        return None


# --- inputs --------------------------------------------------------------------------------------
PORTRAIT_CROPS = {"astronaut": (slice(0, 300), slice(100, 400)), "grace_hopper": (slice(0, 512), slice(0, 512))}
"""The face region of each public-domain portrait of :func:`partdisc_core.inputs.portrait`."""


def test_images(size: int, count: int = 2) -> torch.Tensor:
    """The two public-domain portraits (astronaut, Grace Hopper), cropped to the face and repeated
    to ``count``, as (count, 3, size, size) in [0, 1]."""
    faces = []
    for name, (rows, cols) in PORTRAIT_CROPS.items():
        array = portrait(name)[rows, cols]
        tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0
        faces.append(resize_tensor(tensor, size))
    return torch.stack([faces[i % len(faces)] for i in range(count)])


def batch_of(images: torch.Tensor, n: int) -> torch.Tensor:
    """``images`` repeated to a batch of ``n``."""
    reps = -(-n // images.shape[0])
    return images.repeat(reps, 1, 1, 1)[:n].contiguous()


def paired_views(images: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two geometric views of ``images`` repeated to ``batch`` (the training views, seeded)."""
    with torch.no_grad():
        return PairedViews(seed=0)(batch_of(images, batch))


# --- models --------------------------------------------------------------------------------------
def resnet_config(args) -> PartDiscConfig:
    """The ResNet variant: the test suite's tiny model with ``--quick``, else the shipped face
    model's architecture (K = 8) with VGG19 for the perceptual loss, as in issue 6."""
    if args.quick:
        return PartDiscConfig(**TINY)
    return PartDiscConfig(num_parts=8, perceptual_net="vgg19", perceptual_weights="random")


def dino_config(args) -> PartDiscConfig:
    """The DINO ViT-S/8 variant (K = 4, 256 px); with ``--quick`` timm's test ViT (patch 16,
    width 64, 6 blocks) at the tiny sizes, whose 256-px input gives 16 x 16 = 64 px / 4 tokens."""
    if args.quick:
        return PartDiscConfig.preset("dino", **{**TINY, "encoder_image_size": 256},
                                     dino_model="test_vit", dino_weights="random")
    return PartDiscConfig.preset("dino", num_parts=4, dino_weights=args.dino_weights,
                                 perceptual_net="vgg19", perceptual_weights="random")


def faces_configs(args) -> dict[str, PartDiscConfig]:
    """The face recipes at their real settings (train/configs): the shipped frozen-MobileNetV2 model
    and the from-scratch ResNet one (MobileNetV2 perceptual loss, as they train). None with ``--quick``."""
    if args.quick:
        return {}
    out = {}
    for name, file in (("faces", "faces.json"), ("faces_scratch", "faces-scratch.json")):
        path = ROOT / "train" / "configs" / file
        if path.is_file():
            out[name] = PartDiscConfig.from_dict(json.loads(path.read_text())["model"])
    return out


def resnet_checkpoint(args) -> str | None:
    """The ResNet model to time: ``--checkpoint``, else the shipped from-scratch face model
    (``checkpoints/faces-k8-scratch``) when present; None (a random model of the same architecture)
    with ``--quick``, ``--checkpoint none`` or no such checkpoint."""
    if args.quick or args.checkpoint == "none":
        return None
    if args.checkpoint:
        return args.checkpoint
    scratch = shipped_checkpoint("faces-k8-scratch")
    return str(scratch) if (scratch / "model.safetensors").is_file() else None


def build_model(cfg: PartDiscConfig, device: torch.device, checkpoint: str | None = None) -> PartDiscModel:
    """A model in eval mode on ``device``: the checkpoint's, or a seeded random one of ``cfg``."""
    torch.manual_seed(0)
    model = load_model(checkpoint, device=str(device)) if checkpoint else PartDiscModel(cfg).to(device)
    return model.eval()


def optimise_for_inference(model: PartDiscModel, args) -> PartDiscModel:
    """The optimised inference settings: channels_last convolutions (and torch.compile on request)."""
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    if args.compile:
        for name in ("encoder", "partformer", "decoder"):
            getattr(model, name).compile()
    return model


def tensor_maps(model: PartDiscModel, x: torch.Tensor) -> torch.Tensor:
    """The tensor path of predict: a normalised batch on the device -> V at the PartFormer's size."""
    return model.part_maps(x)[0]
