"""Shared fixtures: the tiny model (``partdisc_core.testing``: width 64, 2 blocks, K = 4, 64-px
inputs, a MobileNetV2 perceptual network) and checkpoints written under ``tmp_path``; the demo app
served once per session for the API and browser tests (``server``), and the browser they drive
(``page``: Debian's Chromium through Playwright, with a fake camera that films a moving face)."""
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub

import pytest  # noqa: E402
import torch  # noqa: E402

from partdisc_core import PartDiscConfig, PartDiscModel, save_model  # noqa: E402
from partdisc_core.testing import TINY, tiny_config  # noqa: E402,F401  (tests import them from here)

# Tiny tensors: one thread avoids oversubscription on a shared small CPU.
torch.set_num_threads(1)


def tiny_model(seed: int = 0, **changes) -> PartDiscModel:
    torch.manual_seed(seed)
    return PartDiscModel(tiny_config(**changes))


def random_views(batch: int = 2, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (B, 3, size, size) image batches in [0, 1] (a smooth pattern plus noise)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, 3, size // 8, size // 8, generator=g)
    base = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    noise = torch.rand(batch, 3, size, size, generator=g) * 0.2
    v1 = (0.8 * base + noise).clamp(0, 1)
    return v1, v1.flip(-1)


@pytest.fixture(scope="session")
def tiny_cfg() -> PartDiscConfig:
    return tiny_config()


@pytest.fixture
def model(tiny_cfg) -> PartDiscModel:
    """A fresh tiny model in training mode (tests may change it)."""
    torch.manual_seed(0)
    return PartDiscModel(tiny_cfg)


@pytest.fixture(scope="session")
def eval_model(tiny_cfg) -> PartDiscModel:
    """A shared tiny model in eval mode; tests must not modify it."""
    torch.manual_seed(1)
    return PartDiscModel(tiny_cfg).eval()


@pytest.fixture
def checkpoint_dir(tmp_path, model):
    """(model, folder) with the model saved in float32 to ``tmp_path / "ckpt"``."""
    folder = save_model(model, tmp_path / "ckpt", dtype=None)
    return model, folder


# --- the demo app: one server for the API and browser tests ------------------------------------------
@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """``python app.py`` with a tiny random K = 4 model on a free loopback port, started once for the
    session's API and browser tests (``tests/app_server.py``); ``test_app_load.py`` starts one of its
    own, which it loads hard."""
    from app_server import tiny_app_server

    with tiny_app_server(tmp_path_factory.mktemp("app")) as proc:
        yield proc
    print(proc.log_text()[-2000:])


# --- the browser -------------------------------------------------------------------------------------
from app_server import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (shared with scripts/screenshot_tabs.py)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
"""Screenshots of the browser tests (git-ignored)."""


def require_browser():
    """Playwright's sync API, or skip the calling test module: without Playwright, or without a
    Chromium at ``CHROMIUM`` ($PARTDISC_CHROMIUM; the tests never download a browser)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)
    return sync_api


def write_y4m(frames, path: Path, fps: int = 10) -> Path:
    """Raw frames (N, H, W, 3) uint8 as a Y4M clip, the format Chromium's fake camera plays (in a
    loop) with ``--use-file-for-fake-video-capture``."""
    from app_server import encode_clip

    return encode_clip(frames, path, fps, "yuv4mpegpipe", "rawvideo")


@pytest.fixture(scope="session")
def camera_clip(tmp_path_factory) -> Path:
    """What the browser's fake camera films: a face swaying left and right, 640x480, 2 s looped."""
    from partdisc_core.testing import moving_face_frames

    return write_y4m(moving_face_frames(20), tmp_path_factory.mktemp("camera") / "face.y4m")


@contextmanager
def browser_page(url: str, camera: Path | None = None):
    """A page of headless Chromium (``CHROMIUM``, driven by Playwright) opened at ``url``, 1280x900,
    30 s default timeout; ``camera`` is the clip its fake webcam films. Skips when Chromium does
    not start under this Playwright."""
    sync_api = require_browser()
    args = CHROMIUM_ARGS + ([f"--use-file-for-fake-video-capture={camera}"] if camera else [])
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        except Exception as exc:  # e.g. a Chromium too old or too new for this Playwright
            pytest.skip(f"Chromium did not start under Playwright: {exc}")
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(30_000)
            page.goto(url, wait_until="domcontentloaded")
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(server, camera_clip):
    """A browser page on the session's app, one per test module (tests in a module share it, in order)."""
    with browser_page(server.url, camera=camera_clip) as pg:
        yield pg


def loaded_image(page, elem_id: str, previous: str | None = None) -> dict:
    """Wait until the output image component shows a loaded picture (different from `previous`) and
    return its ``src``, ``width`` and ``height`` (natural size), read in the same step: an answer
    that replaces the picture a moment later (an upload and a click both answer) cannot slip in
    between, so a size is never read off a picture that is still loading."""
    return page.wait_for_function(
        """([id, prev]) => { const im = document.querySelector('#' + id + ' img');
            return im && im.complete && im.naturalWidth > 0 && im.src !== prev
                && {src: im.src, width: im.naturalWidth, height: im.naturalHeight}; }""",
        arg=[elem_id, previous]).json_value()


def wait_for_image(page, elem_id: str, previous: str | None = None) -> str:
    """Wait until the output image component shows a loaded picture (different from `previous`);
    its src (:func:`loaded_image`)."""
    return loaded_image(page, elem_id, previous)["src"]


def shot(page, name: str, settle: bool = True) -> Path:
    """A full-page screenshot ``test-artifacts/<name>``; with ``settle``, once nothing is pending."""
    ARTIFACTS.mkdir(exist_ok=True)
    if settle:
        page.wait_for_function("() => document.querySelectorAll('.pending, .generating').length === 0")
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
