"""The files a web app answers with, each written once, atomically, into a folder of its own request.

Gradio serves an endpoint's pictures as files. Handed a numpy array, gradio 6 encodes it and writes
it to a path named after the hash of its bytes, rewriting that path in place each time the same
picture is produced again; when two requests produce the same picture, one response can be
streaming the file while the other truncates and rewrites it, and the download breaks ("Too little
data for declared Content-Length"). Answering with paths of files that nobody ever rewrites avoids
this for every output of every endpoint::

    results = ResultFiles(Path(gradio_upload_folder) / "partdisc-results")
    overlay_path, status = results.publish((overlay_array, "3 parts found"), names=("overlay", "status"))

:meth:`ResultFiles.publish` turns every image (numpy array or PIL image, also inside lists and
tuples, as a gallery takes them) into a PNG in a new folder and passes other values through;
:meth:`ResultFiles.request` gives that folder directly, for other kinds of files (``write`` for
bytes, ``staged`` for writers that need a path, such as video encoders).

Folders are removed when older than ``max_age_s`` or when the results together exceed
``max_bytes`` (oldest first), checked as requests come. ``sweep_roots`` names folders whose empty
sub-folders are removed on the same schedule: gradio's upload cache keeps one folder per distinct
upload and its ``delete_cache`` removes the files but never the folders.
"""
from __future__ import annotations

import functools
import inspect
import os
import shutil
import threading
import time
import uuid
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from PIL import Image

__all__ = ["RequestFolder", "ResultFiles", "remove_empty_dirs"]


@dataclass
class _Folder:
    created: float  # time.monotonic()
    path: Path
    size: int = 0
    live: bool = True  # False once pruned


class RequestFolder:
    """The folder of one request. Each name can be written once; every file appears whole."""

    def __init__(self, owner: "ResultFiles", entry: _Folder):
        self.owner, self._entry, self.path = owner, entry, entry.path
        self._names: set[str] = set()

    def _target(self, name: str) -> Path:
        if not name or Path(name).name != name or name.startswith("."):
            raise ValueError(f"not a plain file name: {name!r}")
        if name in self._names:
            raise FileExistsError(f"{name} was already written for this request")
        self._names.add(name)
        return self.path / name

    @contextmanager
    def staged(self, name: str) -> Iterator[Path]:
        """A temporary path in this folder to write ``name`` to; on success it is made read-only
        and renamed into place (atomic), on failure removed."""
        target = self._target(name)
        tmp = self.path / f".{name}.{uuid.uuid4().hex[:8]}.part"
        try:
            yield tmp
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.owner._account(self._entry, target.stat().st_size)

    def write(self, name: str, data: bytes) -> str:
        """Write ``data`` as ``name``; returns the file's absolute path."""
        with self.staged(name) as tmp:
            tmp.write_bytes(data)
        return str(self.path / name)

    def png(self, name: str, image: Any) -> str:
        """Encode an image (H, W[, C] array or PIL image) as ``name``.png; returns its path."""
        from .inputs import to_rgb

        pil = image if isinstance(image, Image.Image) and image.mode in ("RGB", "RGBA", "L") \
            else Image.fromarray(to_rgb(image, "uint8", clip=True))
        with self.staged(f"{name}.png") as tmp:
            pil.save(tmp, format="PNG")
        return str(self.path / f"{name}.png")


def _is_image(value: Any) -> bool:
    return isinstance(value, Image.Image) or (isinstance(value, np.ndarray) and value.ndim in (2, 3))


