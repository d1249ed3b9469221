"""Latency, load and soak of the Gradio demo, all on 127.0.0.1.

    python benchmarks/app_latency.py [--checkpoint PATH | --tiny] [--calls 30] [--load] [--soak-minutes 10]
                                     [--tabs] [--json outputs/benchmarks/app_latency.json]

* latency (always): start-up time of ``python app.py``, request-to-response time of /discover and
  /swap through gradio_client one call at a time (p50 / p95 over ``--calls``, a different image each
  time, so the app's cache never answers), and in-process the model work alone.
* ``--load``: 64 concurrent gradio_client users, 10 rounds, the same and their own inputs mixed on
  both endpoints (``tests/app_server.py: mixed_plan``); every answer is downloaded whole and checked,
  or counted as busy when the queue is full. p50 / p95, server memory and open files before/after.
* ``--soak-minutes N``: N minutes at a steady ``--soak-rate`` calls per second against a server
  whose cache expires after ``--soak-cache-age`` s; every 30 s the server's memory, open files and
  the size of gradio's cache folder are sampled, to show they stay bounded.
* ``--tabs``: the Live, Video, Gallery and Morph tabs (``partdisc_core.demo_tabs``), in-process in
  float32 and, on CPUs with native bf16 (where app.py serves in bf16), in bf16: live frames per
  second over a synthetic 640x480 webcam stream (``testing.moving_face_frames``: a face swaying
  left and right) through one FaceTracker, split into the tracking and the model + overlay work;
  seconds of compute per second of a generated ``--clip-seconds`` clip; 16 faces in the gallery;
  one morph. Through the server, one call at a time: /frame, /video, /gallery (16 faces), /morph.

Without --checkpoint it uses the shipped checkpoint if it exists, else a randomly initialised model
of the default architecture (same speed as a trained one); ``--tiny`` uses the test suite's tiny
model (the app's own cost, not the model's).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from partdisc_core.testing import app_harness

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


harness = app_harness(ROOT)


def stats(times_s: list[float]) -> dict:
    ms = np.asarray(times_s or [0.0]) * 1000.0
    return {"n": len(times_s), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "mean_ms": round(float(ms.mean()), 1),
            "min_ms": round(float(ms.min()), 1), "max_ms": round(float(ms.max()), 1)}


def per_second(times_s: list[float]) -> float:
    """How many of these a second, one after another."""
    return round(len(times_s) / max(sum(times_s), 1e-9), 1)


def make_faces(folder: Path, count: int) -> list[Path]:
    """``count`` slightly different copies of the two public-domain portraits."""
    files = harness.portrait_files(folder / "portraits")
    half = (count + 1) // 2
    a = harness.noisy_copies(files["astronaut"], folder, half, seed=0, prefix="astronaut")
    b = harness.noisy_copies(files["grace_hopper"], folder, count - half, seed=1, prefix="grace_hopper")
    return [p for pair in zip(a, b) for p in pair] + a[len(b):]


def model_work(checkpoint: str, faces: list[Path], threads: int) -> dict:
    """In-process times: model.predict on the 384-px face view, face detection + crop, the whole
    Discover pipeline (decode, crop, model, pictures), and swap_parts."""
    import torch

    from partdisc_core import demo, load_model

    torch.set_num_threads(threads)
    app = demo.PartDiscDemo(load_model(checkpoint))
    app.warm_up()
    loaded = [demo.load_image(p) for p in faces]
    views = [demo.make_view(x.array, crop=True) for x in loaded]
    t_predict, t_crop, t_discover, t_swap = [], [], [], []
    for i, (x, v) in enumerate(zip(loaded, views)):
        start = time.perf_counter()
        app.model.predict(v.image, output_size=None)
        t_predict.append(time.perf_counter() - start)
        start = time.perf_counter()
        demo.make_view(x.array, crop=True)
        t_crop.append(time.perf_counter() - start)
        start = time.perf_counter()
        app.discover(faces[i])
        t_discover.append(time.perf_counter() - start)
        start = time.perf_counter()
        app.model.swap_parts(v.image, views[(i + 1) % len(views)].image, parts=[1, 2])
        t_swap.append(time.perf_counter() - start)
    return {"torch_threads": threads, "model_predict": stats(t_predict), "face_detect_and_crop": stats(t_crop),
            "discover_pipeline": stats(t_discover), "model_swap_parts": stats(t_swap)}


def tab_work(checkpoint: str, folder: Path, threads: int, live_frames: int, clip_seconds: float) -> dict:
    """In-process times of the Live, Video, Gallery and Morph tabs' work (``demo_tabs``), for each
    inference dtype app.py may serve in on this CPU (float32; bf16 where it is native)."""
    import torch

    from partdisc_core import demo_tabs, load_model
    from partdisc_core.media import write_mp4
    from partdisc_core.model import cpu_has_native_bf16
    from partdisc_core.result_files import ResultFiles
    from partdisc_core.testing import moving_face_frames
    from partdisc_core.tracking import FaceTracker

    torch.set_num_threads(threads)
    model = load_model(checkpoint)
    folder.mkdir(parents=True, exist_ok=True)
    frames = moving_face_frames(live_frames + 5)
    clip = write_mp4(moving_face_frames(round(25 * clip_seconds)), folder / "clip.mp4", fps=25)
    dtypes = {"fp32": None, **({"bf16": torch.bfloat16} if cpu_has_native_bf16() else {})}
    gallery_faces = [make_faces(folder / f"gallery-{name}", demo_tabs.GALLERY_MAX) for name in dtypes]
    pairs = make_faces(folder / "morph", 2 * 3 * len(dtypes))  # distinct files: the decode cache never answers
    results = ResultFiles(folder / "results")
    out: dict = {"torch_threads": threads, "live_frame_size": [int(frames.shape[2]), int(frames.shape[1])],
                 "clip_seconds": clip_seconds}
    try:
        for (name, dtype), faces in zip(dtypes.items(), gallery_faces):
            model.inference_dtype = dtype
            tracker = FaceTracker()
            for f in frames[:5]:  # warm-up; the tracker has found the face
                demo_tabs.live_frame(model, f, tracker)
            t_live, t_track, t_model, t_jpeg, found, crops = [], [], [], [], 0, []
            for f in frames[5:]:
                start = time.perf_counter()
                r = demo_tabs.live_frame(model, f, tracker)
                t_live.append(time.perf_counter() - start)
                found += bool(r.found)
                start = time.perf_counter()
                demo_tabs.write_jpeg(results.request(), "overlay", r.overlay)
                t_jpeg.append(time.perf_counter() - start)
            tracker = FaceTracker()
            for f in frames[5:]:
                start = time.perf_counter()
                crops.append(tracker.update(f, demo_tabs.LIVE_SIDE).image)
                t_track.append(time.perf_counter() - start)
            for c in crops:  # the crop as given: model + overlay alone
                start = time.perf_counter()
                demo_tabs.live_frame(model, c, None, crop=False)
                t_model.append(time.perf_counter() - start)
            v = demo_tabs.video(model, clip, results.request())
            start = time.perf_counter()
            g = demo_tabs.gallery(model, faces, results.request())
            t_gallery = time.perf_counter() - start
            t_morph = []
            for _ in range(3):
                a, b, *pairs = pairs
                start = time.perf_counter()
                demo_tabs.morph(model, a, b, results.request(), parts=[1, 2], t=0.5)
                t_morph.append(time.perf_counter() - start)
            out[name] = {
                "live_fps": per_second(t_live), "live_model_overlay_fps": per_second(t_model),
                "live_frame": stats(t_live), "live_tracking": stats(t_track), "live_model_overlay": stats(t_model),
                "live_jpeg": stats(t_jpeg), "live_face_found": f"{found}/{len(t_live)}",
                "video_frames": v.frames, "video_seconds": round(v.seconds, 2),
                "video_s_per_clip_s": round(v.seconds / v.clip_seconds, 2),
                "gallery_faces": len(g.names), "gallery_s": round(t_gallery, 2), "morph": stats(t_morph)}
    finally:
        model.inference_dtype = None
        results.close()
    return out


def client_tabs(server, folder: Path, calls: int) -> dict:
    """The tabs' endpoints through gradio_client, one call at a time (uploads and downloads
    included): ``calls`` x /frame and /morph, one /video of the tab benchmark's clip, one /gallery of
    16 faces; each on files the app has not seen."""
    from gradio_client import Client, handle_file

    from partdisc_core.demo_tabs import GALLERY_MAX

    frames = make_faces(folder / "frames", calls + 1)
    pairs = make_faces(folder / "pairs", 2 * calls + 2)
    faces = make_faces(folder / "gallery", GALLERY_MAX)
    client = Client(server.url, verbose=False, download_files=str(folder / "downloads"))
    try:
        client.predict(handle_file(str(frames[-1])), True, 0.5, api_name="/frame")  # warm-up
        client.predict(handle_file(str(pairs[-1])), handle_file(str(pairs[-2])), [1, 2], 0.5, True,
                       api_name="/morph")
        t_frame, t_morph = [], []
        for i in range(calls):
            start = time.perf_counter()
            client.predict(handle_file(str(frames[i])), True, 0.5, api_name="/frame")
            t_frame.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.predict(handle_file(str(pairs[2 * i])), handle_file(str(pairs[2 * i + 1])), [1, 2], 0.5, True,
                           api_name="/morph")
            t_morph.append(time.perf_counter() - start)
        start = time.perf_counter()
        client.predict(handle_file(str(folder / "clip.mp4")), True, 0.5, api_name="/video")
        t_video = time.perf_counter() - start
        start = time.perf_counter()
        client.predict([handle_file(str(f)) for f in faces], True, 0.5, api_name="/gallery")
        t_gallery = time.perf_counter() - start
    finally:
        client.close()
    return {"client_frame": stats(t_frame), "client_frame_fps": per_second(t_frame),
            "client_morph": stats(t_morph), "client_video_s": round(t_video, 2),
            "client_gallery_16_s": round(t_gallery, 2)}


def latency(server, faces: list[Path], calls: int, tmp: Path) -> dict:
    from gradio_client import Client, handle_file

    client = Client(server.url, verbose=False, download_files=str(tmp / "downloads"))
    try:
        for i in range(2):  # warm-up
            client.predict(handle_file(str(faces[-1 - i])), True, True, 0.5, api_name="/discover")
            client.predict(handle_file(str(faces[-3])), handle_file(str(faces[-4])), [1, 2], True, api_name="/swap")
        t_discover, t_swap = [], []
        for i in range(calls):
            start = time.perf_counter()
            client.predict(handle_file(str(faces[i])), True, True, 0.5, api_name="/discover")
            t_discover.append(time.perf_counter() - start)
        for i in range(calls):
            a, b = faces[calls + 2 * i], faces[calls + 2 * i + 1]  # never seen before: no cache
            start = time.perf_counter()
            client.predict(handle_file(str(a)), handle_file(str(b)), [1, 2], True, api_name="/swap")
            t_swap.append(time.perf_counter() - start)
    finally:
        client.close()
    return {"client_discover": stats(t_discover), "client_swap": stats(t_swap)}


def server_state(server) -> dict:
    cache = Path(server.env["GRADIO_TEMP_DIR"])
    size, files, folders = harness.folder_size(cache)
    return {"rss_mb": round(server.rss_mb() or 0.0, 1), "open_fds": server.fd_count(),
            "cache_mb": round(size / 2**20, 2), "cache_files": files, "cache_folders": folders}


def load(server, photos: dict, distinct: list[Path], clients: int, rounds: int) -> dict:
    plan = harness.mixed_plan(server.url, photos, distinct)
    before = server_state(server)

    def progress(r, result):
        s = result.summary()
        print(f"  round {r + 1}/{rounds}: answered {s['answered']}, busy {s['busy']}, failed {s['failed']}, "
              f"hung {s['hung']}; p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms", flush=True)

    result = harness.run_load(server.url, plan, clients=clients, rounds=rounds, on_round=progress)
    return {**result.summary(), "before": before, "after": server_state(server)}


def soak(server, photos: dict, distinct: list[Path], minutes: float, rate: float, users_count: int = 16,
         sample_s: float = 30.0) -> dict:
    """Calls at a steady ``rate`` per second for ``minutes``, each by whichever of ``users_count``
    users is free (a call finds none free within 5 s: that call is skipped and counted); the
    server's state sampled every ``sample_s`` s."""
    import queue

    plan = harness.mixed_plan(server.url, photos, distinct)
    result = harness.LoadResult(users_count, 0)
    samples = [{"t_s": 0.0, **server_state(server)}]
    free: queue.Queue = queue.Queue()
    skipped = 0
    with harness.Users(server.url, users_count) as users:
        for i in range(users_count):
            free.put(i)

        def one(user: int, n: int) -> None:
            try:
                users.call(user, plan(n // 64, n % 64), result, f"call {n}")
            finally:
                free.put(user)

        begin = time.monotonic()
        end, next_sample, n, threads = begin + minutes * 60, begin + sample_s, 0, []
        while time.monotonic() < end:
            due = begin + n / rate
            if time.monotonic() < due:
                time.sleep(min(due - time.monotonic(), 1.0))
            else:
                try:
                    user = free.get(timeout=5)
                except queue.Empty:
                    skipped += 1
                else:
                    threads.append(threading.Thread(target=one, args=(user, n), daemon=True))
                    threads[-1].start()
                n += 1
            if time.monotonic() >= next_sample:
                samples.append({"t_s": round(time.monotonic() - begin, 1), **server_state(server)})
                print(f"  {samples[-1]}", flush=True)
                next_sample += sample_s
        for t in threads:
            t.join(timeout=310)
        result.wall_s = time.monotonic() - begin
    samples.append({"t_s": round(result.wall_s, 1), **server_state(server)})
    s = result.summary()
    return {"minutes": minutes, "rate_per_s": rate, "users": users_count, "scheduled": n, "skipped_no_free_user": skipped,
            **{k: s[k] for k in ("calls", "answered", "busy", "hung", "failed", "p50_ms", "p95_ms", "max_ms",
                                 "first_failures")},
            "samples": samples,
            "rss_mb_first_last_max": [samples[0]["rss_mb"], samples[-1]["rss_mb"], max(x["rss_mb"] for x in samples)],
            "cache_mb_max": max(x["cache_mb"] for x in samples),
            "cache_files_max": max(x["cache_files"] for x in samples),
            "cache_folders_max": max(x["cache_folders"] for x in samples),
            "open_fds_first_last_max": [samples[0]["open_fds"], samples[-1]["open_fds"],
                                        max(x["open_fds"] or 0 for x in samples)]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--tiny", action="store_true", help="the test suite's tiny random model")
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--load", action="store_true", help="64 concurrent users, 10 rounds")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--soak-minutes", type=float, default=0.0)
    p.add_argument("--soak-rate", type=float, default=1.0, help="calls per second during the soak")
    p.add_argument("--soak-cache-age", type=float, default=120.0, help="the soak server's --cache-age")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--tabs", action="store_true", help="the Live, Video, Gallery and Morph figures")
    p.add_argument("--live-frames", type=int, default=60, help="frames of the synthetic webcam stream (--tabs)")
    p.add_argument("--clip-seconds", type=float, default=5.0, help="length of the generated clip (--tabs)")
    p.add_argument("--json", default=str(ROOT / "outputs" / "benchmarks" / "app_latency.json"))
    args = p.parse_args(argv)

    from partdisc_core import DEFAULT_CHECKPOINT, PartDiscConfig, PartDiscModel, save_model

    tmp = Path(tempfile.mkdtemp(prefix="partdisc-bench-"))
    checkpoint, label = args.checkpoint, args.checkpoint
    if args.tiny:
        checkpoint, label = str(harness.save_tiny_checkpoint(tmp / "tiny")), "tiny random test model (K=4)"
    elif checkpoint is None and DEFAULT_CHECKPOINT.exists():
        checkpoint, label = str(DEFAULT_CHECKPOINT), f"checkpoints/{DEFAULT_CHECKPOINT.name}"
    elif checkpoint is None:
        import torch

        torch.manual_seed(0)
        save_model(PartDiscModel(PartDiscConfig()).eval(), tmp / "random")
        checkpoint, label = str(tmp / "random"), "random weights, default PartDiscConfig (K=8)"
    faces = make_faces(tmp, 3 * args.calls + 4)
    photos = harness.portrait_files(tmp / "portraits")
    threads = max(1, (os.cpu_count() or 1) // 2)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    result = {"checkpoint": label, "cpu": cpu, "cpu_count": os.cpu_count(), "machine": platform.machine(),
              "python": platform.python_version(),
              "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}

    def serve(name: str, *extra: str):
        env = harness.server_env(tmp / name)
        env.pop("PARTDISC_THREADS")  # the app's own default
        return harness.AppProcess(checkpoint, log_path=tmp / f"{name}.log", env=env, extra_args=list(extra))

    if args.tabs:  # in-process first: it also writes the clip the server is sent
        print(f"tabs: {args.live_frames} live frames, a {args.clip_seconds:g}-s clip, 16 faces, morphs", flush=True)
        result["tabs"] = tab_work(checkpoint, tmp / "tabs", threads, args.live_frames, args.clip_seconds)
    if not args.skip_latency or args.load or args.tabs:
        with serve("app") as server:
            result["startup_s"] = round(server.startup_s, 2)
            if not args.skip_latency:
                result.update(latency(server, faces, args.calls, tmp))
                result["server_rss_mb"] = server.rss_mb()
            if args.tabs:
                result["tabs"].update(client_tabs(server, tmp / "tabs", min(args.calls, 10)))
            if args.load:
                print(f"load: {args.clients} users x {args.rounds} rounds", flush=True)
                result["load"] = load(server, photos, faces[:64], args.clients, args.rounds)
    if args.soak_minutes > 0:
        print(f"soak: {args.soak_minutes} min at {args.soak_rate}/s, cache age {args.soak_cache_age} s", flush=True)
        with serve("soak", "--cache-age", str(args.soak_cache_age)) as server:
            result["soak"] = soak(server, photos, faces[:64], args.soak_minutes, args.soak_rate)
    if not args.skip_latency:
        result["in_process"] = model_work(checkpoint, faces[:args.calls], threads)
    result["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"checkpoint: {label}; {cpu}, {os.cpu_count()} CPUs")
    for name in ("client_discover", "client_swap"):
        if name in result:
            s = result[name]
            print(f"{name:>24}: p50 {s['p50_ms']:7.1f} ms   p95 {s['p95_ms']:7.1f} ms   (n={s['n']})")
    for name, s in result.get("in_process", {}).items():
        if isinstance(s, dict):
            print(f"{name:>24}: p50 {s['p50_ms']:7.1f} ms   p95 {s['p95_ms']:7.1f} ms")
    if "tabs" in result:
        t = result["tabs"]
        for name in ("fp32", "bf16"):
            if name in t:
                r = t[name]
                print(f"tabs {name}: live {r['live_fps']} frames/s (model + overlay alone "
                      f"{r['live_model_overlay_fps']}, tracking p50 {r['live_tracking']['p50_ms']} ms, face found "
                      f"{r['live_face_found']}); video "
                      f"{r['video_s_per_clip_s']} s per clip s ({r['video_frames']} frames in {r['video_seconds']} s); "
                      f"gallery of {r['gallery_faces']} {r['gallery_s']} s; morph p50 {r['morph']['p50_ms']} ms")
        if "client_frame" in t:
            print(f"tabs via the server: /frame p50 {t['client_frame']['p50_ms']} ms ({t['client_frame_fps']}/s one at "
                  f"a time), /morph p50 {t['client_morph']['p50_ms']} ms, /video {t['client_video_s']} s, "
                  f"/gallery (16) {t['client_gallery_16_s']} s")
    if "load" in result:
        s = result["load"]
        print(f"load: {s['calls']} calls, answered {s['answered']}, busy {s['busy']}, failed {s['failed']}, "
              f"hung {s['hung']}; p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms; RSS {s['before']['rss_mb']} -> "
              f"{s['after']['rss_mb']} MiB")
    if "soak" in result:
        s = result["soak"]
        print(f"soak: {s['calls']} calls, answered {s['answered']}, busy {s['busy']}, failed {s['failed']}, "
              f"hung {s['hung']}; RSS first/last/max {s['rss_mb_first_last_max']} MiB; cache max {s['cache_mb_max']} "
              f"MB / {s['cache_files_max']} files / {s['cache_folders_max']} folders; fds {s['open_fds_first_last_max']}")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
