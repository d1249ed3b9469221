"""The logic of the demo's Live, Video, Gallery and Morph tabs (``app.py``), without gradio.

* :func:`live_frame`: one webcam frame -> the part overlay on a face crop that a
  :class:`~partdisc_core.tracking.FaceTracker` keeps steady from frame to frame (``/frame`` is the
  same for a single uploaded picture); the stream's answers are JPEGs (:func:`write_jpeg`).
* :func:`video`: a clip -> an H.264 MP4 with the overlay on every frame and a CSV of every part's
  centroid in every frame (part tracks), streamed frame batch by frame batch.
* :func:`gallery`: up to 16 faces -> one grid in the shared part colours (consistency across faces
  at a glance) and a zip of label maps + centroid CSV in ``train/export.py``'s format.
* :func:`morph`: two faces -> face A with the chosen parts' representations G_k moved towards B's
  by t (``PartDiscModel.morph_parts``; t = 1 is the Swap tab's result) and an animated strip of
  t = 0 .. 1.

Files are written into a request folder (``result_files.RequestFolder``: ``staged`` / ``write`` /
``png``), so every answer has files of its own that nothing rewrites. Every refusal is a
:class:`~partdisc_core.demo.DemoInputError` whose text can be shown as is.
"""
from __future__ import annotations

import csv
import io
import math
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .demo import (GRID_TOP_PAD, DemoInputError, _resize, _sentence, load_image, load_pair, load_view, overlay_view,
                   parse_parts, part_list, real_maps, titled_grid, with_legend)
from .inputs import to_uint8
from .labelmaps import centroid_header, centroid_row, label_png
from .media import MAX_VIDEO_SECONDS, MediaInputError, Mp4Writer, VideoReader, even_size, write_gif
from .partnames import names_of, part_labels
from .tracking import FaceTracker, TrackedView
from .viz import pad_top

LIVE_SIDE = 320
"""Side of the live (and /frame, and video) face crop the overlay is drawn on."""
LIVE_MAX_SIDE = 1920
"""Webcam frames larger than this on their longer side are refused (a 1080p camera is fine)."""
LIVE_JPEG_QUALITY = 85
"""Live answers are JPEGs: a 320-px overlay takes ~0.3 ms and ~20 kB, a PNG ~30 ms and ~130 kB."""
VIDEO_BATCH = 8
"""Video frames run through the model together (one batch: faster per frame on a CPU)."""
GALLERY_MAX = 16
GALLERY_CELL = 176
GALLERY_COLUMNS = 4
MORPH_STEPS = 9
"""Frames of the animated strip, t = 0, 1/8, ..., 1 (played forward and back)."""
MORPH_CELL = 192

ProgressFn = Callable[[float, str], None]


# --- live and single frames ----------------------------------------------------------------------
@dataclass
class FrameResult:
    overlay: np.ndarray   # (LIVE_SIDE, LIVE_SIDE or less, 3) uint8
    status: str
    found: bool | None    # face detected in this frame (None: not cropping)
    model_ms: float


def check_frame(frame: Any) -> np.ndarray:
    """A webcam frame as (H, W, 3) uint8 RGB, or a DemoInputError."""
    if frame is None:
        raise DemoInputError("No camera frame arrived; allow the camera and press record.")
    arr = np.asarray(frame)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise DemoInputError(f"A camera frame must be an RGB picture, got an array of shape {arr.shape}.")
    if min(arr.shape[:2]) < 16:
        raise DemoInputError(f"The frame is only {arr.shape[1]}x{arr.shape[0]} pixels; at least 16x16 is needed.")
    if max(arr.shape[:2]) > LIVE_MAX_SIDE:
        raise DemoInputError(f"The frame is {arr.shape[1]}x{arr.shape[0]} pixels; the limit is {LIVE_MAX_SIDE} "
                             "on the longer side.")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3])


def whole_view(frame: np.ndarray, side: int) -> np.ndarray:
    """The whole frame scaled to ``side`` on its longer side (the model squeezes it to a square)."""
    import cv2

    h, w = frame.shape[:2]
    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


def _overlays(model, views: Sequence[np.ndarray], opacity: float,
              valid_boxes: Sequence[tuple | None] | None = None) -> tuple[list[np.ndarray], Any, float]:
    """The model on a batch of views: overlays at each view's size, the maps V (B, K+1, s, s) at
    the model's size (each view's fill outside its valid box given to the background), and the
    model time in ms."""
    import torch

    start = time.perf_counter()
    pred = model.predict(list(views), output_size=None, return_attention=False)
    model_ms = (time.perf_counter() - start) * 1000.0
    boxes = list(valid_boxes) if valid_boxes is not None else [None] * len(views)
    maps = torch.stack([real_maps(m, b, v.shape[1::-1]) for m, b, v in zip(pred.masks.float().cpu(), boxes, views)])
    overlays = [overlay_view(v, m, b, opacity) for v, m, b in zip(views, maps, boxes)]
    return overlays, maps, model_ms


