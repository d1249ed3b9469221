"""Gradio demo of partdisc: part masks, per-part attention maps and part swapping between two faces.

    python app.py [--checkpoint PATH_OR_HUB_ID] [--port 7860] [--host 127.0.0.1]

The checkpoint also comes from $PARTDISC_CHECKPOINT; by default it is the shipped face model
(checkpoints/faces-k16). API endpoints (gradio_client): ``/discover``, ``/swap``, ``/frame``, ``/video``,
``/gallery`` and ``/morph``; see docs/app.md. (The Live tab's webcam stream is not an API endpoint:
``/frame`` is its one-picture form.)
This file is UI only: the logic lives in partdisc_core.demo and partdisc_core.demo_tabs, the model in
partdisc_core.
"""
from __future__ import annotations

import argparse
import functools
import inspect
import logging
import os
import tempfile
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry or version checks
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning (shared CPUs)

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from partdisc_core import DEFAULT_CHECKPOINT  # noqa: E402
from partdisc_core import demo as core  # noqa: E402
from partdisc_core import demo_tabs  # noqa: E402
from partdisc_core.facecrop import NO_FACE_MESSAGE  # noqa: E402
from partdisc_core.inputs import configure_pil  # noqa: E402
from partdisc_core.media import MAX_VIDEO_BYTES, MAX_VIDEO_SECONDS, VIDEO_EXTENSIONS  # noqa: E402
from partdisc_core.model import cpu_has_native_bf16  # noqa: E402
from partdisc_core.partnames import names_of, part_labels  # noqa: E402
from partdisc_core.result_files import ResultFiles  # noqa: E402
from partdisc_core.tracking import FaceTracker  # noqa: E402
from partdisc_core.viz import part_colors  # noqa: E402

log = logging.getLogger("partdisc.app")

CONCURRENCY = 2
QUEUE_SIZE = 64
"""Requests waiting beyond the running ones; more are refused at once with gradio's "Queue is full!
Please try again." (a busy answer, not a broken one)."""
CACHE_AGE_S = 3600
"""Uploads and result files are deleted this long after they were written."""
LIVE_STREAMS = CONCURRENCY
"""Webcam streams served at once (a concurrency group of their own: a stream holds its slot until it
stops, so it must not hold one of the model requests'); more wait in the queue."""
LIVE_EVERY_S = 0.05
"""The browser sends a camera frame at most every 50 ms (20 frames/s); the server keeps only the
newest frame that arrived while it was busy, so slow answers drop frames instead of queueing them."""
LIVE_TIME_LIMIT_S = 60
"""A webcam stream ends after this many seconds of processing (press record again to go on)."""
PAPER_URL = "https://github.com/Jiahao-UTS/UnsupervisedPart"
LOCAL_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web fonts: the app works offline

EXPLANATION = """
### What you are looking at
The model splits a face into **K parts** (plus background) that it discovered on its own, from
unlabelled face photos: nobody told it what an eye or a mouth is. A small vision transformer, the
*PartFormer*, reads the image with K + 1 learnable part tokens and turns them into one vector per part,
the **part representation G**. Training shows the model two geometrically distorted copies of each
face; each copy is rebuilt from the *other* copy's part representations, spread over the image by the
soft maps **V = softmax(tau * G . F)** (F: a feature vector per pixel). Rebuilding only works if each
G describes one consistent region, so the parts emerge; extra losses keep each part compact (eq. 5) and
of a sensible size (area loss with alpha, eq. 6), and different faces' parts distinct (eq. 8).

* **Overlay**: every pixel coloured by its most likely part (or mixed by V in soft mode).
* **White dots** (when the checkpoint has `landmarks.json`): eyes, nose and mouth corners predicted
  from the parts' centroids by a linear map (the paper's landmark evaluation).
* **Part names** (when the checkpoint has `part_names.json`): each part has one name for the model,
  after the face region it covers best on faces with 68 annotated points; *left* and *right* are the
  image's left and right (the person's right eye is the "left eye").
* **Soft part maps**: V for each part, 0 (dark) to 1 (yellow).
* **Attention maps**: where each part token looks in the image, averaged over the PartFormer's heads
  and layers (Fig. 1 of the paper).
* **Swap**: the chosen parts' representations G_k are exchanged between two faces before rebuilding
  them (Fig. 11): eyes, mouths or hair travel from one face to the other.
* **Morph**: the chosen G_k are moved only part of the way, (1 - t) G_k(A) + t G_k(B): t = 1 is the swap.

Paper: J. Xia et al., *Unsupervised Part Discovery via Dual Representation Alignment*, IEEE TPAMI.
Authors' code: [{url}]({url}). This demo runs a re-implementation on the CPU.
"""


