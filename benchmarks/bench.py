#!/usr/bin/env python
"""Speed figures of issue 6, measured in one run, with a correctness check of the fast paths.

Sections (``--only`` picks some; all run by default):

- ``latency``: one image on the CPU (``--cpu-threads``, 2 by default, as in the issue's 2-core CPU)
  and, when the main device is CUDA, on the GPU: ResNet variant (128 px) part maps through
  ``model.predict`` and through the tensor path (``model.part_maps``), one reconstruction, one swap
  (``swap_parts``: both swapped images and both plain reconstructions); DINO variant (256 px) part
  maps. Each in float32 and in bf16 autocast.
- ``train``: training steps (forward of both views, the four losses, backward, AdamW) at batch 32
  on a GPU (``--train-batch``): images/s (one image = one pair of views), ms/step, peak memory.
  Modes: ``fp32`` (plain float32, no TF32, foreach AdamW) and ``opt`` (bf16 autocast,
  channels_last, TF32, fused AdamW on CUDA, ``--compile`` optionally).
- ``infer``: part-map throughput at batch 32 on the main device (tensor path and ``predict``).
- ``data``: decoding one image in a loader process (images/s) and the batched paired warps of
  ``partdisc_core.augment`` on the device; how many loader workers each training figure needs.
- ``check``: the optimised paths against the plain float32 path on the same inputs, with stated
  tolerances (inference maps and reconstructions, training losses and gradients).

Timing: warm-up calls first, device synchronisation around every timed call, median (and min)
of the repeats. The machine's load average is recorded before and after: on a shared CPU the
median moves with other people's work, the min much less.

    python benchmarks/bench.py                                # full settings, CUDA when present
    python benchmarks/bench.py --device cpu --json cpu.json   # CPU figures (small training batch)
    python benchmarks/bench.py --quick --json quick.json      # tiny models, seconds (CI)
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SECTIONS = ("latency", "train", "infer", "data", "check")

# Figures of the original implementation quoted in issue 6 (for the table only).
ORIGINAL = {
    "latency.cpu.resnet.predict": "39.5 ms",
    "latency.cpu.resnet.reconstruct": "84 ms",
    "latency.cpu.dino.predict": "1310 ms",
    "latency.cuda.dino.predict": "13.8 ms",
    "train.dino.fp32": "109 img/s, 8.8 GiB (H200)",
    "train.dino.opt": "241 img/s TF32 / 206 bf16 (H200)",
    "train.resnet.opt": "450-540 img/s TF32 (H200)",
    "infer.dino.tensor": "856 img/s (H200)",
}
# Targets of issue 6: (kind, value); kinds "ms" (at most) and "ips" (at least), "gib" (at most).
TARGETS = {
    "latency.cpu.resnet.predict": ("ms", 20.0),
    "latency.cpu.resnet.maps_tensor": ("ms", 20.0),
    "latency.cpu.resnet.swap": ("ms", 100.0),
    "latency.cpu.dino.predict": ("ms", 600.0),
    "train.dino.opt": ("ips", 1000.0),
    "train.resnet.opt": ("ips", 3000.0),
    "infer.dino.tensor": ("ips", 3000.0),
}
TRAIN_MEMORY_TARGET_GIB = {"train.dino.opt": 5.0}

# Tolerances of the correctness check (optimised path vs plain float32 on the same inputs).
TOL_FP32 = {"maps_max_abs": 1e-3, "image_max_abs": 1e-3, "loss_rel": 1e-3, "grad_cos": 0.9999}
TOL_BF16 = {"maps_mean_abs": 0.02, "maps_max_abs": 0.25, "label_agreement": 0.95,
            "image_mean_abs": 0.02, "loss_rel": 0.03, "grad_cos": 0.99}


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
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


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
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
    """Run the model's inference paths in ``dtype`` (float32 or bfloat16 autocast)."""
    if hasattr(model, "inference_dtype"):
        old = model.inference_dtype
        model.inference_dtype = dtype
        try:
            yield
        finally:
            model.inference_dtype = old
        return
    # Older library without the attribute: replace the autocast factory on the instance.
    model._autocast = lambda: torch.autocast(device_type=model.device.type, dtype=torch.bfloat16,
                                             enabled=dtype != torch.float32)
    try:
        yield
    finally:
        del model._autocast