def live_frame(model, frame: Any, tracker: FaceTracker | None, crop: bool = True, opacity: float = 0.5,
               side: int = LIVE_SIDE) -> FrameResult:
    """One frame of a stream -> its part overlay. With ``crop`` the view is ``tracker``'s smoothed
    face crop (pass the same tracker for every frame of one stream); else the whole frame."""
    img = check_frame(frame)
    if crop:
        tracked = (tracker or FaceTracker()).update(img, side)
        view, found, message, valid = tracked.image, tracked.found, tracked.message, tracked.valid_box
    else:
        view, found, message, valid = whole_view(img, side), None, "Whole frame (not cropped).", None
    (overlay,), _, model_ms = _overlays(model, [view], opacity, [valid])
    return FrameResult(overlay, f"{_sentence(message)} Model time {model_ms:.0f} ms.", found, model_ms)


def write_jpeg(folder, name: str, image: np.ndarray, quality: int = LIVE_JPEG_QUALITY) -> str:
    """Encode an (H, W, 3) uint8 picture as ``name``.jpg in a request folder (``RequestFolder``:
    written once, atomically); returns its path. For streamed answers, where PNG's time and size
    would cost frames."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="JPEG", quality=int(quality))
    return folder.write(f"{name}.jpg", buffer.getvalue())


def single_frame(model, path: Any, crop: bool = True, opacity: float = 0.5) -> FrameResult:
    """``/frame``: an uploaded picture treated as one live frame (decoded safely by load_image)."""
    loaded = load_image(path)
    result = live_frame(model, loaded.array, FaceTracker() if crop else None, crop, opacity)
    if loaded.notes:
        result.status += " " + " ".join(n[0].upper() + n[1:] + "." for n in loaded.notes)
    return result


# --- video ---------------------------------------------------------------------------------------
@dataclass
class VideoResult:
    video_path: str      # H.264 MP4 with the overlay on every frame
    csv_path: str        # frame,time_s,width,height,part1_x,part1_y,... in the clip's pixels
    status: str
    frames: int
    clip_seconds: float
    seconds: float       # wall time of the whole job


def _square_to_clip(centroids: np.ndarray, squares: np.ndarray, map_side: int, scale: float) -> np.ndarray:
    """Centroids (B, K, 2) in a map of ``map_side`` px cut from squares (B, 3) = (cx, cy, side) of a
    frame -> the clip's pixels (frames were decoded at 1 / ``scale`` of the clip's size)."""
    side = squares[:, None, 2:3]
    origin = squares[:, None, :2] - side / 2.0          # the square's corner, continuous frame coordinates
    # pixel index i covers [i, i + 1): map index u sits at origin + (u + 0.5) * side / map_side
    return (origin + (centroids + 0.5) * side / map_side) * scale - 0.5


def video(model, path: Any, folder, crop: bool = True, opacity: float = 0.5,
          progress: ProgressFn | None = None, max_seconds: float = MAX_VIDEO_SECONDS) -> VideoResult:
    """Overlay the parts on every frame of a clip and track each part's centroid.

    With ``crop`` every frame is the tracked, smoothed face crop (``LIVE_SIDE`` square); else the
    whole frame (at most 640 px). Writes ``parts.mp4`` and ``part_tracks.csv`` into ``folder``."""
    from .metrics import soft_centroids

    begin = time.perf_counter()
    k = model.num_parts
    try:
        reader = VideoReader(path, max_seconds=max_seconds)
    except MediaInputError as exc:
        raise DemoInputError(str(exc)) from None
    with reader:
        info = reader.info
        expected = info.frames or max(1, round((info.duration_s or 1.0) * info.fps))
        size = (LIVE_SIDE, LIVE_SIDE) if crop else even_size(*reader.size)
        scale = info.width / reader.size[0]  # decoded frame pixels -> clip pixels
        tracker = FaceTracker() if crop else None
        found = 0
        rows: list[list] = []
        csv_text = io.StringIO()
        writer = csv.writer(csv_text)
        writer.writerow(["frame", "time_s"] + centroid_header(k, names_of(model))[1:])
        with folder.staged("parts.mp4") as tmp:
            with Mp4Writer(tmp, info.fps, size) as out:
                batch: list[np.ndarray] = []
                squares: list[np.ndarray] = []
                valid: list[tuple] = []

                def flush() -> None:
                    overlays, maps, _ = _overlays(model, batch, opacity, valid if crop else None)
                    for o in overlays:
                        out.write(o)
                    cen = soft_centroids(maps[:, :k]).numpy().astype(np.float64)  # (B, K, 2), map pixels
                    s = maps.shape[-1]
                    if crop:
                        xy = _square_to_clip(cen, np.stack(squares), s, scale)
                    else:  # the whole frame, squeezed to the model's square
                        xy = (cen + 0.5) * np.array([info.width, info.height]) / s - 0.5
                    for row in xy.reshape(len(batch), -1):
                        n = len(rows)
                        rows.append([n, f"{n / info.fps:.3f}", info.width, info.height]
                                    + [f"{v:.3f}" for v in row])
                    batch.clear()
                    squares.clear()
                    valid.clear()
                    if progress is not None:
                        progress(min(1.0, len(rows) / expected), f"frame {len(rows)} of ~{expected}")

                try:
                    for frame in reader:
                        if crop:
                            tracked: TrackedView = tracker.update(frame, LIVE_SIDE)
                            batch.append(tracked.image)
                            squares.append(tracked.square * 1.0)
                            valid.append(tracked.valid_box)
                            found += tracked.found
                        else:
                            batch.append(frame)  # decoded at reader.size = size
                        if len(batch) == VIDEO_BATCH:
                            flush()
                    if batch:
                        flush()
                except MediaInputError as exc:
                    raise DemoInputError(str(exc)) from None
        writer.writerows(rows)
        csv_path = folder.write("part_tracks.csv", csv_text.getvalue().encode())
    n = len(rows)
    clip_s = n / info.fps
    took = time.perf_counter() - begin
    parts = [f"{n} frames ({clip_s:.1f} s at {info.fps:.3g} frames/s, {info.width}x{info.height}, {info.codec})"
             f" in {took:.1f} s: {took / max(clip_s, 1e-9):.2f} s per second of video."]
    if crop:
        parts.append(face_sentence(found, n))
    parts.append(f"K = {k} parts; centroids of every part in every frame in the CSV (the clip's pixels).")
    return VideoResult(str(Path(folder.path) / "parts.mp4"), csv_path, " ".join(parts), n, clip_s, took)


def face_sentence(found: int, frames: int) -> str:
    """What following the face did over a clip of ``frames`` frames, ``found`` of them with a face."""
    if found == 0:
        return (f"No face found in any of the {frames} frames: the centre of each frame was used "
                "(untick \"Follow the face\" for the whole frame).")
    if found == frames:
        return f"Face found in all {frames} frames; the crop follows it smoothly."
    return (f"Face found in {found} of {frames} frames; the crop follows it smoothly, holds still where it "
            "is lost, then drifts to the centre of the frame.")


# --- gallery -------------------------------------------------------------------------------------
@dataclass
class GalleryResult:
    grid: np.ndarray    # the faces' overlays in rows of GALLERY_COLUMNS, legend below
    zip_path: str       # <name>.png label maps, images/<name>.png views, centroids.csv
    status: str
    names: list[str]


def _unique_names(paths: Sequence[Any]) -> list[str]:
    """File stems, made unique with -2, -3 ... (two uploads may share a name)."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        stem = Path(str(p)).stem or "face"
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return out