class ResultFiles:
    """Per-request folders under ``root`` for the files an app answers with (see the module
    docstring). Thread-safe: requests running at once get separate folders."""

    def __init__(self, root: str | Path, max_age_s: float = 3600.0, max_bytes: int = 512 * 2**20,
                 sweep_roots: Sequence[str | Path] = (), check_every_s: float | None = None):
        self.root = Path(root).resolve()
        self.max_age_s, self.max_bytes = float(max_age_s), int(max_bytes)
        self.check_every_s = min(30.0, self.max_age_s / 2) if check_every_s is None else float(check_every_s)
        self.sweep_roots = [Path(p).resolve() for p in sweep_roots]
        self.root.mkdir(parents=True, exist_ok=True)
        remove_old_dirs(self.root, self.max_age_s)  # left by earlier runs that did not clean up
        self.home = self.root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.home.mkdir()
        self._lock = threading.Lock()
        self._folders: deque[_Folder] = deque()  # oldest first
        self._bytes = 0
        self._count = 0
        self._last_check = time.monotonic()

    @property
    def total_bytes(self) -> int:
        return self._bytes

    @property
    def folder_count(self) -> int:
        return len(self._folders)

    def request(self) -> RequestFolder:
        """A new, empty folder with an unguessable name."""
        self.prune()
        with self._lock:
            self._count += 1
            entry = _Folder(time.monotonic(), self.home / f"{self._count:08d}-{uuid.uuid4().hex}")
            self._folders.append(entry)
        entry.path.mkdir(parents=True)
        return RequestFolder(self, entry)

    def publish(self, value: Any, names: Sequence[str] | str = "result") -> Any:
        """``value`` with every image in it replaced by the path of a PNG written for this request.

        A tuple or list is an endpoint's outputs (or a gallery): its items are named after
        ``names`` (or ``<name>_<i>``); anything that is not an image (text, ``None``, gradio
        updates) is returned unchanged. No folder is made when there is no image."""
        folder: RequestFolder | None = None

        def convert(item: Any, name: str) -> Any:
            nonlocal folder
            if _is_image(item):
                if folder is None:
                    folder = self.request()
                return folder.png(name, item)
            if isinstance(item, (list, tuple)):
                out = [convert(x, f"{name}_{i}") for i, x in enumerate(item)]
                return tuple(out) if isinstance(item, tuple) else out
            return item

        if not isinstance(value, (list, tuple)):
            return convert(value, names if isinstance(names, str) else names[0])
        if isinstance(names, str):
            labels = [f"{names}_{i}" for i in range(len(value))]
        else:
            labels = list(names) + [f"result_{i}" for i in range(len(names), len(value))]
        out = [convert(x, label) for x, label in zip(value, labels)]
        return tuple(out) if isinstance(value, tuple) else out

    def wrap(self, fn: Callable, names: Sequence[str] | str = "result") -> Callable:
        """``fn`` with its return value (or every value it yields, for a generator function)
        passed through :meth:`publish`. The signature is kept (``functools.wraps``), so a web
        framework that reads parameters and defaults from it, as gradio does, sees ``fn``'s."""
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def stream(*args, **kwargs):
                for value in fn(*args, **kwargs):
                    yield self.publish(value, names)
            return stream

        @functools.wraps(fn)
        def run(*args, **kwargs):
            return self.publish(fn(*args, **kwargs), names)
        return run

    def _account(self, entry: _Folder, size: int) -> None:
        with self._lock:
            if entry.live:
                entry.size += size
                self._bytes += size

    def prune(self, force: bool = False) -> None:
        """Remove folders past ``max_age_s``, then the oldest until the total is under
        ``max_bytes``; every ``check_every_s`` s (or when forced) also sweep ``sweep_roots``."""
        now = time.monotonic()
        doomed = []
        with self._lock:
            while self._folders and (now - self._folders[0].created > self.max_age_s or self._bytes > self.max_bytes):
                entry = self._folders.popleft()
                entry.live = False
                self._bytes -= entry.size
                doomed.append(entry.path)
            sweep = force or now - self._last_check > self.check_every_s
            if sweep:
                self._last_check = now
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
        if sweep:
            for root in self.sweep_roots:
                remove_empty_dirs(root, self.max_age_s, keep=(self.root,))

    def close(self) -> None:
        """Remove every folder of this process."""
        with self._lock:
            for entry in self._folders:
                entry.live = False
            self._folders.clear()
            self._bytes = 0
        shutil.rmtree(self.home, ignore_errors=True)


def remove_old_dirs(root: Path, age_s: float) -> None:
    """Remove the sub-folders of ``root`` not modified for ``age_s`` seconds."""
    cutoff = time.time() - age_s
    for entry in _scan(root):
        try:
            if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            continue


def remove_empty_dirs(root: str | Path, age_s: float, keep: Sequence[Path] = ()) -> int:
    """Remove the empty sub-folders of ``root`` not modified for ``age_s`` seconds (one level,
    never ``keep``); returns how many were removed. ``os.rmdir`` refuses a folder that is not
    empty, so a folder that gets a file meanwhile stays."""
    cutoff = time.time() - age_s
    keep = {Path(k).resolve() for k in keep}
    removed = 0
    for entry in _scan(Path(root)):
        try:
            if (entry.is_dir(follow_symlinks=False) and Path(entry.path).resolve() not in keep
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff):
                os.rmdir(entry.path)
                removed += 1
        except OSError:  # not empty, or gone already
            continue
    return removed


def _scan(root: Path) -> list:
    try:
        with os.scandir(root) as it:
            return list(it)
    except OSError:
        return []
