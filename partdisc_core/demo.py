"""The demo app's model wrapper (``app.py`` is the UI around it): :class:`PartDiscDemo` returns
exactly what each tab shows, as pictures (uint8 arrays) and a status sentence.

* Discover (Fig. 3 and Fig. 1): the part representations G act as K + 1 detectors over the pixel
  features F, giving the soft part maps V, plus the attention of each part token to the patches.
* Swap (Fig. 11): two faces rebuilt with the chosen part representations G_k exchanged.

Uploads are decoded under the demo's limits (:func:`load_image`, by
:func:`partdisc_core.inputs.decode_image`) and cropped to the face (:func:`make_view`); every
refusal is a :class:`DemoInputError` whose text can be shown as is. Nothing here imports gradio.
"""
from __future__ import annotations

import functools
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import viz
from .inputs import DecodedImage, ImageInputError, decode_image, resize, to_uint8
from .keypoints import predict_landmarks
from .partnames import names_of, part_labels
from .viz import titled_grid, with_legend

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


class DemoInputError(ValueError):
    """An input the demo cannot use; the message is meant for the person who sent it."""


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


# --- inputs --------------------------------------------------------------------------------------
def load_image(path: Any, max_side: int = WORK_SIDE, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode an uploaded file under the demo's limits; ``array`` is (H, W, 3) uint8 RGB."""
    if path is None or (isinstance(path, str) and not path.strip()):
        raise DemoInputError("Please upload an image first (or pick an example).")
    if not Path(os.fspath(path)).is_file():
        raise DemoInputError("The uploaded file did not reach the server; please upload it again.")
    try:
        loaded = decode_image(path, max_side=max_side, max_pixels=max_pixels, max_bytes=MAX_FILE_BYTES,
                              min_side=MIN_SIDE)
    except ImageInputError as exc:
        raise DemoInputError(str(exc)) from exc
    if min(loaded.array.shape[:2]) < SMALL_SIDE:
        loaded.notes.append(f"small image ({loaded.array.shape[1]}x{loaded.array.shape[0]}): "
                            "the results will be coarse")
    return loaded


@dataclass
class View:
    """What the model is shown: ``image`` (H, W, 3) uint8 (a square crop of side ``DISPLAY_SIDE``
    when cropping), a sentence on how it was made, and ``valid_box`` (x0, y0, x1, y1): the photo's
    own pixels of ``image`` (a crop larger than the photo is filled around them; None: all)."""

    image: np.ndarray
    message: str
    face_found: bool | None  # None when no crop was asked for
    valid_box: tuple[int, int, int, int] | None = None


def _resize(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    return resize(arr, (width, height))


def make_view(image: np.ndarray, crop: bool = True, side: int = DISPLAY_SIDE) -> View:
    """Crop to the largest face (framed like the training faces: a square about 1.75 x the face
    box, eyes a little above the middle) or keep the whole image; scale to ``side`` pixels."""
    if crop:
        from .facecrop import crop_to_face

        res = crop_to_face(image, output_size=side)
        valid = res.valid_box if res.padded else None
        if res.found:
            extra = f" (largest of {res.num_faces})" if res.num_faces > 1 else ""
            fill = " The photo ends inside the crop: the grey area is not part of it." if valid else ""
            return View(res.image, f"Face found{extra}: cropped to it.{fill}", True, valid)
        return View(res.image, res.message or "No face found: using the centre of the image", False, valid)
    h, w = image.shape[:2]
    s = side / max(h, w)
    out = _resize(image, max(1, round(w * s)), max(1, round(h * s)))
    return View(out, "Whole image (not cropped); the model sees it squeezed to a square.", None)


def real_maps(maps: Any, valid_box: tuple[int, int, int, int] | None, view_size: tuple[int, int]) -> Any:
    """Part maps (K+1, h, w) or (B, K+1, h, w) of a view of (width, height) ``view_size`` with the
    fill around its ``valid_box`` given to the background (the last map), so that no part lies on
    it: not in overlays, label maps, centroids or part areas. A torch tensor stays one."""
    if valid_box is None:
        return maps
    from .facecrop import box_mask

    h, w = maps.shape[-2:]
    inside = box_mask(valid_box, view_size, (w, h))
    if inside.all():
        return maps
    if hasattr(maps, "detach"):
        import torch

        inside = torch.as_tensor(inside, device=maps.device)
        out = maps * inside.to(maps.dtype)
        out[..., -1, :, :] = torch.where(inside, maps[..., -1, :, :], torch.ones_like(maps[..., -1, :, :]))
        return out
    out = np.asarray(maps) * inside
    out[..., -1, :, :] = np.where(inside, maps[..., -1, :, :], 1.0)
    return out


def overlay_view(image: np.ndarray, masks: Any, valid_box: tuple[int, int, int, int] | None, opacity: float = 0.5,
                 hard: bool = True) -> np.ndarray:
    """``viz.overlay_masks`` of a view's part maps, the fill around ``valid_box`` (see
    :func:`real_maps`) left as the plain view."""
    masks = real_maps(masks.cpu().numpy() if hasattr(masks, "cpu") else masks, valid_box, image.shape[1::-1])
    overlay = viz.overlay_masks(image, masks, opacity=float(opacity), hard=bool(hard))
    if valid_box is None:
        return overlay
    from .facecrop import box_mask

    inside = box_mask(valid_box, image.shape[1::-1])
    return overlay if inside.all() else np.where(inside[..., None], overlay, image)


def _file_key(path: Any) -> tuple | None:
    """A file's cache key: its path, size and modification time (a file replaced by another
    upload at the same path gets a new key); None when it cannot be read."""
    try:
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return os.fspath(path), st.st_size, st.st_mtime_ns


def load_view(path: Any, crop: bool = True) -> tuple[View, list[str]]:
    """``load_image`` then ``make_view``, cached per file and crop setting (swapping other parts
    skips decoding and detection)."""
    key = _file_key(path)
    return _view(path, crop) if key is None else _cached_view(key[0], bool(crop), key)


def _view(path: Any, crop: bool, key: tuple | None = None) -> tuple[View, list[str]]:
    loaded = load_image(path)
    return make_view(loaded.array, crop), loaded.notes


_cached_view = functools.lru_cache(maxsize=32)(_view)


def load_pair(path_a: Any, path_b: Any, crop: bool = True) -> list[tuple[View, list[str]]]:
    """The two faces of a swap or a morph as views (with their notes); errors name the image."""
    if path_a is None or path_b is None:
        raise DemoInputError("Please give two images (A and B).")
    views = []
    for name, path in (("A", path_a), ("B", path_b)):
        try:
            views.append(load_view(path, crop))
        except DemoInputError as exc:
            raise DemoInputError(f"Image {name}: {exc}") from exc
    return views


def parse_parts(parts: Any, num_parts: int) -> list[int]:
    """Part numbers 1..K from a list of ints / strings ("3", "part 3") or a string "parts 1, 2"."""
    if parts is None:
        return list(range(1, num_parts + 1))
    if isinstance(parts, (str, int)):
        parts = [parts]
    out: list[int] = []
    for p in parts:
        for item in (re.sub(r"\bparts?", " ", p.lower()).replace(",", " ").split() if isinstance(p, str) else [p]):
            try:
                n = int(float(str(item).strip()))
            except (ValueError, OverflowError):
                raise DemoInputError(f"{item!r} is not a part number (1..{num_parts})") from None
            if not 1 <= n <= num_parts:
                raise DemoInputError(f"part {n} does not exist: this model has parts 1..{num_parts}")
            if n not in out:
                out.append(n)
    return sorted(out)


def part_list(parts: list[int], k: int, names: Sequence[str] | None = None, short: bool = False) -> str:
    """The chosen parts in words: "no parts", "all parts", "part 3 (nose)" or "parts 1 (left eye),
    3 (nose)" ("part 3", "parts 1, 3" without names). ``short`` (picture titles): just the names
    ("left eye, nose"), and "5 parts" for more than two."""
    if not parts:
        return "no parts"
    if parts == list(range(1, k + 1)):
        return "all parts"
    if short and len(parts) > 2:
        return f"{len(parts)} parts"
    if short and names:
        return ", ".join(names[p - 1] for p in parts)
    listed = ", ".join(f"{p} ({names[p - 1]})" if names else str(p) for p in parts)
    return ("part " if len(parts) == 1 else "parts ") + listed


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


# --- the model wrapper ---------------------------------------------------------------------------
@dataclass
class Analysis:
    """The model's answer for one view: soft maps V (K+1, S, S) (the view's fill given to the
    background, :func:`real_maps`) and attention (K+1, h, w)."""

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


@dataclass
class SwapOutput:
    grid: np.ndarray  # 2 rows (A, B) x [input as the model saw it, reconstruction, with swapped parts]
    status: str
    parts: list[int]


class PartDiscDemo:
    """What the demo's tabs show for a model (a PartDiscModel in eval mode). Thread-safe; the
    model's answer per file and crop setting is cached, so redrawing with other display options
    does not rerun it."""

    def __init__(self, model, cache_size: int = 16):
        self.model = model
        self.num_parts = model.num_parts
        self._cached_analysis = functools.lru_cache(maxsize=cache_size)(self._analyse)

    def analyse(self, path: Any, crop: bool = True) -> Analysis:
        """Load, crop and run ``model.predict`` once; cached per file and crop setting."""
        key = _file_key(path)
        return self._analyse(path, crop) if key is None else self._cached_analysis(key[0], bool(crop), key)

    def _analyse(self, path: Any, crop: bool, key: tuple | None = None) -> Analysis:
        view, notes = load_view(path, crop)
        start = time.perf_counter()
        pred = self.model.predict(view.image, output_size=None, return_attention=True)
        model_ms = (time.perf_counter() - start) * 1000.0
        attention = None if pred.attention is None else pred.attention[0].float().cpu().numpy()
        masks = real_maps(pred.masks[0].float().cpu().numpy(), view.valid_box, view.image.shape[1::-1])
        return Analysis(view, masks, attention, notes, model_ms)

    def status_text(self, analysis: Analysis) -> str:
        parts = [_sentence(analysis.view.message)] + [n[0].upper() + n[1:] + "." for n in analysis.notes]
        parts.append(f"K = {self.num_parts} parts; model time {analysis.model_ms:.0f} ms.")
        return " ".join(parts)

    def discover(self, path: Any, crop: bool = True, hard: bool = True, opacity: float = 0.5) -> DiscoverResult:
        """Part masks overlaid on the (cropped) image with a legend, the soft part maps V and the
        part tokens' attention maps, for one image file."""
        a = self.analyse(path, crop)
        k = self.num_parts
        overlay = overlay_view(a.view.image, a.masks, a.view.valid_box, opacity, hard)
        grid = dict(size=TILE, columns=min(k + 1, GRID_COLUMNS),
                    titles=part_labels(k, names_of(self.model)) + ["background"])
        part_maps = viz.pad_top(viz.map_grid(a.masks, normalize=None, cmap="viridis", **grid), GRID_TOP_PAD)
        if a.attention is not None:
            attention = viz.pad_top(viz.map_grid(a.attention, normalize="each", cmap="inferno", **grid), GRID_TOP_PAD)
        else:
            attention = np.full((TILE, TILE, 3), 255, np.uint8)
        status = self.status_text(a) + parts_note(self.model)
        return DiscoverResult(annotate_overlay(self.model, overlay, a.masks), part_maps, attention, status, a)

    def swap(self, path_a: Any, path_b: Any, parts: Any = None, crop: bool = True) -> SwapOutput:
        """Reconstruct faces A and B with the chosen parts' representations G_k exchanged."""
        k = self.num_parts
        chosen = parse_parts(parts, k)
        (view_a, notes_a), (view_b, notes_b) = load_pair(path_a, path_b, crop)
        start = time.perf_counter()
        if chosen:
            res = self.model.swap_parts(view_a.image, view_b.image, parts=chosen)
            sa, sb, ra, rb = (to_uint8(t[0]) for t in (res.swapped_a, res.swapped_b, res.recon_a, res.recon_b))
        else:
            rec = self.model.reconstruct([view_a.image, view_b.image])
            ra, rb = to_uint8(rec[0]), to_uint8(rec[1])
            sa, sb = ra, rb
        model_ms = (time.perf_counter() - start) * 1000.0
        s = self.model.cfg.input_size
        names = names_of(self.model)
        title = part_list(chosen, k, names, short=True)
        grid = viz.pad_top(titled_grid(
            [[_resize(view_a.image, s, s), ra, sa], [_resize(view_b.image, s, s), rb, sb]],
            [["A (model input)", "A reconstructed", f"A + {title} of B"],
             ["B (model input)", "B reconstructed", f"B + {title} of A"]], cell=SWAP_CELL), GRID_TOP_PAD)
        notes = [f"A: {_sentence(view_a.message)}", f"B: {_sentence(view_b.message)}"]
        notes += [f"A: {n}." for n in notes_a] + [f"B: {n}." for n in notes_b]
        if not chosen:
            notes.append("No parts chosen, so the swapped images equal the plain reconstructions.")
        notes.append(f"Exchanged {part_list(chosen, k, names)}; model time {model_ms:.0f} ms.")
        return SwapOutput(grid, " ".join(notes), chosen)

    def warm_up(self) -> None:
        """Run the model and the face detector once, so the first request is not slowed by set-up."""
        blank = np.full((DISPLAY_SIDE, DISPLAY_SIDE, 3), 128, np.uint8)
        make_view(blank, crop=True)
        self.model.predict(blank, output_size=None)
        self.model.swap_parts(blank, blank, parts=[1])


def landmark_dots(model, overlay: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """A part overlay (H, W, 3) uint8 of the maps ``masks`` (K+1, s, s) with the landmarks predicted
    from them as white dots when the model has ``landmarks.json`` (keypoints.py); else unchanged."""
    head = getattr(model, "landmarks", None)
    if head is None:
        return overlay
    side = masks.shape[-1]
    points = predict_landmarks(head, masks)[0] * (overlay.shape[1] / side, overlay.shape[0] / side)
    return viz.draw_points(overlay, points, radius=max(3, overlay.shape[0] // 90))


def annotate_overlay(model, overlay: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """:func:`landmark_dots` and the colour legend below, with the part names when the model has
    ``part_names.json`` (partnames.py): the Discover picture."""
    k = model.num_parts
    return with_legend(landmark_dots(model, overlay, masks), k, names=part_labels(k, names_of(model)))


def parts_note(model) -> str:
    """What :func:`annotate_overlay` adds to the parts, in a sentence or two ("" when nothing)."""
    note = ""
    head = getattr(model, "landmarks", None)
    if head is not None:
        note += (" White dots: the " + ", ".join(head.names) + " as predicted from the parts' centroids "
                 "(a linear map fitted on annotated faces).")
    if names_of(model):
        note += (" Part names: each part is named once, after the face region it covers best on annotated "
                 "faces; left and right are the image's.")
    return note


def discover(model, path: Any, crop: bool = True, hard: bool = True, opacity: float = 0.5) -> DiscoverResult:
    """:meth:`PartDiscDemo.discover` for one call (scripts; the app keeps one PartDiscDemo)."""
    return PartDiscDemo(model).discover(path, crop, hard, opacity)


def swap(model, path_a: Any, path_b: Any, parts: Any = None, crop: bool = True) -> SwapOutput:
    """:meth:`PartDiscDemo.swap` for one call (scripts; the app keeps one PartDiscDemo)."""
    return PartDiscDemo(model).swap(path_a, path_b, parts, crop)


# --- examples ------------------------------------------------------------------------------------
def write_examples(folder: str | Path) -> dict[str, Path]:
    """Write the offline examples (the public-domain portraits of
    :func:`partdisc_core.inputs.portrait` and two generated synthetic faces) as PNGs in ``folder``;
    return {name: path}. A source that is missing is skipped."""
    from PIL import Image

    from .inputs import PORTRAITS, portrait

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def synthetic(i: int):
        from .synthetic import SyntheticFaces

        return to_uint8(SyntheticFaces(size=256).generate(2, seed=3).images[i])

    makers = {name: (lambda name=name: portrait(name)) for name in PORTRAITS}
    makers.update({f"synthetic_face_{i + 1}": (lambda i=i: synthetic(i)) for i in range(2)})
    out: dict[str, Path] = {}
    for name, make in makers.items():
        path = folder / f"{name}.png"
        try:
            if not path.is_file():  # written under a temporary name, so a reader never sees half a file
                tmp = folder / f".{name}.{os.getpid()}.{threading.get_ident()}.png"
                Image.fromarray(np.asarray(make())).convert("RGB").save(tmp)
                os.replace(tmp, path)
            out[name] = path
        except Exception:  # an example is optional; the app works without it
            continue
    return out


__all__ = [
    "Analysis", "DemoInputError", "DiscoverResult", "PartDiscDemo", "SwapOutput", "View",
    "discover", "load_image", "load_model_or_exit", "load_view", "make_view", "overlay_view", "parse_parts",
    "part_list", "parts_note", "annotate_overlay", "landmark_dots", "real_maps", "swap", "write_examples",
]