def gallery(model, paths: Sequence[Any] | None, folder, crop: bool = True, opacity: float = 0.5) -> GalleryResult:
    """Up to ``GALLERY_MAX`` faces in one grid with the same part colours, and a zip with each
    face's label map (palette PNG at the view's size), the view itself and the centroid CSV, as
    ``train/export.py`` writes them. Unreadable files are skipped and named in the status."""
    from PIL import Image

    paths = [p for p in (paths or []) if p is not None]
    if not paths:
        raise DemoInputError("Please upload some faces (up to 16).")
    if len(paths) > GALLERY_MAX:
        raise DemoInputError(f"{len(paths)} files were given; the gallery takes at most {GALLERY_MAX}.")
    k = model.num_parts
    names, views, boxes, skipped = [], [], [], []
    for name, p in zip(_unique_names(paths), paths):
        try:
            view = load_view(p, crop)[0]
            views.append(view.image)
            boxes.append(view.valid_box)
            names.append(name)
        except DemoInputError as exc:
            skipped.append(f"{Path(str(p)).name}: {exc}")
    if not views:
        raise DemoInputError("None of the files could be read. " + " ".join(skipped))
    start = time.perf_counter()
    pred = model.predict(views, output_size="input", return_attention=False)
    model_ms = (time.perf_counter() - start) * 1000.0
    # (K+1, S, S) at each view's size, the fill around a crop given to the background
    maps = [real_maps(m, b, v.shape[1::-1]) for m, b, v in zip(pred.masks.float().cpu(), boxes, views)]
    labels = [m.max(dim=0).indices.numpy().astype(np.uint8) for m in maps]
    overlays = [overlay_view(v, m, b, opacity) for v, m, b in zip(views, maps, boxes)]
    cols = min(GALLERY_COLUMNS, len(overlays))
    rows = [overlays[i:i + cols] for i in range(0, len(overlays), cols)]
    titles = [names[i:i + cols] for i in range(0, len(names), cols)]
    grid = with_legend(pad_top(titled_grid(rows, titles, cell=GALLERY_CELL), GRID_TOP_PAD), k,
                       names=part_labels(k, names_of(model)))

    buffer = io.BytesIO()
    csv_text = io.StringIO()
    writer = csv.writer(csv_text)
    writer.writerow(centroid_header(k, names_of(model)))
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, view, lab, m in zip(names, views, labels, maps):
            png = io.BytesIO()
            label_png(lab, k).save(png, format="PNG")
            zf.writestr(f"{name}.png", png.getvalue())
            img = io.BytesIO()
            Image.fromarray(view).save(img, format="PNG")
            zf.writestr(f"images/{name}.png", img.getvalue())
            writer.writerow(centroid_row(f"{name}.png", m, k))
        zf.writestr("centroids.csv", csv_text.getvalue())
    zip_path = folder.write("partdisc_gallery.zip", buffer.getvalue())
    status = (f"{len(views)} faces, K = {k} parts, the same colour for the same part on every face; "
              f"model time {model_ms:.0f} ms for all of them.")
    if skipped:
        status += f" Skipped {len(skipped)}: " + " ".join(skipped)
    return GalleryResult(grid, zip_path, status, names)