# Components are customised per instance: subclassing a gradio component makes gradio write a
# .pyi stub next to this file at import time.
def image_file(**kwargs) -> gr.Image:
    """An image input that hands the uploaded file's path to the function without decoding it:
    partdisc_core.demo.load_image decodes it under limits, so bad files get clear messages
    (gr.Image's own preprocessing opens the file first and fails with a bare error)."""
    component = gr.Image(type="filepath", sources=["upload", "clipboard"], **kwargs)
    decode = component.preprocess

    def preprocess(payload):
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):  # base64 payloads: let gradio decode
            try:
                return decode(payload)
            except Exception as exc:
                raise gr.Error(f"This image could not be read ({type(exc).__name__}).", print_exception=False)
        return None if payload.path is None else str(payload.path)

    component.preprocess = preprocess
    return component


def video_file(**kwargs) -> gr.File:
    """An upload box for a clip in any container partdisc_core.media reads, GIF included (gr.Video's
    upload box takes only ``video/*`` files, and a GIF is ``image/gif``), that hands the file's path
    to the function as it is (its API value is a file, as gr.Video's is): gr.Video's own preprocessing
    may run an ffmpeg binary; partdisc_core.media.VideoReader decodes the clip under limits (PyAV) and
    gives bad or too long clips, and other files, clear messages."""
    component = gr.File(file_count="single", file_types=list(VIDEO_EXTENSIONS), type="filepath", **kwargs)
    component.preprocess = lambda payload: None if payload is None or payload.path is None else str(payload.path)
    return component


def camera(**kwargs) -> gr.Image:
    """The webcam, streaming frames as numpy arrays; a frame that cannot be decoded is a clear
    message (demo_tabs.check_frame checks the rest)."""
    component = gr.Image(sources=["webcam"], streaming=True, type="numpy", **kwargs)
    decode = component.preprocess

    def preprocess(payload):
        try:
            return decode(payload)
        except Exception as exc:
            raise gr.Error(f"This camera frame could not be read ({type(exc).__name__}).", print_exception=False)

    component.preprocess = preprocess
    return component


def fraction(**kwargs) -> gr.Slider:
    """A 0..1 slider whose API value reaches the function unchecked, so that
    partdisc_core.demo_tabs.check_t refuses a bad one with a clear message (gr.Slider's own check
    answers a non-number with a bare TypeError)."""
    component = gr.Slider(0.0, 1.0, **kwargs)
    component.preprocess = lambda payload: payload
    return component


def part_numbers(k: int, names: Sequence[str] | None = None, **kwargs) -> gr.CheckboxGroup:
    """Checkboxes for parts 1..K labelled as the legends label them ("3 · nose" with the model's part
    names, else "part 3"; :func:`swatch_css` puts each part's colour beside it), whose API value is a
    list of part numbers, checked by partdisc_core.demo.parse_parts (ints or strings such as "3")
    with a clear message."""
    component = gr.CheckboxGroup([(label, i) for i, label in enumerate(part_labels(k, names), 1)],
                                 value=list(range(1, k + 1)), **kwargs)
    component.preprocess = lambda payload: list(payload or [])
    named = f" ({', '.join(part_labels(k, names))})" if names else ""
    component.api_info = lambda: {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": k},
                                  "description": f"part numbers 1..{k}{named}"}
    return component


PART_PICKERS = ("swap-parts", "morph-parts")
PICKER_INFO = "Colours, numbers and names as in the Discover legend"
"""The elem_ids of the part checkboxes that :func:`swatch_css` colours."""


def swatch_css(k: int) -> str:
    """CSS for the page: a swatch of each part's legend colour (viz.part_colors) before its label in
    the Swap and Morph part checkboxes (``PART_PICKERS``), so that they read like the legends."""
    rules = [f"#{p} label > span::before {{content: ''; display: inline-block; width: 0.85em; height: 0.85em; "
             "margin-right: 0.4em; vertical-align: -0.08em; border: 1px solid rgba(0, 0, 0, 0.45); "
             "background: var(--part-colour);}" for p in PART_PICKERS]
    rules += [f"#{p} label:nth-of-type({i}) {{--part-colour: #{r:02x}{g:02x}{b:02x};}}"
              for p in PART_PICKERS for i, (r, g, b) in enumerate(part_colors(k)[:k].tolist(), 1)]
    return "\n".join(rules)