def tensor_maps(lib, model, x: torch.Tensor) -> torch.Tensor:
    """The tensor path of predict: normalised batch -> V at the PartFormer's size."""
    if hasattr(model, "part_maps"):
        return model.part_maps(x)[0]
    with torch.no_grad(), model._autocast():  # library without part_maps: the same steps inline
        feats = model.features(x)
        parts, _ = model.part_representations(x)
    feats, parts = feats.float(), parts.float()
    size = model.cfg.image_size
    feats = F.interpolate(feats, size=(size, size), mode="bilinear", align_corners=False)
    return lib.model.part_probabilities(parts, feats, model.cfg.tau)


def test_images(size: int, count: int = 2) -> torch.Tensor:
    """Public-domain portraits (astronaut, Grace Hopper) as (count, 3, size, size) in [0, 1]."""
    import numpy as np

    arrays = []
    try:
        from skimage import data as skdata

        arrays.append(skdata.astronaut()[0:300, 100:400])
    except Exception:  # pragma: no cover - skimage is in the venv
        pass
    try:
        import matplotlib.cbook as cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            arrays.append(np.asarray(Image.open(f).convert("RGB"))[0:512, 0:512])
    except Exception:  # pragma: no cover
        pass
    g = torch.Generator().manual_seed(0)
    while len(arrays) < count:
        arrays.append((torch.rand(64, 64, 3, generator=g).numpy() * 255).astype("uint8"))
    out = []
    for i in range(count):
        t = torch.from_numpy(np.array(arrays[i % len(arrays)])).permute(2, 0, 1).float() / 255.0
        out.append(F.interpolate(t[None], size=(size, size), mode="bilinear", antialias=True,
                                 align_corners=False)[0].clamp(0, 1))
    return torch.stack(out)


def batch_of(images: torch.Tensor, n: int) -> torch.Tensor:
    reps = -(-n // images.shape[0])
    return images.repeat(reps, 1, 1, 1)[:n].contiguous()


def machine_info(device: torch.device) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    try:
        text = Path("/proc/cpuinfo").read_text()
        names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
        flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
        info["cpu"] = names[0] if names else platform.processor()
        info["cpu_bf16"] = sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "avx512f", "avx2"))
    except OSError:
        info["cpu"] = platform.processor()
    # What PyTorch itself detects (private helpers; absent in some versions).
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(torch.cpu, name, None)
        if probe is not None:
            info[name.strip("_")] = bool(probe())
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    return info


def loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - not on every OS
        return None


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------
TINY = dict(width=64, depth=2, heads=2, mlp_dim=128, num_parts=4, decoder_channels=16,
            perceptual_net="mobilenetv2", image_size=64, encoder_image_size=64)


def resnet_config(lib, args):
    if args.quick:
        return lib.PartDiscConfig(**TINY)
    # The shipped face model's architecture (K = 8); VGG19 for the perceptual loss, as in the issue.
    return lib.PartDiscConfig(num_parts=8, perceptual_net="vgg19", perceptual_weights="random")


def dino_config(lib, args):
    if args.quick:
        # timm's test ViT (patch 16, width 64, 6 blocks): a 256-px input gives 16 x 16 = 64 px / 4 tokens.
        return lib.PartDiscConfig.preset("dino", **{**TINY, "encoder_image_size": 256},
                                         dino_model="test_vit", dino_weights="random")
    return lib.PartDiscConfig.preset("dino", num_parts=4, dino_weights=args.dino_weights,
                                     perceptual_net="vgg19", perceptual_weights="random")


def build_model(lib, cfg, device, checkpoint: str | None = None):
    torch.manual_seed(0)
    if checkpoint:
        model = lib.load_model(checkpoint, device=str(device))
    else:
        model = lib.PartDiscModel(cfg).to(device)
    return model.eval()


