"""Latency of the Gradio demo: start-up time of `python app.py`, and request-to-response time of
/discover and /swap through gradio_client (p50 / p95 over N calls), plus the in-process cost of the
model work alone (what the paper's test-time path costs per face on this CPU).

    python benchmarks/app_latency.py [--checkpoint PATH] [--calls 30] [--json outputs/benchmarks/app_latency.json]

Without --checkpoint it uses the shipped checkpoint if it exists, else a randomly initialised model
of the default architecture (same speed as a trained one). Every call sends a different image, so
the app's small result cache never answers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def stats(times_s: list[float]) -> dict:
    ms = np.asarray(times_s) * 1000.0
    return {"n": int(ms.size), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "mean_ms": round(float(ms.mean()), 1),
            "min_ms": round(float(ms.min()), 1), "max_ms": round(float(ms.max()), 1)}


def make_faces(folder: Path, count: int) -> list[Path]:
    """`count` slightly different copies of the two public-domain portraits."""
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as im:
        bases = [skimage.data.astronaut().astype(np.int16), np.asarray(im.convert("RGB"), dtype=np.int16)]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        img = np.clip(bases[i % 2] + rng.integers(-5, 6, bases[i % 2].shape), 0, 255).astype(np.uint8)
        paths.append(folder / f"face_{i:03d}.jpg")
        Image.fromarray(img).save(paths[-1], quality=92)
    return paths


def model_work(checkpoint: str, faces: list[Path], threads: int) -> dict:
    """In-process times: model.predict on the 384-px face view, face detection + crop, the whole
    Discover pipeline (decode, crop, model, pictures), and swap_parts."""
    import torch

    from partdisc_core import load_model
    from partdisc_core import demo

    torch.set_num_threads(threads)
    model = load_model(checkpoint)
    demo.warm_up(model)
    loaded = [demo.load_image(p) for p in faces]
    views = [demo.make_view(x.array, crop=True) for x in loaded]
    t_predict, t_crop, t_discover, t_swap = [], [], [], []
    for i, (x, v) in enumerate(zip(loaded, views)):
        start = time.perf_counter()
        model.predict(v.image, output_size=None)
        t_predict.append(time.perf_counter() - start)
        start = time.perf_counter()
        demo.make_view(x.array, crop=True)
        t_crop.append(time.perf_counter() - start)
        start = time.perf_counter()
        demo.discover(model, faces[i])
        t_discover.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.swap_parts(v.image, views[(i + 1) % len(views)].image, parts=[1, 2])
        t_swap.append(time.perf_counter() - start)
    return {"torch_threads": threads, "model_predict": stats(t_predict), "face_detect_and_crop": stats(t_crop),
            "discover_pipeline": stats(t_discover), "model_swap_parts": stats(t_swap)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--json", default=str(ROOT / "outputs" / "benchmarks" / "app_latency.json"))
    args = p.parse_args(argv)

    from gradio_client import Client, handle_file

    from partdisc_core import DEFAULT_CHECKPOINT, PartDiscConfig, PartDiscModel, save_model
    from partdisc_core.demo import AppProcess

    tmp = Path(tempfile.mkdtemp(prefix="partdisc-bench-"))
    checkpoint, label = args.checkpoint, args.checkpoint
    if checkpoint is None and DEFAULT_CHECKPOINT.exists():
        checkpoint, label = str(DEFAULT_CHECKPOINT), "checkpoints/faces-k8"
    if checkpoint is None:
        import torch

        torch.manual_seed(0)
        save_model(PartDiscModel(PartDiscConfig()).eval(), tmp / "random")
        checkpoint, label = str(tmp / "random"), "random weights, default PartDiscConfig (K=8)"
    faces = make_faces(tmp, 3 * args.calls + 4)
    threads = max(1, (os.cpu_count() or 1) // 2)

    result = {"checkpoint": label, "calls": args.calls, "cpu_count": os.cpu_count(),
              "machine": platform.machine(), "python": platform.python_version(),
              "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    server = AppProcess(checkpoint, log_path=tmp / "app.log",
                        env={"GRADIO_TEMP_DIR": str(tmp / "gradio"), "PARTDISC_EXAMPLES_DIR": str(tmp / "ex")})
    with server:
        result["startup_s"] = round(server.startup_s, 2)
        client = Client(server.url, verbose=False, download_files=str(tmp / "downloads"))
        for i in range(2):  # warm-up
            client.predict(handle_file(str(faces[-1 - i])), True, True, 0.5, api_name="/discover")
            client.predict(handle_file(str(faces[-3])), handle_file(str(faces[-4])), [1, 2], True, api_name="/swap")
        t_discover, t_swap = [], []
        for i in range(args.calls):
            start = time.perf_counter()
            client.predict(handle_file(str(faces[i])), True, True, 0.5, api_name="/discover")
            t_discover.append(time.perf_counter() - start)
        for i in range(args.calls):
            start = time.perf_counter()
            a, b = faces[args.calls + 2 * i], faces[args.calls + 2 * i + 1]  # never seen before: no cache
            client.predict(handle_file(str(a)), handle_file(str(b)), [1, 2], True, api_name="/swap")
            t_swap.append(time.perf_counter() - start)
        result["server_rss_mb"] = server.rss_mb()
    result["client_discover"] = stats(t_discover)
    result["client_swap"] = stats(t_swap)
    result["in_process"] = model_work(checkpoint, faces[:args.calls], threads)
    result["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"checkpoint: {label}; {os.cpu_count()} CPUs; start-up {result['startup_s']} s")
    for name in ("client_discover", "client_swap"):
        s = result[name]
        print(f"{name:>24}: p50 {s['p50_ms']:7.1f} ms   p95 {s['p95_ms']:7.1f} ms   (n={s['n']})")
    for name, s in result["in_process"].items():
        if isinstance(s, dict):
            print(f"{name:>24}: p50 {s['p50_ms']:7.1f} ms   p95 {s['p95_ms']:7.1f} ms")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