def result_image(**kwargs) -> gr.Image:
    """An output picture: the handler returns an array, ``ResultFiles.wrap`` turns it into the
    path of a PNG of its own request, which gradio serves as it is (a path the handler wrote
    itself, such as a GIF or a JPEG, is served as it is too)."""
    return gr.Image(format="png", type="filepath", interactive=False, **kwargs)


def two_faces(prefix: str, height: int) -> tuple[gr.Image, gr.Image]:
    """Face A and face B side by side (the Swap and Morph tabs), elem_ids ``<prefix>-a`` / ``-b``."""
    with gr.Row():
        return (image_file(label="Face A", height=height, elem_id=f"{prefix}-a"),
                image_file(label="Face B", height=height, elem_id=f"{prefix}-b"))


def opacity_slider() -> gr.Slider:
    """The overlay's opacity, as every tab with an overlay offers it."""
    return gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity")


def follow_and_opacity() -> tuple[gr.Checkbox, gr.Slider]:
    """The Live and Video tabs' options, side by side: follow the face (or the whole frame) and opacity."""
    with gr.Row():
        crop = gr.Checkbox(value=True, label="Follow the face", info="Off: the whole frame")
        return crop, opacity_slider()


def result_file(**kwargs) -> gr.File:
    """An output file for download (a path the handler wrote into its request folder)."""
    return gr.File(interactive=False, **kwargs)


def _user_error(exc: Exception) -> gr.Error:
    if isinstance(exc, core.DemoInputError):
        return gr.Error(str(exc), print_exception=False)
    log.exception("request failed")
    return gr.Error(f"Something went wrong ({type(exc).__name__}: {exc}). Please try another image.",
                    print_exception=False)


class Told:
    """What one browser session has been shown in pop-ups for the input files it sent last: the
    problems (messages) told since those files arrived. Each tab keeps one in a ``gr.State`` that
    handlers change in place (a handler that raises an error returns no new state)."""

    def __init__(self) -> None:
        self.files: tuple | None = None
        self.seen: set[str] = set()

    def start(self, files: tuple) -> None:
        """A request on ``files``: other files than the last request's (a new upload, or none) start afresh."""
        if files != self.files:
            self.files, self.seen = files, set()

    def first(self, message: str) -> bool:
        """Whether ``message`` is new for the current files; it is remembered either way."""
        new = message not in self.seen
        self.seen.add(message)
        return new


_TELLING: ContextVar[Told | None] = ContextVar("partdisc_telling", default=None)
"""The browser session's Told while :func:`once_per_problem` runs a handler."""


def warn(message: str) -> None:
    """A pop-up warning; in the browser only once for the same input files (:func:`once_per_problem`).
    The status text says it too, so nothing is lost."""
    told = _TELLING.get()
    if told is None or told.first(message):
        gr.Warning(message)


def _files(args: Sequence[Any]) -> tuple:
    """The input files of a request (paths, and lists of them), as the key of "the same input"."""
    return tuple(a if isinstance(a, str) else tuple(a) for a in args
                 if isinstance(a, str) or (isinstance(a, (list, tuple)) and all(isinstance(x, str) for x in a)))


def once_per_problem(fn: Callable, outputs: int) -> Callable:
    """``fn`` as the browser's events call it, with the tab's :class:`Told` as one more, last input:
    a warning or an error that this session was already shown for the same input files is not shown
    again (uploading a picture and then pressing the button is one problem, one message): the warning
    is dropped (the status says it), the error becomes the status (the last of ``outputs``) and the
    other outputs are cleared. New files (or none) start afresh. The API endpoints call ``fn``
    itself: every call gets its error."""
    signature = inspect.signature(fn)
    told_param = inspect.Parameter("told", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)

    @functools.wraps(fn)
    def run(*args):
        *args, told = args
        told.start(_files(args))
        token = _TELLING.set(told)
        try:
            return fn(*args)
        except gr.Error as exc:
            if told.first(str(exc.message)):
                raise
            return (None,) * (outputs - 1) + (str(exc.message),)
        finally:
            _TELLING.reset(token)

    run.__signature__ = signature.replace(parameters=[*signature.parameters.values(), told_param])
    return run


def browser_event(trigger: Callable, results: ResultFiles, fn: Callable, names: Sequence[str], inputs: list,
                  outputs: list, told: gr.State, **options) -> None:
    """``trigger`` (a component's event, e.g. ``button.click``) runs ``fn`` for the browser only, each
    problem told once (:func:`once_per_problem`), in the model's concurrency group."""
    trigger(results.wrap(once_per_problem(fn, len(outputs)), names), [*inputs, told], outputs,
            api_visibility="private", **options, **RUN)


