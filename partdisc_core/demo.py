"""The non-UI logic of the Gradio demo (``app.py``): safe image loading, face cropping, and the
pictures the two tabs show.

* :func:`load_image` decodes an uploaded file under limits (pixel count, decompression bombs,
  corrupt or truncated files, odd modes such as CMYK or 16-bit, EXIF rotation) and downscales it
  before any heavy work; every refusal is a :class:`DemoInputError` whose text can be shown as is.
* :func:`discover` runs the model's test-time path (Fig. 3): the part representations G act as
  K + 1 detectors over the pixel features F, giving the soft part maps V, plus the attention of
  each part token to the image patches (Fig. 1).
* :func:`swap` reconstructs two faces with chosen part representations G_k exchanged (Fig. 11).

Nothing here imports gradio, so the logic is testable and reusable without a server.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from . import viz
from .inputs import ImageInputError, to_image_tensors, to_uint8

MAX_PIXELS = 50_000_000
"""Largest accepted image (width x height) - e.g. a 48 MP phone photo; 12000x12000 is refused."""
MAX_FILE_BYTES = 50 * 1024 * 1024
WORK_SIDE = 1024
"""Images are downscaled to this longest side right after decoding, before any other work."""
DISPLAY_SIDE = 384
"""Side of the square face crop the overlay is drawn on."""
MIN_SIDE = 16
"""Smaller images are refused: there is nothing to find parts in."""
SMALL_SIDE = 64
TILE = 112
GRID_COLUMNS = 5
GRID_TOP_PAD = 28
SWAP_CELL = 192

_detect_lock = threading.Lock()  # OpenCV's cascade keeps per-call state: one detection at a time


class DemoInputError(ValueError):
    """An input the demo cannot use; the message is meant for the person who sent it."""


def configure_pil(max_pixels: int = MAX_PIXELS) -> None:
    """Make PIL refuse decompression bombs early: ``Image.open`` raises ``DecompressionBombError``
    above 2 x ``max_pixels`` before decoding anything (``load_image`` refuses above 1 x itself)."""
    Image.MAX_IMAGE_PIXELS = int(max_pixels)


# --- model -------------------------------------------------------------------------------------
def load_model_or_exit(source: str | None = None, device: str | None = None):
    """``load_model(source)`` on the GPU if there is one, else the CPU; on failure print a message
    that says what to do and exit with status 2 (the default checkpoint may not be trained yet)."""
    import sys

    import torch

    from . import checkpoint

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return checkpoint.load_model(source, device=device)
    except checkpoint.CheckpointError as exc:
        default = checkpoint.DEFAULT_CHECKPOINT
        if source is None and not default.exists():
            msg = (f"The shipped checkpoint {default} is missing. Train it (see the README), or pass one: "
                   "python app.py --checkpoint PATH_OR_HUB_ID (or set PARTDISC_CHECKPOINT).")
        else:
            msg = f"Could not load the checkpoint: {exc}"
        print(f"error: {msg}", file=sys.stderr)
        raise SystemExit(2) from None


# --- loading -----------------------------------------------------------------------------------
@dataclass
class LoadedImage:
    """A decoded upload: ``array`` (H, W, 3) uint8 RGB, at most ``WORK_SIDE`` on its longer side."""

    array: np.ndarray
    original_size: tuple[int, int]  # (width, height) of the file, before EXIF rotation
    notes: list[str] = field(default_factory=list)


def _canonical_mode(img: Image.Image, notes: list[str]) -> Image.Image:
    """A mode that PIL can resize smoothly and ``to_image_tensors`` can convert to RGB."""
    mode = img.mode
    if mode.startswith("I;16"):
        notes.append("16-bit image converted to 8 bits")
        arr = np.asarray(img).astype(np.uint16)
        return Image.fromarray((arr >> 8).astype(np.uint8), "L")
    if mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        if top > 255:
            notes.append("16-bit image converted to 8 bits")
        return Image.fromarray((np.clip(arr / top, 0, 1) * 255 + 0.5).astype(np.uint8), "L")
    if mode in ("P", "PA"):
        return img.convert("RGBA" if (mode == "PA" or "transparency" in img.info) else "RGB")
    if mode == "1":
        return img.convert("L")
    if mode == "CMYK":
        notes.append("CMYK image converted to RGB")
        return img.convert("RGB")
    if mode in ("LAB", "HSV", "YCbCr"):
        return img.convert("RGB")
    return img


_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
"""EXIF orientation tag value -> the transpose that shows the image upright (as ImageOps.exif_transpose)."""


def load_image(path: Any, max_side: int = WORK_SIDE, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Decode an image file safely and downscale it to at most ``max_side`` pixels on its longer
    side (JPEGs are decoded at a reduced scale directly). Raises :class:`DemoInputError`."""
    if path is None or (isinstance(path, str) and not path.strip()):
        raise DemoInputError("Please upload an image first (or pick an example).")
    path = Path(os.fspath(path))
    if not path.is_file():
        raise DemoInputError("The uploaded file did not reach the server; please upload it again.")
    size = path.stat().st_size
    if size == 0:
        raise DemoInputError("The uploaded file is empty.")
    if size > MAX_FILE_BYTES:
        raise DemoInputError(f"The file is {size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB.")
    notes: list[str] = []
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise DemoInputError(
                    f"The image is {w}x{h} pixels ({w * h / 1e6:.0f} MP); the limit is "
                    f"{max_pixels / 1e6:.0f} MP. Please send a smaller image.")
            if min(w, h) < MIN_SIDE:
                raise DemoInputError(f"The image is only {w}x{h} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed.")
            if getattr(img, "n_frames", 1) > 1:
                notes.append("animated image: the first frame is used")
            if img.format == "JPEG" and max(w, h) > 2 * max_side:
                img.draft(None, (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale
            img.load()
            try:
                orientation = int(img.getexif().get(0x0112, 1))
            except Exception:  # a broken EXIF block does not make the pixels unusable
                orientation = 1
            work = _canonical_mode(img, notes)
            if max(work.size) > max_side:
                s = max_side / max(work.size)
                new_size = (max(1, round(work.width * s)), max(1, round(work.height * s)))
                work = work.resize(new_size, Image.LANCZOS, reducing_gap=3.0)
                notes.append(f"downscaled from {w}x{h}")
            elif work is img:
                work = work.copy()
            work.info = {}  # orientation is applied here, once; nothing downstream rotates again
            if orientation in _TRANSPOSE:
                work = work.transpose(_TRANSPOSE[orientation])
                notes.append("rotated as its EXIF orientation says")
            array = to_uint8(to_image_tensors(work)[0])
    except DemoInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DemoInputError(f"The image is too large to open safely (over {max_pixels / 1e6:.0f} MP).") from exc
    except UnidentifiedImageError as exc:
        raise DemoInputError("This file is not an image that can be read (JPEG, PNG, WebP, BMP, TIFF or GIF "
                             "are fine).") from exc
    except ImageInputError as exc:
        raise DemoInputError(f"This image cannot be used: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise DemoInputError(f"The image could not be decoded; the file may be corrupt or truncated ({exc}).") from exc
    except MemoryError as exc:
        raise DemoInputError("The image is too large to decode.") from exc
    if min(array.shape[:2]) < SMALL_SIDE:
        notes.append(f"small image ({array.shape[1]}x{array.shape[0]}): the results will be coarse")
    return LoadedImage(array, (w, h), notes)


# --- face crop ---------------------------------------------------------------------------------
@dataclass
class View:
    """What the model is shown: ``image`` (H, W, 3) uint8 (a square crop of side ``DISPLAY_SIDE``
    when cropping), and a sentence on how it was made."""

    image: np.ndarray
    message: str
    face_found: bool | None  # None when no crop was asked for


def _resize(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    if arr.shape[1] == width and arr.shape[0] == height:
        return arr
    resample = Image.LANCZOS if arr.shape[1] > width else Image.BICUBIC
    return np.asarray(Image.fromarray(arr).resize((width, height), resample))


def make_view(image: np.ndarray, crop: bool = True, side: int = DISPLAY_SIDE) -> View:
    """Crop to the largest face (framed like the training faces: a square about 1.75 x the face
    box, eyes a little above the middle) or keep the whole image; scale to ``side`` pixels."""
    if crop:
        from .facecrop import crop_to_face

        with _detect_lock:
            res = crop_to_face(image)
        out = _resize(res.image, side, side)
        if res.found:
            extra = f" (largest of {res.num_faces})" if res.num_faces > 1 else ""
            return View(out, f"Face found{extra}: cropped to it.", True)
        return View(out, res.message or "No face found: using the centre of the image", False)
    h, w = image.shape[:2]
    s = side / max(h, w)
    out = _resize(image, max(1, round(w * s)), max(1, round(h * s)))
    return View(out, "Whole image (not cropped); the model sees it squeezed to a square.", None)


# --- discover ----------------------------------------------------------------------------------
@dataclass
class Analysis:
    """The model's answer for one view: soft maps V (K+1, S, S) and attention (K+1, h, w)."""

    view: View
    masks: np.ndarray
    attention: np.ndarray | None
    notes: list[str]
    model_ms: float


@dataclass
class DiscoverResult:
    overlay: np.ndarray     # the view with the parts overlaid, legend below
    part_maps: np.ndarray   # grid of the K + 1 soft part maps
    attention: np.ndarray   # grid of the K + 1 attention maps
    status: str
    analysis: Analysis


class _LRU:
    """A small thread-safe cache, so that moving the opacity slider does not rerun the model."""

    def __init__(self, size: int = 16):
        self.size, self.data, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        return None

    def put(self, key, value) -> None:
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)


_cache = _LRU()       # (file, model, crop) -> Analysis
_view_cache = _LRU(32)  # (file, crop) -> (View, notes): swapping other parts skips decoding and detection


def _file_key(path: Any, *extra) -> tuple | None:
    try:
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return (os.fspath(path), st.st_size, st.st_mtime_ns) + extra


def load_view(path: Any, crop: bool = True) -> tuple[View, list[str]]:
    """``load_image`` then ``make_view``, cached per file and crop setting."""
    key = _file_key(path, bool(crop))
    hit = _view_cache.get(key) if key else None
    if hit is not None:
        return hit
    loaded = load_image(path)
    result = (make_view(loaded.array, crop), loaded.notes)
    if key:
        _view_cache.put(key, result)
    return result


def analyse(model, path: Any, crop: bool = True) -> Analysis:
    """Load, crop and run ``model.predict`` once; cached per file, model and crop setting."""
    key = _file_key(path, id(model), bool(crop))
    hit = _cache.get(key) if key else None
    if hit is not None:
        return hit
    view, notes = load_view(path, crop)
    start = time.perf_counter()
    pred = model.predict(view.image, output_size=None, return_attention=True)
    model_ms = (time.perf_counter() - start) * 1000.0
    attention = None if pred.attention is None else pred.attention[0].float().cpu().numpy()
    result = Analysis(view, pred.masks[0].float().cpu().numpy(), attention, notes, model_ms)
    if key:
        _cache.put(key, result)
    return result


def with_legend(image: np.ndarray, num_parts: int, height: int = 24) -> np.ndarray:
    """Stack the colour legend under ``image`` (centred; the canvas widens if the legend is wider)."""
    legend = viz.legend_image(num_parts, height=height)
    w = max(image.shape[1], legend.shape[1])
    out = np.full((image.shape[0] + legend.shape[0] + 4, w, 3), 255, np.uint8)
    x = (w - image.shape[1]) // 2
    out[:image.shape[0], x:x + image.shape[1]] = image
    x = (w - legend.shape[1]) // 2
    out[image.shape[0] + 4:, x:x + legend.shape[1]] = legend
    return out


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def status_text(analysis: Analysis, num_parts: int) -> str:
    parts = [_sentence(analysis.view.message)]
    parts += [n[0].upper() + n[1:] + "." for n in analysis.notes]
    parts.append(f"K = {num_parts} parts; model time {analysis.model_ms:.0f} ms.")
    return " ".join(parts)


def _pad_top(image: np.ndarray, pad: int = GRID_TOP_PAD) -> np.ndarray:
    """White space above a grid, so the viewer's buttons do not hide the first row's titles."""
    return np.concatenate([np.full((pad,) + image.shape[1:], 255, np.uint8), image], 0)


def discover(model, path: Any, crop: bool = True, hard: bool = True, opacity: float = 0.5) -> DiscoverResult:
    """Part masks overlaid on the (cropped) image with a legend, the soft part maps V and the part
    tokens' attention maps, for one image file."""
    a = analyse(model, path, crop)
    k = model.num_parts
    overlay = viz.overlay_masks(a.view.image, a.masks, opacity=float(opacity), hard=bool(hard))
    columns = min(k + 1, GRID_COLUMNS)
    part_maps = _pad_top(viz.map_grid(a.masks, size=TILE, normalize=None, cmap="viridis", columns=columns))
    if a.attention is not None:
        attention = _pad_top(viz.map_grid(a.attention, size=TILE, normalize="each", cmap="inferno",
                                          columns=columns))
    else:
        attention = np.full((TILE, TILE, 3), 255, np.uint8)
    return DiscoverResult(with_legend(overlay, k), part_maps, attention, status_text(a, k), a)


# --- swap --------------------------------------------------------------------------------------
def parse_parts(parts: Any, num_parts: int) -> list[int]:
    """Part numbers 1..K from a list of ints / strings ("3", "part 3") or a string "1, 2"."""
    if parts is None:
        return list(range(1, num_parts + 1))
    if isinstance(parts, (str, int)):
        parts = [parts]
    out: list[int] = []
    for p in parts:
        items = p.replace(",", " ").split() if isinstance(p, str) else [p]
        for item in items:
            text = str(item).strip().lower().removeprefix("part").strip()
            try:
                n = int(float(text))
            except ValueError:
                raise DemoInputError(f"{item!r} is not a part number (1..{num_parts})") from None
            if not 1 <= n <= num_parts:
                raise DemoInputError(f"part {n} does not exist: this model has parts 1..{num_parts}")
            if n not in out:
                out.append(n)
    return sorted(out)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - old Pillow
        return ImageFont.load_default()


def titled_grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[Sequence[str]], cell: int = SWAP_CELL,
                pad: int = 6, title_height: int = 20) -> np.ndarray:
    """Tile images (each resized to ``cell`` x ``cell``) in rows, each with a title above it."""
    ncols = max(len(r) for r in rows)
    W = pad + ncols * (cell + pad)
    H = pad + len(rows) * (title_height + cell + pad)
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font(title_height - 6)
    for r, (images, names) in enumerate(zip(rows, titles)):
        y = pad + r * (title_height + cell + pad)
        for c, (img, name) in enumerate(zip(images, names)):
            x = pad + c * (cell + pad)
            x0, y0, x1, y1 = draw.textbbox((0, 0), name, font=font)
            draw.text((x + (cell - (x1 - x0)) // 2 - x0, y + (title_height - (y1 - y0)) // 2 - y0), name,
                      fill=(0, 0, 0), font=font)
            canvas.paste(Image.fromarray(_resize(viz._as_image_uint8(img), cell, cell)), (x, y + title_height))
    return np.asarray(canvas)


@dataclass
class SwapOutput:
    grid: np.ndarray  # 2 rows (A, B) x [input as the model saw it, reconstruction, with swapped parts]
    status: str
    parts: list[int]


def _part_list(parts: list[int], k: int) -> str:
    if parts == list(range(1, k + 1)):
        return "all parts"
    return ("part " if len(parts) == 1 else "parts ") + ", ".join(str(p) for p in parts)


def swap(model, path_a: Any, path_b: Any, parts: Any = None, crop: bool = True) -> SwapOutput:
    """Reconstruct faces A and B with the chosen parts' representations G_k exchanged (Fig. 11)."""
    k = model.num_parts
    chosen = parse_parts(parts, k)
    if path_a is None or path_b is None:
        raise DemoInputError("Please give two images (A and B).")
    try:
        view_a, notes_a = load_view(path_a, crop)
    except DemoInputError as exc:
        raise DemoInputError(f"Image A: {exc}") from exc
    try:
        view_b, notes_b = load_view(path_b, crop)
    except DemoInputError as exc:
        raise DemoInputError(f"Image B: {exc}") from exc
    start = time.perf_counter()
    if chosen:
        res = model.swap_parts(view_a.image, view_b.image, parts=chosen)
        sa, sb, ra, rb = (to_uint8(t[0]) for t in (res.swapped_a, res.swapped_b, res.recon_a, res.recon_b))
    else:
        rec = model.reconstruct([view_a.image, view_b.image])
        ra, rb = to_uint8(rec[0]), to_uint8(rec[1])
        sa, sb = ra, rb
    model_ms = (time.perf_counter() - start) * 1000.0
    s = model.cfg.input_size
    seen_a, seen_b = _resize(view_a.image, s, s), _resize(view_b.image, s, s)
    label = _part_list(chosen, k) if chosen else "no parts"
    grid = titled_grid(
        [[seen_a, ra, sa], [seen_b, rb, sb]],
        [["A (model input)", "A reconstructed", f"A + {label} of B"],
         ["B (model input)", "B reconstructed", f"B + {label} of A"]])
    notes = [f"A: {_sentence(view_a.message)}", f"B: {_sentence(view_b.message)}"]
    notes += [f"A: {n}." for n in notes_a] + [f"B: {n}." for n in notes_b]
    if not chosen:
        notes.append("No parts chosen, so the swapped images equal the plain reconstructions.")
    notes.append(f"Exchanged {label}; model time {model_ms:.0f} ms.")
    return SwapOutput(grid, " ".join(notes), chosen)


def warm_up(model) -> None:
    """Run the model and the face detector once, so the first request is not slowed by lazy set-up."""
    blank = np.full((DISPLAY_SIDE, DISPLAY_SIDE, 3), 128, np.uint8)
    make_view(blank, crop=True)
    model.predict(blank, output_size=None)
    model.swap_parts(blank, blank, parts=[1])


# --- examples ----------------------------------------------------------------------------------
def write_examples(folder: str | Path) -> dict[str, Path]:
    """Write the offline examples (public-domain portraits shipped in scikit-image and matplotlib,
    and two generated synthetic faces) as PNGs in ``folder``; return {name: path}. Missing
    sources are skipped."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}

    def put(name: str, make) -> None:
        path = folder / f"{name}.png"
        try:
            if not path.is_file():
                tmp = folder / f".{name}.{os.getpid()}.{threading.get_ident()}.png"
                Image.fromarray(np.asarray(make())).convert("RGB").save(tmp)
                os.replace(tmp, path)
            out[name] = path
        except Exception:  # an example is optional; the app works without it
            pass

    def astronaut():
        import skimage.data

        return skimage.data.astronaut()

    def grace_hopper():
        import matplotlib.cbook

        with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as im:
            return im.convert("RGB").copy()

    def synthetic(i: int):
        def make():
            from .synthetic import SyntheticFaces

            batch = SyntheticFaces(size=256).generate(2, seed=3)
            return to_uint8(batch.images[i])
        return make

    put("astronaut", astronaut)
    put("grace_hopper", grace_hopper)
    put("synthetic_face_1", synthetic(0))
    put("synthetic_face_2", synthetic(1))
    return out


# --- running the app in a subprocess (tests, benchmarks) ----------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class AppProcess:
    """``python app.py --checkpoint ... --port ...`` in a subprocess on a free port, for tests and
    benchmarks::

        with AppProcess("runs/tiny", log_path="app.log") as server:
            client = gradio_client.Client(server.url)

    ``startup_s`` is the time from spawning the process to the first HTTP 200 from the server."""

    def __init__(self, checkpoint: str | Path | None = None, app_path: str | Path | None = None,
                 port: int | None = None, host: str = "127.0.0.1", env: dict[str, str] | None = None,
                 log_path: str | Path | None = None, timeout: float = 120.0, extra_args: Sequence[str] = ()):
        self.app_path = Path(app_path) if app_path else Path(__file__).resolve().parent.parent / "app.py"
        self.host, self.port = host, port or free_port(host)
        self.checkpoint, self.env, self.timeout = checkpoint, env, timeout
        self.log_path = Path(log_path) if log_path else None
        self.extra_args = list(extra_args)
        self.proc = None
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
        import subprocess
        import sys
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

    def stop(self) -> None:
        import subprocess

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


__all__ = [
    "Analysis", "AppProcess", "DemoInputError", "DiscoverResult", "LoadedImage", "SwapOutput", "View", "analyse",
    "configure_pil", "discover", "free_port", "load_image", "load_model_or_exit", "load_view", "make_view",
    "parse_parts", "status_text", "swap", "titled_grid", "warm_up", "with_legend", "write_examples",
]
