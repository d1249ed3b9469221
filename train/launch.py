"""Data-parallel training on the CPU's cores: one process per core, each with one thread.

On a CPU, many of a training step's kernels are small (LayerNorms and ReLUs over 32 channels, the
PartFormer's 73-token attention) and split poorly over threads: on the 2-core development machine,
two threads train about 1.4x faster than one, while two single-thread processes run side by side
at the speed of one alone (each on half the batch: about 1.3x the images/s of one process with two
threads, once the gradients' all-reduce and the loaders are paid for). So ``python train/main.py`` on a multi-core CPU starts one process per core
(``cpu_processes``) and they train as one model through DistributedDataParallel (gloo): the same
maths as one process on the whole batch (every loss is a mean over the batch, the gradients are
averaged over the processes, the step is taken from the same weights everywhere).

A launcher (``torchrun``) or ``--cpu-processes 1`` turns this off; ``OMP_NUM_THREADS=N`` bounds the
cores used, as it bounds the threads of a single process. Every CPU training process, one or many,
also keeps the memory its steps free (:func:`keep_freed_memory`).
"""
from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The CPU quota of this container in whole CPUs (cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_*``),
    rounded up; None without one. A container often sees all of its host's CPUs but may use few."""
    try:
        if (root / "cpu.max").is_file():
            quota, period = (root / "cpu.max").read_text().split()[:2]
        else:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        if quota in ("max", "-1"):
            return None
        return max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        return None


def available_cores(env: dict[str, str] | None = None) -> int:
    """Cores this run may use: ``OMP_NUM_THREADS`` when set (the user's bound), else the CPUs the
    process is allowed to run on, within the container's CPU quota."""
    env = os.environ if env is None else env
    value = env.get("OMP_NUM_THREADS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return min(cores, cgroup_cpu_limit() or cores)


def cpu_process_count(requested: int, batch_size: int, device_type: str, env: dict[str, str] | None = None) -> int:
    """How many processes train on the CPU: ``requested`` when > 0 (it must divide the batch), else
    the most cores (at most ``available_cores``) that split the batch evenly with at least two
    images each. 1 under a launcher (``WORLD_SIZE`` set) or when ``device_type`` is not "cpu"."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env or device_type != "cpu":
        return 1
    if requested > 0:
        if batch_size % requested:
            raise SystemExit(f"--cpu-processes {requested} does not divide the batch size {batch_size}: "
                             "each process takes an equal share of the batch")
        return requested
    cores = available_cores(env)
    return max([n for n in range(1, cores + 1) if batch_size % n == 0 and batch_size // n >= 2], default=1)


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt's parameters (glibc's malloc.h)


@functools.lru_cache(maxsize=None)
def _glibc():
    """The C library (``ctypes``) on Linux, or None: for ``mallopt`` and ``prctl``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_freed_memory(env: dict[str, str] | None = None) -> bool:
    """Tell glibc's malloc to keep the memory a training step frees for the next step: no ``mmap``
    for large blocks, no trimming of the heap (Linux, for a CPU training process).

    A step allocates and frees the same large activations every time. By default glibc hands blocks
    above its mmap threshold (adaptive, at most 32 MB) back to the system at once, and the next
    step pays for fresh pages (page faults): on the 2-core development VM, writing into a fresh
    64 MB tensor ran at 4 GB/s against 39 GB/s into a reused one, and a training step took 7-12 %
    longer (figures in benchmarks/README.md). The process keeps its peak memory instead of
    returning it between steps. Left alone when the user set ``GLIBC_TUNABLES`` for malloc;
    returns whether it applied."""
    env = os.environ if env is None else env
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallopt") or "glibc.malloc" in env.get("GLIBC_TUNABLES", ""):
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Stopped(Exception):
    """The launcher was asked to stop (SIGTERM)."""


def _die_with_parent() -> None:
    """In a rank, before exec (Linux): get SIGTERM when the launcher dies, even by SIGKILL."""
    libc = _glibc()
    if libc is not None and hasattr(libc, "prctl"):
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def launch(processes: int, argv: list[str], script: Path, threads: int = 1, poll_s: float = 0.2) -> int:
    """Run ``script argv`` in ``processes`` ranks on this machine (gloo over localhost, ``threads``
    threads each) and wait for them; returns the first non-zero exit status or 0. A failed rank, a
    Ctrl-C or a SIGTERM to the launcher stops every rank, so none is left running or waiting."""
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
            "WORLD_SIZE": str(processes), "OMP_NUM_THREADS": str(threads),
            "PARTDISC_CPU_CORES": str(processes * threads)}
    # The C library is loaded here (Linux only), not between fork and exec where _die_with_parent runs.
    in_rank = _die_with_parent if _glibc() is not None else None

    def stop(signum, frame):
        raise _Stopped()

    previous = signal.signal(signal.SIGTERM, stop)
    procs: list[subprocess.Popen] = []
    status = 0
    try:
        for r in range(processes):
            procs.append(subprocess.Popen([sys.executable, str(script), *argv],
                                          env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
                                          preexec_fn=in_rank))
        while any(p.poll() is None for p in procs):
            failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
            if failed:
                status = failed[0]
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:  # the ranks got the same Ctrl-C
        status = 130
    except _Stopped:
        status = 128 + signal.SIGTERM
    finally:
        for p in procs:
            if p.poll() is None and status:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        signal.signal(signal.SIGTERM, previous)
    return status or next((p.returncode for p in procs if p.returncode), 0)


__all__ = ["available_cores", "cgroup_cpu_limit", "cpu_process_count", "keep_freed_memory", "launch"]