def api_endpoint(results: ResultFiles, fn: Callable, names: Sequence[str], inputs: list, outputs: list,
                 api_name: str, api_description: str) -> None:
    """The API endpoint ``/api_name``: ``fn`` on ``inputs``, an event without a trigger in the page
    (the page's buttons run the same ``fn`` through :func:`browser_event`)."""
    gr.on([], results.wrap(fn, names), inputs, outputs, api_name=api_name, api_description=api_description, **RUN)


class _SnapshotSet(set):
    """A set whose iteration walks a copy taken in one step (``list()`` of a set holds the GIL).
    Gradio's delete_cache pass iterates the app's temp-file sets in a worker thread while requests
    add to them; a plain set then raises "Set changed size during iteration", which ends gradio's
    deletion schedule for good: nothing would be deleted again until a restart."""

    def __iter__(self):
        return iter(list(set.__iter__(self)))


def keep_deleting_under_load(app: gr.Blocks) -> None:
    """Replace the temp-file sets of ``app`` and its blocks (uploads and answers that delete_cache
    removes when they expire) by sets that delete_cache can walk while requests add to them."""
    swapped: dict[int, _SnapshotSet] = {}

    def safe(files: set) -> _SnapshotSet:
        if id(files) not in swapped:
            swapped[id(files)] = _SnapshotSet(files)
        return swapped[id(files)]

    app.upload_file_set = safe(app.upload_file_set)
    app.temp_file_sets = [safe(files) for files in app.temp_file_sets]
    for block in (app, *app.blocks.values()):
        block.temp_files = safe(block.temp_files)


def result_files(cache_age_s: float = CACHE_AGE_S) -> ResultFiles:
    """Per-request folders for the answers' files inside gradio's upload folder (so gradio serves
    them as they are, without copying), expiring with the uploads; empty folders that gradio's own
    clean-up leaves behind are swept on the same schedule."""
    upload_folder = Path(gr.utils.get_upload_folder())
    return ResultFiles(upload_folder / "partdisc-results", max_age_s=cache_age_s, sweep_roots=[upload_folder])


