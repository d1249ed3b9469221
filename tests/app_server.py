"""The demo app in a subprocess, for the app tests and ``benchmarks/app_latency.py``.

* :class:`AppProcess` starts ``python app.py`` on a free loopback port and reports its memory and
  open file descriptors.
* :func:`tiny_app_server` serves a tiny random checkpoint, so tests do not need the trained one.
* :func:`run_load` plays many concurrent API users against a server, in rounds bounded in count and
  time, and checks every answer (each output file is downloaded whole and decoded).

Everything talks to 127.0.0.1 only.
"""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
CHROMIUM = os.environ.get("PARTDISC_CHROMIUM", "/usr/bin/chromium")
"""The browser the browser tests and ``scripts/screenshot_tabs.py`` drive (Debian's; never downloaded)."""
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run",
                 # a fake camera that needs no permission prompt (it films the file given by the tests)
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
K = 4
"""Parts of the tiny test model."""
TINY_SERVER_MODEL = dict(num_parts=K)
"""The app tests' model: the tests' tiny configuration (``partdisc_core.testing``) with K parts."""


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class AppProcess:
    """``python app.py --checkpoint ... --port ...`` in a subprocess on a free loopback port::

        with AppProcess("runs/tiny", log_path="app.log") as server:
            client = gradio_client.Client(server.url)

    ``startup_s`` is the time from spawning the process to its first HTTP 200; ``timeout`` is
    generous because importing torch and gradio takes minutes on a busy CPU."""

    def __init__(self, checkpoint: str | Path | None = None, app_path: str | Path | None = None,
                 port: int | None = None, host: str = LOOPBACK, env: dict[str, str] | None = None,
                 log_path: str | Path | None = None, timeout: float = 600.0, extra_args: Sequence[str] = ()):
        self.app_path = Path(app_path) if app_path else ROOT / "app.py"
        self.host, self.port = host, port or free_port(host)
        self.checkpoint, self.env, self.timeout = checkpoint, env, timeout
        self.log_path = Path(log_path) if log_path else None
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def log_text(self) -> str:
        if self.log_path and self.log_path.is_file():
            return self.log_path.read_text(errors="replace")
        return ""

    def start(self) -> "AppProcess":
        import urllib.request

        cmd = [sys.executable, str(self.app_path), "--port", str(self.port), "--host", self.host]
        if self.checkpoint is not None:
            cmd += ["--checkpoint", str(self.checkpoint)]
        cmd += self.extra_args
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        env.update(self.env or {})
        out = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL
        begin = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=str(self.app_path.parent), env=env, stdout=out,
                                     stderr=subprocess.STDOUT)
        if self.log_path:
            out.close()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with status {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() - begin > self.timeout:
                self.stop()
                raise TimeoutError(f"app.py did not answer within {self.timeout:.0f} s:\n{self.log_text()[-3000:]}")
            time.sleep(0.1)
        self.startup_s = time.perf_counter() - begin
        return self

    def rss_mb(self) -> float | None:
        """Resident memory of the server process in MiB (Linux /proc; None elsewhere)."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        except (OSError, ValueError):
            return None
        return None

    def fd_count(self) -> int | None:
        """Open file descriptors of the server process (Linux /proc; None elsewhere)."""
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def __enter__(self) -> "AppProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def save_tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised tiny model (K = 4) saved to ``folder``."""
    import torch

    from partdisc_core import PartDiscModel, save_model
    from partdisc_core.testing import tiny_config

    torch.manual_seed(seed)
    return save_model(PartDiscModel(tiny_config(**TINY_SERVER_MODEL)).eval(), folder)


def server_env(tmp: Path, **extra: str) -> dict[str, str]:
    """One torch thread, and gradio's files and the examples under ``tmp``."""
    return {"PARTDISC_THREADS": "1", "GRADIO_TEMP_DIR": str(tmp / "gradio"),
            "PARTDISC_EXAMPLES_DIR": str(tmp / "examples"), **extra}


@contextmanager
def tiny_app_server(tmp: Path, extra_args: Sequence[str] = (), **env: str):
    """Start ``app.py`` on a free port with a tiny random K = 4 model saved under ``tmp``."""
    save_tiny_checkpoint(tmp / "tiny")
    with AppProcess(tmp / "tiny", log_path=tmp / "app.log", env=server_env(tmp, **env),
                    extra_args=extra_args) as proc:
        yield proc


def encode_clip(frames, path: Path, fps: int, container: str, codec: str) -> Path:
    """Frames (N, H, W, 3) uint8 encoded with PyAV as ``codec`` in ``container`` (yuv420p), e.g. a raw
    Y4M for Chromium's fake camera or a VP8 WebM as browsers record them."""
    import av

    with av.open(str(path), mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


def portrait_files(folder: Path) -> dict[str, Path]:
    """The public-domain portraits of :func:`partdisc_core.inputs.portrait` as files: astronaut as
    PNG, Grace Hopper as JPEG (so both decoders are exercised)."""
    from PIL import Image

    from partdisc_core.inputs import portrait

    folder.mkdir(parents=True, exist_ok=True)
    out = {"astronaut": folder / "astronaut.png", "grace_hopper": folder / "grace_hopper.jpg"}
    Image.fromarray(portrait("astronaut")).save(out["astronaut"])
    Image.fromarray(portrait("grace_hopper")).save(out["grace_hopper"], quality=92)
    return out


def noisy_copies(image: Path, folder: Path, count: int, seed: int = 0, prefix: str = "face") -> list[Path]:
    """``count`` PNG copies of ``image`` with a little independent noise each: distinct files whose
    results the app cannot have cached."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    base = np.asarray(Image.open(image).convert("RGB"), dtype=np.int16)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        noisy = np.clip(base + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)
        paths.append(folder / f"{prefix}_{i:03d}.png")
        Image.fromarray(noisy).save(paths[-1])
    return paths


# --- load ----------------------------------------------------------------------------------------
@dataclass
class Call:
    """One API call of a load run: the endpoint, its arguments (files as local paths), and a check
    of the decoded answer that raises AssertionError with a reason."""

    endpoint: str
    args: tuple
    check: Callable[[list[Any]], None] = lambda outputs: None
    label: str = ""


@dataclass
class LoadResult:
    clients: int
    rounds: int
    latencies_s: list[float] = field(default_factory=list)
    answered: int = 0
    busy: int = 0
    hung: int = 0
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    by_label: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def calls(self) -> int:
        return self.answered + self.busy + self.hung + len(self.failures)

    def add(self, outcome: str, label: str, seconds: float, reason: str = "") -> None:
        """Count one call: outcome "answered", "busy", "hung" or "failed" (with its ``reason``)."""
        with self.lock:
            if outcome == "answered":
                self.answered += 1
                self.latencies_s.append(seconds)
                self.by_label[label] = self.by_label.get(label, 0) + 1
            elif outcome == "busy":
                self.busy += 1
            elif outcome == "hung":
                self.hung += 1
            else:
                self.failures.append(reason[:400])

    def summary(self) -> dict:
        ms = np.asarray(self.latencies_s or [0.0]) * 1000.0
        return {"clients": self.clients, "rounds": self.rounds, "calls": self.calls, "answered": self.answered,
                "busy": self.busy, "hung": self.hung, "failed": len(self.failures),
                "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
                "max_ms": round(float(ms.max()), 1), "wall_s": round(self.wall_s, 1),
                "answered_by_kind": dict(self.by_label), "first_failures": self.failures[:5]}


def fetch_outputs(http, base_url: str, outputs: Sequence[Any]) -> list[Any]:
    """Download every file output of a call whole (the body must match its Content-Length, which
    httpx checks) and decode it with PIL; other outputs pass through."""
    from PIL import Image

    decoded = []
    for out in outputs:
        if isinstance(out, dict) and (out.get("url") or out.get("path")):
            url = out.get("url") or f"gradio_api/file={out['path']}"
            if not url.startswith("http"):
                url = base_url.rstrip("/") + "/" + url.lstrip("/")
            resp = http.get(url)
            resp.raise_for_status()
            declared = resp.headers.get("content-length")
            if declared is not None and int(declared) != len(resp.content):
                raise AssertionError(f"{url}: {len(resp.content)} bytes of {declared}")
            with Image.open(io.BytesIO(resp.content)) as im:
                decoded.append(np.asarray(im.convert("RGB")))
        else:
            decoded.append(out)
    return decoded


class Users:
    """``count`` gradio_client users of one server (each its own session) and one HTTP client to
    download answers; close them when done (``with Users(url, 8) as users:``)."""

    def __init__(self, url: str, count: int, timeout: float = 300.0):
        import httpx
        from gradio_client import Client

        self.url, self.timeout = url, timeout
        # gradio_client's own requests (uploads, the call) wait 5 s by default: too short for a full
        # queue on a small CPU; a whole call is bounded by ``timeout`` instead.
        self.clients = [Client(url, verbose=False, download_files=False, httpx_kwargs={"timeout": timeout})
                        for _ in range(count)]
        self.http = httpx.Client(timeout=timeout)

    def call(self, i: int, call: Call, result: LoadResult, where: str = "") -> None:
        """User ``i`` makes ``call``, checks the answer, and counts the outcome in ``result``."""
        from gradio_client import handle_file
        from gradio_client.utils import QueueError

        args = [handle_file(str(a)) if isinstance(a, Path) else a for a in call.args]
        start = time.perf_counter()
        job = self.clients[i].submit(*args, api_name=call.endpoint)
        try:
            outputs = job.result(timeout=self.timeout)
            call.check(fetch_outputs(self.http, self.url, outputs if isinstance(outputs, (list, tuple)) else [outputs]))
        except TimeoutError:
            job.cancel()
            result.add("hung", call.label, 0.0)
        except QueueError:
            result.add("busy", call.label, 0.0)
        except Exception as exc:  # every other outcome is a failure, reported with its reason
            result.add("failed", call.label, 0.0, f"{where} {call.endpoint} {call.label}: {type(exc).__name__}: {exc}")
        else:
            result.add("answered", call.label, time.perf_counter() - start)

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.http.close()

    def __enter__(self) -> "Users":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_load(url: str, plan: Callable[[int, int], Call], clients: int = 64, rounds: int = 10,
             call_timeout: float = 300.0, deadline_s: float = 1800.0,
             on_round: Callable[[int, LoadResult], None] | None = None) -> LoadResult:
    """``clients`` gradio_client users call the app at once, ``rounds`` times; ``plan(round,
    client)`` says what each call sends and how its answer is checked. A call either answers and
    passes its check, or is refused as busy (the queue is full: gradio_client's QueueError), or is
    a failure; a call without an answer after ``call_timeout`` s counts as hung. Rounds stop
    after ``deadline_s`` s in all."""
    result = LoadResult(clients, 0)
    begin = time.perf_counter()
    try:
        with Users(url, clients, call_timeout) as users, ThreadPoolExecutor(clients) as pool:
            for r in range(rounds):
                if time.perf_counter() - begin > deadline_s:
                    break
                list(pool.map(lambda i: users.call(i, plan(r, i), result, f"round {r} client {i}"), range(clients)))
                result.rounds = r + 1
                if on_round is not None:
                    on_round(r, result)
    finally:
        result.wall_s = time.perf_counter() - begin
    return result


def same_as(reference: Sequence[Any], tolerance: float = 1.0) -> Callable[[list[Any]], None]:
    """A check that an answer equals ``reference`` (a decoded answer to the same call): every
    picture within ``tolerance`` grey levels on average, every text the same before its ";" (the
    timings after it differ)."""
    def check(outputs: list[Any]) -> None:
        assert len(outputs) == len(reference), (len(outputs), len(reference))
        for got, want in zip(outputs, reference):
            if isinstance(want, np.ndarray):
                assert got.shape == want.shape, (got.shape, want.shape)
                assert np.abs(got.astype(np.int16) - want).mean() < tolerance
            else:
                assert str(got).split(";")[0] == str(want).split(";")[0], (got, want)
    return check


def answer(url: str, call: Call) -> list[Any]:
    """One call's decoded answer (the reference for :func:`same_as`)."""
    captured: list[Any] = []
    result = run_load(url, lambda r, i: Call(call.endpoint, call.args, captured.append, call.label),
                      clients=1, rounds=1)
    if result.answered != 1:
        raise AssertionError(f"reference call failed: {result.failures or result.summary()}")
    return captured[0]


def looks_like(endpoint: str, status_words: str) -> Callable[[list[Any]], None]:
    """A check for answers without a reference: the pictures are non-empty RGB and the status
    contains ``status_words``."""
    def check(outputs: list[Any]) -> None:
        *pictures, status = outputs
        assert len(pictures) == (3 if endpoint == "/discover" else 1), len(pictures)
        for p in pictures:
            assert p.ndim == 3 and p.shape[2] == 3 and min(p.shape[:2]) > 32 and p.std() > 1
        assert status_words in status, status
    return check


def mixed_plan(url: str, photos: dict[str, Path], distinct: Sequence[Path]) -> Callable[[int, int], Call]:
    """The load mix: by client number mod 4, /discover on the same photo, /discover on a photo of
    its own, /swap on the same pair, /swap with a photo of its own. Calls on the same input are
    checked against a reference answer, the others by their look."""
    same_discover = (photos["astronaut"], True, True, 0.5)
    same_swap = (photos["astronaut"], photos["grace_hopper"], [1, 2], True)
    ref_discover = same_as(answer(url, Call("/discover", same_discover)))
    ref_swap = same_as(answer(url, Call("/swap", same_swap)))
    discover_ok, swap_ok = looks_like("/discover", "K = "), looks_like("/swap", "Exchanged parts 1, 2")

    def plan(round_: int, client: int) -> Call:
        own = distinct[(round_ * 17 + client) % len(distinct)]
        kind = client % 4
        if kind == 0:
            return Call("/discover", same_discover, ref_discover, "discover same")
        if kind == 1:
            return Call("/discover", (own, True, True, 0.5), discover_ok, "discover own")
        if kind == 2:
            return Call("/swap", same_swap, ref_swap, "swap same")
        return Call("/swap", (own, photos["grace_hopper"], [1, 2], True), swap_ok, "swap own")
    return plan


def folder_size(root: Path) -> tuple[int, int, int]:
    """(bytes, files, folders) under ``root``."""
    total = files = folders = 0
    for here, dirs, names in os.walk(root):
        folders += len(dirs)
        for n in names:
            files += 1
            try:
                total += os.lstat(os.path.join(here, n)).st_size
            except OSError:
                continue
    return total, files, folders