def resnet_checkpoint(lib, args) -> str | None:
    if args.quick or args.checkpoint == "none":
        return None
    if args.checkpoint:
        return args.checkpoint
    default = Path(lib.checkpoint.DEFAULT_CHECKPOINT)
    return str(default) if (default / "model.safetensors").is_file() else None


def optimise_for_inference(model, args, device):
    """The optimised inference settings: channels_last convolutions (and torch.compile on request)."""
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    if args.compile:
        for name in ("encoder", "partformer", "decoder"):
            getattr(model, name).compile()
    return model


# --------------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------------
def run_latency(lib, args, results: dict, main_device: torch.device) -> None:
    devices = [torch.device("cpu")] + ([main_device] if main_device.type == "cuda" else [])
    ckpt = resnet_checkpoint(lib, args)
    for device in devices:
        d = device.type
        precisions = [("fp32", torch.float32), ("bf16", torch.bfloat16)]
        warm, reps = (0 if args.quick else 1, args.repeats) if d == "cpu" else (3, max(args.repeats, 20))
        with tf32(device, True):
            model = optimise_for_inference(build_model(lib, resnet_config(lib, args), device, ckpt), args, device)
            size = model.cfg.input_size
            imgs = test_images(size).to(device)
            a, b = imgs[:1], imgs[1:2]
            x = model.normalize(a)
            for tag, dtype in precisions:
                with precision(model, dtype):
                    rows = {
                        "predict": lambda: model.predict(a),
                        "maps_tensor": lambda: tensor_maps(lib, model, x),
                        "reconstruct": lambda: model.reconstruct(a),
                        "swap": lambda: model.swap_parts(a, b),
                    }
                    for name, fn in rows.items():
                        stats = time_calls(fn, device, warm + 1, reps)
                        results[f"latency.{d}.resnet.{name}.{tag}"] = {**stats, "device": d, "batch": 1,
                                                                       "image_px": size, "precision": tag,
                                                                       "tf32": d == "cuda"}
            del model
            model = optimise_for_inference(build_model(lib, dino_config(lib, args), device), args, device)
            size = model.cfg.input_size
            a = test_images(size)[:1].to(device)
            for tag, dtype in precisions:
                with precision(model, dtype):
                    stats = time_calls(lambda: model.predict(a), device, warm, max(3, reps // 4) if d == "cpu" else reps)
                results[f"latency.{d}.dino.predict.{tag}"] = {**stats, "device": d, "batch": 1, "image_px": size,
                                                              "precision": tag, "tf32": d == "cuda"}
            del model


def train_once(lib, cfg, device, batch: int, steps: int, warmup: int, mode: str, args) -> dict:
    """Time ``steps`` training steps (after ``warmup``) in mode "fp32" or "opt"."""
    opt = mode == "opt"
    torch.manual_seed(0)
    reset_peak(device)
    model = lib.PartDiscModel(cfg).to(device).train()
    criterion = lib.PartDiscLoss(cfg).to(device)
    if opt and args.channels_last:
        model.to(memory_format=torch.channels_last)
        criterion.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    fused = True if (opt and device.type == "cuda") else None
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=fused)
    views1, views2 = paired_views(lib, test_images(cfg.input_size, 4).to(device), batch)
    if opt and args.channels_last:
        views1 = views1.contiguous(memory_format=torch.channels_last)
        views2 = views2.contiguous(memory_format=torch.channels_last)
    amp = opt and (device.type == "cuda" or args.cpu_bf16_train)
    if opt and args.compile:
        model.compile()
        criterion.compile()
        warmup += 2

    def step():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(views1, views2)
            losses = criterion(out, model.arcface)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()

    with tf32(device, opt):
        stats = time_calls(step, device, warmup, steps)
    res = {**stats, "batch": batch, "images_per_s": batch / (stats["median_ms"] / 1000.0),
           "peak_gib": peak_gib(device), "device": device.type, "amp_bf16": amp,
           "channels_last": bool(opt and args.channels_last), "fused_adamw": bool(fused),
           "tf32": bool(opt and device.type == "cuda"), "compile": bool(opt and args.compile)}
    del model, criterion, optimizer
    reset_peak(device)
    return res


def paired_views(lib, images: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two geometric views of a batch (the library's PairedViews when present, else a flip)."""
    images = batch_of(images, batch)
    try:
        augment = importlib.import_module(f"{lib.__name__}.augment")
        with torch.no_grad():
            return augment.PairedViews(seed=0)(images)
    except (ImportError, AttributeError):
        return images, images.flip(-1)


def run_train(lib, args, results: dict, device: torch.device) -> None:
    cuda = device.type == "cuda"
    batch = args.train_batch or (32 if cuda else 2 if args.quick else 4)
    steps = args.train_steps or (20 if cuda else 2 if args.quick else 3)
    warmup = 3 if cuda else 1
    for name, cfg in (("resnet", resnet_config(lib, args)), ("dino", dino_config(lib, args))):
        for mode in ("fp32", "opt"):
            results[f"train.{name}.{mode}"] = train_once(lib, cfg, device, batch, steps, warmup, mode, args)


def run_infer(lib, args, results: dict, device: torch.device) -> None:
    cuda = device.type == "cuda"
    batch = args.infer_batch or (32 if cuda else 2 if args.quick else 8)
    reps = 10 if cuda else (2 if args.quick else 3)
    ckpt = resnet_checkpoint(lib, args)
    for name, cfg, path in (("resnet", resnet_config(lib, args), ckpt), ("dino", dino_config(lib, args), None)):
        with tf32(device, True):
            reset_peak(device)
            model = optimise_for_inference(build_model(lib, cfg, device, path), args, device)
            images = batch_of(test_images(model.cfg.input_size), batch).to(device)
            x = model.normalize(images)
            rows = {"tensor": lambda: tensor_maps(lib, model, x),
                    "predict": lambda: model.predict(images, return_attention=False, batch_size=batch)}
            for row, fn in rows.items():
                reset_peak(device)
                stats = time_calls(fn, device, 2, reps)
                results[f"infer.{name}.{row}"] = {**stats, "batch": batch, "device": device.type,
                                                  "images_per_s": batch / (stats["median_ms"] / 1000.0),
                                                  "peak_gib": peak_gib(device),
                                                  "precision": "bf16" if cuda else "fp32"}
            del model


def _decode_folder(args) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    if args.data_root and Path(args.data_root).is_dir():
        return Path(args.data_root), None
    default = ROOT.parent / "shared" / "data" / "faces" / "celeba_dev"
    if not args.quick and default.is_dir():
        return default, None
    # No data here: JPEGs of the public-domain portraits at CelebA's size (178 x 218).
    from PIL import Image

    tmp = tempfile.TemporaryDirectory(prefix="partdisc-bench-")
    imgs = test_images(218)
    for i in range(16):
        arr = (imgs[i % 2].permute(1, 2, 0).numpy() * 255).astype("uint8")[:, 20:198]
        Image.fromarray(arr).save(Path(tmp.name) / f"{i:03d}.jpg", quality=90)
    return Path(tmp.name), tmp


def run_data(lib, args, results: dict, device: torch.device) -> None:
    size = resnet_config(lib, args).input_size
    root, tmp = _decode_folder(args)
    try:
        try:
            data = importlib.import_module(f"{lib.__name__}.data")
            dataset = data.build_dataset("folder", str(root), split="train", image_size=size)
            n = min(len(dataset), 8 if args.quick else 64)
            stats = time_calls(lambda: [dataset[i] for i in range(n)], torch.device("cpu"), 1, 3)
            results["data.decode"] = {**stats, "images": n, "image_px": size, "source": root.name,
                                      "images_per_s_per_worker": n / (stats["median_ms"] / 1000.0)}
        except (ImportError, AttributeError, ValueError) as exc:
            results["data.decode"] = {"skipped": f"{type(exc).__name__}: {exc}"}
    finally:
        if tmp is not None:
            tmp.cleanup()
    try:
        augment = importlib.import_module(f"{lib.__name__}.augment")
        views = augment.PairedViews(seed=0)
        cuda = device.type == "cuda"
        batch = args.train_batch or (32 if cuda else 8)
        for name, cfg in (("resnet", resnet_config(lib, args)), ("dino", dino_config(lib, args))):
            images = batch_of(test_images(cfg.input_size), batch).to(device)
            with torch.no_grad():
                stats = time_calls(lambda: views(images), device, 2, 20 if cuda else 5)
            results[f"data.warps.{name}"] = {**stats, "batch": batch, "image_px": cfg.input_size,
                                             "device": device.type,
                                             "images_per_s": batch / (stats["median_ms"] / 1000.0)}
    except (ImportError, AttributeError) as exc:
        results["data.warps"] = {"skipped": f"partdisc_core.augment not usable ({type(exc).__name__}: {exc})"}
    decode = results.get("data.decode", {}).get("images_per_s_per_worker")
    if decode:
        for key in [k for k in results if k.startswith("train.")]:
            results[key]["loader_workers_needed"] = round(results[key]["images_per_s"] / decode, 2)


def _compare_maps(ref: torch.Tensor, got: torch.Tensor) -> dict:
    diff = (ref.float() - got.float()).abs()
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "label_agreement": float((ref.argmax(1) == got.argmax(1)).float().mean())}


def _judge(stats: dict, tol: dict, kind: str) -> dict:
    fails = []
    if kind == "maps":
        if "maps_max_abs" in tol and stats["max_abs"] > tol["maps_max_abs"]:
            fails.append("max_abs")
        if "maps_mean_abs" in tol and stats["mean_abs"] > tol["maps_mean_abs"]:
            fails.append("mean_abs")
        if "label_agreement" in tol and stats["label_agreement"] < tol["label_agreement"]:
            fails.append("label_agreement")
    elif kind == "image":
        if "image_max_abs" in tol and stats["max_abs"] > tol["image_max_abs"]:
            fails.append("max_abs")
        if "image_mean_abs" in tol and stats["mean_abs"] > tol["image_mean_abs"]:
            fails.append("mean_abs")
    else:
        if stats["loss_rel"] > tol["loss_rel"]:
            fails.append("loss_rel")
        if stats["grad_cos"] < tol["grad_cos"]:
            fails.append("grad_cos")
    return {**stats, "tolerance": tol, "passed": not fails, "failed": fails}


def _plain_and_fast(lib, cfg, device, args, ckpt=None):
    plain = build_model(lib, cfg, device, ckpt)
    fast = optimise_for_inference(build_model(lib, cfg, device, ckpt), args, device)
    fast.load_state_dict(plain.state_dict())
    return plain, fast


def check_inference(lib, args, results: dict, device: torch.device) -> None:
    ckpt = resnet_checkpoint(lib, args)
    modes = [("fp32_fast", torch.float32, TOL_FP32), ("bf16", torch.bfloat16, TOL_BF16)]
    for name, cfg, path in (("resnet", resnet_config(lib, args), ckpt), ("dino", dino_config(lib, args), None)):
        plain, fast = _plain_and_fast(lib, cfg, device, args, path)
        imgs = test_images(plain.cfg.input_size).to(device)
        with tf32(device, False), precision(plain, torch.float32):
            ref = plain.predict(imgs, return_attention=False).masks
            ref_swap = plain.swap_parts(imgs[:1], imgs[1:2]) if name == "resnet" else None
        for tag, dtype, tol in modes:
            with tf32(device, dtype == torch.bfloat16), precision(fast, dtype):
                got = fast.predict(imgs, return_attention=False).masks
                results[f"check.{name}.maps.{tag}"] = _judge(_compare_maps(ref, got), tol, "maps")
                if ref_swap is not None:
                    swap = fast.swap_parts(imgs[:1], imgs[1:2])
                    diffs = torch.cat([(getattr(ref_swap, f) - getattr(swap, f)).abs().flatten()
                                       for f in ("swapped_a", "swapped_b", "recon_a", "recon_b")])
                    results[f"check.{name}.swap.{tag}"] = _judge(
                        {"max_abs": float(diffs.max()), "mean_abs": float(diffs.mean())}, tol, "image")
        del plain, fast


def _train_grads(lib, cfg, device, views, amp: bool, channels_last: bool, state=None):
    torch.manual_seed(0)
    model = lib.PartDiscModel(cfg).to(device).train()
    criterion = lib.PartDiscLoss(cfg).to(device)
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


def check_training(lib, args, results: dict, device: torch.device) -> None:
    batch = 4 if device.type == "cuda" else 2
    for name, cfg in (("resnet", resnet_config(lib, args)), ("dino", dino_config(lib, args))):
        views = paired_views(lib, test_images(cfg.input_size, 4).to(device), batch)
        with tf32(device, False):
            ref_losses, ref_grads, state = _train_grads(lib, cfg, device, views, False, False)
        modes = [("fp32_fast", False, TOL_FP32), ("bf16", True, TOL_BF16)]
        for tag, amp, tol in modes:
            with tf32(device, amp):
                losses, grads, _ = _train_grads(lib, cfg, device, views, amp, args.channels_last, state)
            rel = max(abs(losses[k] - ref_losses[k]) / max(abs(ref_losses[k]), 1e-6) for k in ref_losses)
            cos = float(F.cosine_similarity(ref_grads.double(), grads.double(), dim=0))
            results[f"check.train.{name}.{tag}"] = _judge(
                {"loss_rel": rel, "grad_cos": cos, "losses_fp32": ref_losses, "losses": losses}, tol, "train")


def run_check(lib, args, results: dict, device: torch.device) -> None:
    check_inference(lib, args, results, device)
    check_training(lib, args, results, device)


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------
def _target_text(key: str) -> str:
    base = key.rsplit(".", 1)[0] if key.startswith("latency.") else key
    if base not in TARGETS:
        return ""
    kind, value = TARGETS[base]
    text = f"< {value:g} ms" if kind == "ms" else f">= {value:g} img/s"
    if key in TRAIN_MEMORY_TARGET_GIB:
        text += f", < {TRAIN_MEMORY_TARGET_GIB[key]:g} GiB"
    return text


def _meets(key: str, row: dict, quick: bool) -> str:
    base = key.rsplit(".", 1)[0] if key.startswith("latency.") else key
    if quick or base not in TARGETS:
        return ""
    kind, value = TARGETS[base]
    if kind == "ms":
        return "yes" if row["median_ms"] < value else "no"
    if row.get("device") != "cuda":
        return ""  # the throughput targets are for a GPU
    ok = row["images_per_s"] >= value
    mem = TRAIN_MEMORY_TARGET_GIB.get(key)
    if mem is not None and row.get("peak_gib") is not None:
        ok = ok and row["peak_gib"] < mem
    return "yes" if ok else "no"


def print_table(report: dict) -> None:
    res = report["results"]
    quick = report["settings"]["quick"]
    lines = [f"{'figure':38s} {'median':>10s} {'min':>10s} {'cpu':>10s} {'img/s':>9s} {'peak GiB':>8s}  "
             f"{'target':18s} {'met':3s}  original"]
    for key, row in res.items():
        if key.startswith("check."):
            continue
        if "skipped" in row:
            lines.append(f"{key:38s} skipped: {row['skipped']}")
            continue
        ips = row.get("images_per_s") or row.get("images_per_s_per_worker")
        peak = row.get("peak_gib")
        base = key.rsplit(".", 1)[0] if key.startswith("latency.") else key
        lines.append(f"{key:38s} {row['median_ms']:8.1f}ms {row['min_ms']:8.1f}ms {row['cpu_ms']:8.1f}ms "
                     f"{'' if ips is None else f'{ips:9.1f}':>9s} {'' if peak is None else f'{peak:8.2f}':>8s}  "
                     f"{_target_text(key):18s} {_meets(key, row, quick):3s}  {ORIGINAL.get(base, '')}")
    if any(k.startswith("check.") for k in res):
        lines.append("")
        lines.append("correctness (optimised vs plain float32, same inputs):")
    for key, row in res.items():
        if not key.startswith("check."):
            continue
        shown = {k: round(v, 6) for k, v in row.items() if isinstance(v, float)}
        lines.append(f"  {key:34s} {'PASS' if row['passed'] else 'FAIL ' + ','.join(row['failed'])}  {shown}")
    m = report["machine"]
    print(f"\nmachine: {m.get('cpu')} ({m.get('cpu_count')} cores, {m.get('cpu_bf16')}), "
          f"gpu: {m.get('gpu', 'none')}, torch {m['torch']}, {m['torch_threads']} threads, "
          f"OMP_WAIT_POLICY={m.get('omp_wait_policy')}; "
          f"load average {report['load_before']} -> {report['load_after']}; seconds per section {report['section_s']}")
    print("\n".join(lines))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    p.add_argument("--quick", action="store_true", help="tiny models, tiny batches, few repeats (CI, seconds)")
    p.add_argument("--json", help="write the results to this JSON file")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    p.add_argument("--cpu-threads", type=int, default=2,
                   help="torch threads for the CPU figures (2: the issue's 2-core CPU; 0: torch's default)")
    p.add_argument("--checkpoint", help="ResNet model to time (default: the shipped checkpoint when present, "
                                        "else a random model of the same architecture; 'none': always random)")
    p.add_argument("--dino-weights", default="random", help="DINO ViT weights: random (timing), hub or a file")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats of each latency figure")
    p.add_argument("--train-batch", type=int, default=None, help="default 32 on CUDA, 4 on CPU, 2 with --quick")
    p.add_argument("--train-steps", type=int, default=None, help="timed steps (default 20 on CUDA, 3 on CPU)")
    p.add_argument("--infer-batch", type=int, default=None, help="default 32 on CUDA, 8 on CPU, 2 with --quick")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="leave convolutions in NCHW in the optimised paths")
    p.add_argument("--compile", action="store_true", help="torch.compile the optimised paths (slow to start)")
    p.add_argument("--cpu-bf16-train", action="store_true", help="bf16 autocast in the CPU 'opt' training mode")
    p.add_argument("--data-root", help="image folder for the decode check (default: CelebA dev when present)")
    p.add_argument("--package", default="partdisc_core", help="library to import (e.g. a saved older copy)")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = sorted(set(args.sections) - set(SECTIONS))
    if bad:
        p.error(f"unknown sections {bad}; choose from {SECTIONS}")
    if args.repeats is None:
        args.repeats = 2 if args.quick else 15
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.cpu_threads > 0:
        torch.set_num_threads(args.cpu_threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda was asked for, but CUDA is not available here")
    lib = importlib.import_module(args.package)
    importlib.import_module(f"{args.package}.checkpoint")
    report = {"machine": machine_info(device), "load_before": loadavg(),
              "settings": {"device": str(device), "quick": args.quick, "sections": args.sections,
                           "cpu_threads": torch.get_num_threads(), "channels_last": args.channels_last,
                           "compile": args.compile, "package": args.package,
                           "checkpoint": resnet_checkpoint(lib, args), "dino_weights": args.dino_weights,
                           "repeats": args.repeats},
              "results": {}}
    t0 = time.perf_counter()
    runners = {"latency": run_latency, "train": run_train, "infer": run_infer, "data": run_data, "check": run_check}
    report["section_s"] = {}
    for section in SECTIONS:
        if section in args.sections:
            start = time.perf_counter()
            runners[section](lib, args, report["results"], device)
            report["section_s"][section] = round(time.perf_counter() - start, 2)
    report["load_after"] = loadavg()
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    report["failed_checks"] = [k for k, v in report["results"].items() if k.startswith("check.") and not v["passed"]]
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if report["failed_checks"]:
        print(f"\ncorrectness check FAILED: {report['failed_checks']}", file=sys.stderr)
    return report


if __name__ == "__main__":
    rep = main()
    sys.exit(1 if rep["failed_checks"] else 0)