def build_demo(model, examples: dict[str, Path] | None = None, checkpoint_name: str = "",
               results: ResultFiles | None = None, queue_size: int = QUEUE_SIZE,
               cache_age_s: float = CACHE_AGE_S) -> gr.Blocks:
    """The Blocks app around ``model`` (a PartDiscModel in eval mode).

    Each tab is one function (``discover_tab``, ``swap_tab``, ``live_tab``, ``video_tab``,
    ``gallery_tab``, ``morph_tab``: a new tab is another, called below). Every handler is
    registered through ``results.wrap``: the pictures it returns become files written once, in a
    folder of their own request, never rewritten while a response streams them (gradio would write
    equal pictures to one shared path; see docs/app.md); a handler that makes other files (videos,
    archives, GIFs, the live JPEGs) writes them into ``results.request()``."""
    demo = core.PartDiscDemo(model)
    results = results or result_files(cache_age_s)
    examples = examples or {}
    model_line = f"Model: `{checkpoint_name}`, K = {model.num_parts} parts, {model.cfg.encoder} encoder." \
        if checkpoint_name else ""
    with gr.Blocks(title="partdisc: unsupervised part discovery",
                   delete_cache=(max(1, int(cache_age_s) // 2), int(cache_age_s))) as app:
        gr.Markdown(
            "# Unsupervised part discovery\n"
            "Drop in a face and see the parts a model found without any labels, where each part token "
            f"looks, and what happens when two faces swap parts. {model_line} "
            f"[Paper code]({PAPER_URL})")
        discover_tab(demo, results, examples)
        swap_tab(demo, results, examples)
        live_tab(demo, results)
        video_tab(demo, results)
        gallery_tab(demo, results, examples)
        morph_tab(demo, results, examples)
        with gr.Accordion("How it works", open=False):
            gr.Markdown(EXPLANATION.format(url=PAPER_URL))
    keep_deleting_under_load(app)
    app.queue(default_concurrency_limit=CONCURRENCY, max_size=queue_size)
    return app


RUN = dict(concurrency_id="model", concurrency_limit=CONCURRENCY)
"""Every model call shares one concurrency group: at most CONCURRENCY run at once."""
QUIET = dict(trigger_mode="always_last")
"""Events of a new image or a changed option (browser_event): only the last one runs."""


def discover_tab(demo: core.PartDiscDemo, results: ResultFiles, examples: dict[str, Path]) -> None:
    """The Discover tab and its ``/discover`` endpoint."""
    names = list(examples)

    def discover(image, crop=True, hard=True, opacity=0.5):
        try:
            r = demo.discover(image, crop=crop, hard=hard, opacity=opacity)
        except Exception as exc:
            raise _user_error(exc) from None
        if r.analysis.view.face_found is False:
            warn(r.analysis.view.message)
        return r.overlay, r.part_maps, r.attention, r.status

    def on_new_image(image, crop, hard, opacity):  # a new image or option; nothing to show without an image
        if image is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return discover(image, crop, hard, opacity)

    files = ("overlay", "part_maps", "attention", "status")
    with gr.Tab("Discover"):
        with gr.Row():
            with gr.Column(scale=2, min_width=280):
                image = image_file(label="Image", height=300, elem_id="discover-input")
                crop = gr.Checkbox(value=True, label="Crop to the face",
                                   info="Detect the largest face and frame it like the training photos")
                with gr.Row():
                    hard = gr.Checkbox(value=True, label="Hard masks", info="Off: blend colours by V")
                    opacity = opacity_slider()
                button = gr.Button("Discover parts", variant="primary", elem_id="discover-button")
                if names:
                    gr.Examples([[str(examples[n])] for n in names], inputs=[image], label="Examples",
                                example_labels=[n.replace("_", " ") for n in names], cache_examples=False)
            with gr.Column(scale=3, min_width=320):
                overlay = result_image(label="Parts", elem_id="discover-overlay")
                status = gr.Textbox(label="Status", interactive=False, lines=2, elem_id="discover-status")
        with gr.Row():
            with gr.Column(min_width=320):
                gr.Markdown("**Soft part maps V**: the probability of each part at each pixel, "
                            "0 (dark) to 1 (yellow).")
                part_maps = result_image(label="Soft part maps", show_label=False, elem_id="discover-maps")
            with gr.Column(min_width=320):
                gr.Markdown("**Attention maps**: where each part token looks among the image patches, "
                            "averaged over heads and layers (Fig. 1 of the paper); each map scaled to "
                            "its own range.")
                attention = result_image(label="Attention maps", show_label=False, elem_id="discover-attention")
        inputs, outputs, told = [image, crop, hard, opacity], [overlay, part_maps, attention, status], gr.State(Told())
        api_endpoint(results, discover, files, inputs, outputs, "discover",
                     "Part masks overlay with legend, soft part maps and attention maps of one image (crop to "
                     "face, hard masks, opacity).")
        browser_event(button.click, results, discover, files, inputs, outputs, told)
        for change in (image.change, crop.change, hard.change, opacity.release):
            browser_event(change, results, on_new_image, files, inputs, outputs, told, **QUIET)


def swap_tab(demo: core.PartDiscDemo, results: ResultFiles, examples: dict[str, Path]) -> None:
    """The Swap tab and its ``/swap`` endpoint."""
    names = list(examples)

    def swap(image_a, image_b, parts=None, crop=True):
        try:
            out = demo.swap(image_a, image_b, parts=parts, crop=crop)
        except Exception as exc:
            raise _user_error(exc) from None
        return out.grid, out.status

    def reswap(image_a, image_b, parts, crop):
        if image_a is None or image_b is None:
            return gr.skip(), gr.skip()
        return swap(image_a, image_b, parts, crop)

    files = ("swap", "status")
    with gr.Tab("Swap"):
        image_a, image_b = two_faces("swap", 260)
        with gr.Row():
            parts = part_numbers(demo.num_parts, names_of(demo.model), label="Parts to exchange",
                                 info=PICKER_INFO, scale=3, elem_id="swap-parts")
            swap_crop = gr.Checkbox(value=True, label="Crop to the faces", scale=1)
            swap_button = gr.Button("Swap parts", variant="primary", scale=1, elem_id="swap-button")
        if len(names) >= 2:
            pairs = [(names[i], names[j]) for i, j in ((0, 1), (2, 3), (1, 2)) if j < len(names)]
            gr.Examples([[str(examples[a]), str(examples[b])] for a, b in pairs], inputs=[image_a, image_b],
                        label="Example pairs", cache_examples=False,
                        example_labels=[f"{a} + {b}".replace("_", " ") for a, b in pairs])
        gr.Markdown("Rows: face A, face B. Columns: the input as the model saw it, its plain "
                    "reconstruction, and its reconstruction with the chosen parts taken from the other face.")
        swap_out = result_image(label="Swapped", elem_id="swap-output")
        swap_status = gr.Textbox(label="Status", interactive=False, lines=2, elem_id="swap-status")
        inputs, outputs, told = [image_a, image_b, parts, swap_crop], [swap_out, swap_status], gr.State(Told())
        api_endpoint(results, swap, files, inputs, outputs, "swap",
                     "Reconstruct faces A and B with the listed parts (1..K) exchanged, next to their plain "
                     "reconstructions.")
        browser_event(swap_button.click, results, swap, files, inputs, outputs, told)
        for control in (image_a, image_b):
            browser_event(control.change, results, reswap, files, inputs, outputs, told, **QUIET)


def live_tab(demo: core.PartDiscDemo, results: ResultFiles) -> None:
    """The Live tab: the webcam stream (a UI-only streaming event; one FaceTracker per browser
    session in a gr.State) and its one-picture form, the ``/frame`` endpoint."""
    model = demo.model

    def live(frame, crop=True, opacity=0.5, tracker=None):
        tracker = tracker if isinstance(tracker, FaceTracker) else FaceTracker()
        try:
            r = demo_tabs.live_frame(model, frame, tracker, crop=crop, opacity=opacity)
            path = demo_tabs.write_jpeg(results.request(), "overlay", r.overlay)
        except Exception as exc:
            raise _user_error(exc) from None
        return path, r.status, tracker

    def frame(image, crop=True, opacity=0.5):
        try:
            r = demo_tabs.single_frame(model, image, crop=crop, opacity=opacity)
        except Exception as exc:
            raise _user_error(exc) from None
        if r.found is False:
            warn(NO_FACE_MESSAGE)
        return r.overlay, r.status

    with gr.Tab("Live"):
        gr.Markdown("Press record: every camera frame comes back with its parts. The crop follows your face "
                    f"smoothly; a stream runs {LIVE_TIME_LIMIT_S} s at a time (press record again to go on).")
        with gr.Row():
            with gr.Column(min_width=300):
                webcam = camera(label="Camera", height=360, elem_id="live-camera")
                crop, opacity = follow_and_opacity()
            with gr.Column(min_width=300):
                overlay = result_image(label="Parts", height=360, elem_id="live-overlay")
                status = gr.Textbox(label="Status", interactive=False, lines=2, elem_id="live-status")
        tracker = gr.State(None)
        webcam.stream(results.wrap(live, ("overlay", "status", "tracker")), [webcam, crop, opacity, tracker],
                      [overlay, status, tracker], api_visibility="private", show_progress="hidden",
                      stream_every=LIVE_EVERY_S, time_limit=LIVE_TIME_LIMIT_S, concurrency_id="live",
                      concurrency_limit=LIVE_STREAMS)
        with gr.Accordion("One picture instead of the camera (the /frame endpoint)", open=False):
            with gr.Row():
                picture = image_file(label="Picture", height=260, elem_id="frame-input")
                with gr.Column():
                    frame_crop = gr.Checkbox(value=True, label="Crop to the face")
                    frame_opacity = opacity_slider()
                    button = gr.Button("Show parts", variant="primary", elem_id="frame-button")
        inputs, outputs, files = [picture, frame_crop, frame_opacity], [overlay, status], ("overlay", "status")
        api_endpoint(results, frame, files, inputs, outputs, "frame",
                     f"One picture treated as a camera frame: the part overlay on a {demo_tabs.LIVE_SIDE}-px face "
                     "crop (crop, opacity).")
        browser_event(button.click, results, frame, files, inputs, outputs, gr.State(Told()))


def video_tab(demo: core.PartDiscDemo, results: ResultFiles) -> None:
    """The Video tab and its ``/video`` endpoint."""
    model = demo.model

    def video(clip, crop=True, opacity=0.5, progress=gr.Progress()):
        try:
            r = demo_tabs.video(model, clip, results.request(), crop=crop, opacity=opacity,
                                progress=lambda done, what: progress(done, desc=what))
        except Exception as exc:
            raise _user_error(exc) from None
        return r.video_path, r.csv_path, r.status

    with gr.Tab("Video"):
        gr.Markdown(f"A clip of up to {MAX_VIDEO_SECONDS:.0f} s (MP4, WebM, MOV, MKV or GIF, at most "
                    f"{MAX_VIDEO_BYTES // 2**20} MB): every frame comes back with its parts, as an MP4, with "
                    "each part's centroid in every frame as a CSV.")
        with gr.Row():
            with gr.Column(min_width=300):
                clip = video_file(label="Clip", height=320, elem_id="video-input")
                crop, opacity = follow_and_opacity()
                button = gr.Button("Find parts in every frame", variant="primary", elem_id="video-button")
            with gr.Column(min_width=300):
                out = gr.Video(label="Parts", height=320, interactive=False, elem_id="video-output")
                tracks = result_file(label="Part centroids per frame (CSV)", elem_id="video-csv")
                status = gr.Textbox(label="Status", interactive=False, lines=3, elem_id="video-status")
        inputs, outputs, files = [clip, crop, opacity], [out, tracks, status], ("video", "tracks", "status")
        api_endpoint(results, video, files, inputs, outputs, "video",
                     "An MP4 (H.264) with the parts on every frame of a clip, and a CSV of every part's centroid "
                     "per frame.")
        browser_event(button.click, results, video, files, inputs, outputs, gr.State(Told()))


def gallery_tab(demo: core.PartDiscDemo, results: ResultFiles, examples: dict[str, Path]) -> None:
    """The Gallery tab and its ``/gallery`` endpoint."""
    model = demo.model

    def gallery(files, crop=True, opacity=0.5):
        try:
            r = demo_tabs.gallery(model, files, results.request(), crop=crop, opacity=opacity)
        except Exception as exc:
            raise _user_error(exc) from None
        return r.grid, r.zip_path, r.status

    with gr.Tab("Gallery"):
        gr.Markdown(f"Up to {demo_tabs.GALLERY_MAX} faces in one grid, every part in the same colour on every "
                    "face; the zip holds each face's label map (palette PNG), the face as the model saw it "
                    "and the part centroids (CSV), as `train/export.py` writes them.")
        with gr.Row():
            with gr.Column(scale=2, min_width=280):
                files = gr.File(file_count="multiple", type="filepath", label="Faces", height=260,
                                elem_id="gallery-input")
                with gr.Row():
                    crop = gr.Checkbox(value=True, label="Crop to the faces")
                    opacity = opacity_slider()
                button = gr.Button("Show the parts of every face", variant="primary", elem_id="gallery-button")
                if examples:
                    gr.Examples([[[str(p) for p in examples.values()]]], inputs=[files], label="Example",
                                example_labels=["all the examples"], cache_examples=False)
            with gr.Column(scale=3, min_width=320):
                grid = result_image(label="Parts", elem_id="gallery-output")
                archive = result_file(label="Label maps and centroids (zip)", elem_id="gallery-zip")
                status = gr.Textbox(label="Status", interactive=False, lines=2, elem_id="gallery-status")
        inputs, outputs, answers = [files, crop, opacity], [grid, archive, status], ("gallery", "zip", "status")
        api_endpoint(results, gallery, answers, inputs, outputs, "gallery",
                     f"Up to {demo_tabs.GALLERY_MAX} faces in one grid with shared part colours, and a zip of their "
                     "label maps and part centroids.")
        browser_event(button.click, results, gallery, answers, inputs, outputs, gr.State(Told()))


def morph_tab(demo: core.PartDiscDemo, results: ResultFiles, examples: dict[str, Path]) -> None:
    """The Morph tab and its ``/morph`` endpoint."""
    model = demo.model
    names = list(examples)

    def morph(image_a, image_b, parts=None, t=0.5, crop=True):
        try:
            r = demo_tabs.morph(model, image_a, image_b, results.request(), parts=parts, t=t, crop=crop)
        except Exception as exc:
            raise _user_error(exc) from None
        return r.picture, r.strip_path, r.status

    def remorph(image_a, image_b, parts, t, crop):
        if image_a is None or image_b is None:
            return gr.skip(), gr.skip(), gr.skip()
        return morph(image_a, image_b, parts, t, crop)

    files = ("morph", "strip", "status")
    with gr.Tab("Morph"):
        gr.Markdown("Face A with the chosen parts' representations G_k moved a fraction t of the way to face "
                    "B's: t = 0 is A's plain reconstruction, t = 1 the Swap tab's \"A + parts of B\".")
        image_a, image_b = two_faces("morph", 240)
        parts = part_numbers(demo.num_parts, names_of(model), label="Parts to morph", info=PICKER_INFO,
                             elem_id="morph-parts")
        with gr.Row():
            t = fraction(value=0.5, step=0.05, label="t", scale=3, elem_id="morph-t")
            crop = gr.Checkbox(value=True, label="Crop to the faces", scale=1)
            button = gr.Button("Morph", variant="primary", scale=1, elem_id="morph-button")
        if len(names) >= 2:
            gr.Examples([[str(examples[names[0]]), str(examples[names[1]])]], inputs=[image_a, image_b],
                        label="Example pair", cache_examples=False,
                        example_labels=[f"{names[0]} + {names[1]}".replace("_", " ")])
        with gr.Row():
            picture = result_image(label="A, A morphed at t, B", scale=3, elem_id="morph-output")
            strip = result_image(label="t = 0 .. 1 (animated GIF)", scale=1, elem_id="morph-strip")
        status = gr.Textbox(label="Status", interactive=False, lines=2, elem_id="morph-status")
        inputs, outputs, told = [image_a, image_b, parts, t, crop], [picture, strip, status], gr.State(Told())
        api_endpoint(results, morph, files, inputs, outputs, "morph",
                     "Face A with the listed parts (1..K) moved t (0..1) of the way to face B's (t = 1: the /swap "
                     "result), and an animated GIF of t = 0..1.")
        browser_event(button.click, results, morph, files, inputs, outputs, told)
        browser_event(t.release, results, remorph, files, inputs, outputs, told, **QUIET)


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=os.environ.get("PARTDISC_CHECKPOINT") or None,
                   help="checkpoint folder, .safetensors file or hub repo id ($PARTDISC_CHECKPOINT; "
                        f"default: the shipped {DEFAULT_CHECKPOINT.parent.name}/{DEFAULT_CHECKPOINT.name})")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to serve on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--threads", type=int, default=int(os.environ.get("PARTDISC_THREADS", 0)) or None,
                   help="torch CPU threads (default: CPU cores / concurrent requests)")
    p.add_argument("--examples-dir", default=os.environ.get("PARTDISC_EXAMPLES_DIR")
                   or str(Path(tempfile.gettempdir()) / "partdisc-examples"),
                   help="where the example images are written at start-up")
    p.add_argument("--queue-size", type=int, default=int(os.environ.get("PARTDISC_QUEUE_SIZE", QUEUE_SIZE)),
                   help="requests that may wait; more get a busy answer ($PARTDISC_QUEUE_SIZE)")
    p.add_argument("--cache-age", type=float, default=float(os.environ.get("PARTDISC_CACHE_AGE", CACHE_AGE_S)),
                   help="seconds after which uploads and result files are deleted ($PARTDISC_CACHE_AGE)")
    p.add_argument("--bf16-cpu", action=argparse.BooleanOptionalAction,
                   default=os.environ.get("PARTDISC_BF16_CPU", "1") != "0",
                   help="bf16 inference on CPUs with native bf16 (AVX512-BF16); float32 elsewhere")
    return p.parse_args(argv)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    start = time.perf_counter()
    args = _parse(argv)
    threads = args.threads or max(1, (os.cpu_count() or 1) // CONCURRENCY)
    torch.set_num_threads(threads)
    configure_pil(core.MAX_PIXELS)
    model = core.load_model_or_exit(args.checkpoint)
    if model.device.type == "cpu" and args.bf16_cpu and cpu_has_native_bf16():
        model.inference_dtype = torch.bfloat16  # labels agree with float32 on 99.7 % of pixels
    core.PartDiscDemo(model).warm_up()
    examples = core.write_examples(args.examples_dir)
    if args.checkpoint is None:
        name = f"{DEFAULT_CHECKPOINT.parent.name}/{DEFAULT_CHECKPOINT.name}"
    else:
        name = Path(args.checkpoint).name if Path(args.checkpoint).exists() else args.checkpoint
    results = result_files(args.cache_age)
    app = build_demo(model, examples, checkpoint_name=name, results=results, queue_size=args.queue_size,
                     cache_age_s=args.cache_age)
    log.info("model ready in %.1f s (K=%d, %d torch threads)", time.perf_counter() - start, model.num_parts, threads)
    try:
        app.launch(server_name=args.host, server_port=args.port, max_file_size="50mb", ssr_mode=False,
                   allowed_paths=[str(Path(args.examples_dir).resolve())], show_error=True,
                   theme=gr.themes.Soft(font=LOCAL_FONTS, font_mono=["ui-monospace", "monospace"]),
                   css=swatch_css(model.num_parts), footer_links=["api"])
    finally:
        results.close()

if __name__ == "__main__":
    main()
