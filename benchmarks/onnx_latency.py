#!/usr/bin/env python
"""onnxruntime against PyTorch on the CPU: latency of the exported graphs (partdisc_core.onnx).

Rows, per batch size B (real photos: the two public-domain portraits, repeated to B):

- ``maps``: the part maps path. PyTorch: ``model.part_maps(model.normalize(x), return_attention=True)``
  (the tensor path of ``predict``: V at image size, attention, G); onnxruntime: ``model.onnx``
  (the same outputs plus F, which it computes anyway).
- ``render``: the reconstruction from F and G. PyTorch: ``model.render(F, G)``; onnxruntime:
  ``model.render.onnx``.

Both run in float32 with the same number of intra-op threads (``--threads``, default 1). Timing
(``bench.time_calls``): warm-up calls, then the median / min wall time and the median CPU time of
the process per call; with one thread ``cpu_ms`` is what a call costs on an idle core, however busy
the machine. The same run checks that both give the same part maps (max abs diff).

    python benchmarks/onnx_latency.py                                  # shipped model, B = 1 and 8
    python benchmarks/onnx_latency.py --threads 2 --json outputs/benchmarks/onnx_latency.json
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import loadavg, machine_info, time_calls  # noqa: E402  (benchmarks/bench.py, this script's folder)
from partdisc_core import load_model  # noqa: E402
from partdisc_core import onnx as pd_onnx  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--checkpoint", help="checkpoint folder, .safetensors file or hub id (default: the shipped model)")
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default 1,8)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for both runtimes (default 1)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    try:
        args.batch = [int(b) for b in args.batch.split(",") if b.strip()]
    except ValueError:
        p.error(f"--batch must be comma-separated integers, got {args.batch!r}")
    if not args.batch or min(args.batch) < 1 or args.threads < 1 or args.repeats < 1 or args.warmup < 0:
        p.error("batch sizes, --threads and --repeats must be >= 1, --warmup >= 0")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    model = load_model(args.checkpoint)
    report: dict = {"machine": machine_info(cpu), "load_before": loadavg(),
                    "settings": {"checkpoint": args.checkpoint or "shipped", "threads": args.threads,
                                 "batch": args.batch, "warmup": args.warmup, "repeats": args.repeats},
                    "results": {}}
    import onnxruntime

    report["machine"]["onnxruntime"] = onnxruntime.__version__
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = pd_onnx.export_onnx(model, Path(tmp) / "model.onnx")
        report["export_s"] = round(time.perf_counter() - t0, 2)
        maps_sess = pd_onnx.session(paths.maps, args.threads)
        render_sess = pd_onnx.session(paths.render, args.threads)
        photos = pd_onnx.prepare(model, pd_onnx.example_photos(tmp))
    for b in args.batch:
        images = np.ascontiguousarray(np.resize(photos, (b, *photos.shape[1:])))  # the photos, repeated
        x = model.normalize(torch.from_numpy(images))
        feats, parts = model.encode(torch.from_numpy(images))
        maps_feed = {"images": images}
        render_feed = {"features": feats.numpy(), "parts": parts.numpy()}
        with torch.inference_mode():
            rows = {
                "maps.torch": lambda: model.part_maps(x, None, return_attention=True),
                "maps.onnxruntime": lambda: maps_sess.run(None, maps_feed),
                "render.torch": lambda: model.render(feats, parts),
                "render.onnxruntime": lambda: render_sess.run(None, render_feed),
            }
            for name, fn in rows.items():
                report["results"][f"b{b}.{name}"] = time_calls(fn, cpu, args.warmup, args.repeats)
            ref = model.part_maps(x, None, return_attention=True)[0].numpy()
        out = maps_sess.run(["part_maps"], maps_feed)[0]
        report["results"][f"b{b}.maps.max_abs_diff"] = float(np.abs(out - ref).max())
    report["load_after"] = loadavg()

    res = report["results"]
    print(f"CPU: {report['machine'].get('cpu')}, {args.threads} thread(s); torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}; load {report['load_before']} -> {report['load_after']}")
    print(f"{'row':<10} {'B':>3} {'torch ms':>10} {'ort ms':>10} {'torch cpu':>10} {'ort cpu':>10} {'speed-up':>9}")
    for b in args.batch:
        for row in ("maps", "render"):
            t, o = res[f"b{b}.{row}.torch"], res[f"b{b}.{row}.onnxruntime"]
            print(f"{row:<10} {b:>3} {t['median_ms']:>10.2f} {o['median_ms']:>10.2f} {t['cpu_ms']:>10.2f} "
                  f"{o['cpu_ms']:>10.2f} {t['cpu_ms'] / max(o['cpu_ms'], 1e-9):>8.2f}x")
        print(f"{'':<10} {b:>3} part maps max abs diff {res[f'b{b}.maps.max_abs_diff']:.2e}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