# --- morph ---------------------------------------------------------------------------------------
@dataclass
class MorphResult:
    picture: np.ndarray   # [A as the model saw it, A morphed at t, B as the model saw it]
    strip_path: str       # animated GIF of t = 0 .. 1 .. 0
    status: str
    frames: np.ndarray    # (MORPH_STEPS, S, S, 3) uint8: the strip's frames, t = 0 .. 1


def check_t(t: Any) -> float:
    try:
        value = float(t)
    except (TypeError, ValueError):
        raise DemoInputError(f"t must be a number between 0 and 1, got {t!r}.") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise DemoInputError(f"t must be between 0 and 1, got {value:g}.")
    return value


def morph(model, path_a: Any, path_b: Any, folder, parts: Any = None, t: float = 0.5, crop: bool = True,
          steps: int = MORPH_STEPS) -> MorphResult:
    """Face A with the chosen parts' G_k interpolated from A's (t = 0) to B's (t = 1) before the
    decoder rebuilds it; t = 1 equals the Swap tab's "A + parts of B". Writes ``morph.gif``."""
    k = model.num_parts
    chosen = parse_parts(parts, k)
    t = check_t(t)
    (view_a, _), (view_b, _) = load_pair(path_a, path_b, crop)
    ts = np.linspace(0.0, 1.0, steps).tolist() + [t]
    start = time.perf_counter()
    if chosen:
        out = model.morph_parts(view_a.image, view_b.image, parts=chosen, t=ts)[0]  # (T+1, 3, S, S)
    else:
        out = model.reconstruct(view_a.image).expand(len(ts), -1, -1, -1)
    model_ms = (time.perf_counter() - start) * 1000.0
    frames = to_uint8(out)
    s = model.cfg.input_size
    seen_a, seen_b = _resize(view_a.image, s, s), _resize(view_b.image, s, s)
    names = names_of(model)
    title = f"A, {part_list(chosen, k, names, short=True)} at t = {t:.2f}"
    picture = pad_top(titled_grid([[seen_a, frames[-1], seen_b]], [["A (model input)", title, "B (model input)"]],
                                  cell=MORPH_CELL), GRID_TOP_PAD)
    strip = [pad_top(_resize(f, MORPH_CELL, MORPH_CELL), GRID_TOP_PAD) for f in frames[:-1]]  # the viewer's label
    with folder.staged("morph.gif") as tmp:
        write_gif(strip + strip[-2:0:-1], tmp, fps=8)
    status = (f"A rebuilt with {part_list(chosen, k, names)} moved {t:.0%} of the way to B's representations "
              f"(t = 1 is the Swap tab's result); the animated strip runs t = 0 .. 1 in {steps} steps. "
              f"Model time {model_ms:.0f} ms.")
    if not chosen:
        status += " No parts chosen, so every frame is A's plain reconstruction."
    return MorphResult(picture, str(Path(folder.path) / "morph.gif"), status, frames[:-1])


__all__ = ["FrameResult", "GALLERY_MAX", "GalleryResult", "LIVE_SIDE", "MorphResult", "VideoResult", "check_frame",
           "check_t", "face_sentence", "gallery", "live_frame", "morph", "single_frame", "video", "whole_view",
           "write_jpeg"]
