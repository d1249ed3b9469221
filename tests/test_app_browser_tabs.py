"""The demo's Live and Video tabs in a real browser: Debian's headless Chromium driven by Playwright,
its fake webcam filming a swaying face (conftest.py: ``camera_clip``). The live stream must bring
back overlays that keep changing and stop when the stream stops; an uploaded MP4 must come back
as a video the browser plays. Screenshots go to test-artifacts/ (git-ignored); without Playwright
or Chromium the module skips."""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conftest import require_browser, shot, wait_for_image  # noqa: E402

sync_api = require_browser()

from partdisc_core.demo_tabs import LIVE_SIDE  # noqa: E402
from partdisc_core.media import write_mp4  # noqa: E402
from partdisc_core.testing import moving_face_frames  # noqa: E402

CLIP_FRAMES, CLIP_FPS = 12, 6


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 2-s MP4 of the swaying face, 640x480."""
    return write_mp4(moving_face_frames(CLIP_FRAMES), tmp_path_factory.mktemp("clip") / "face.mp4", fps=CLIP_FPS)


def overlay_src(page) -> str | None:
    return page.evaluate("() => document.querySelector('#live-overlay img')?.src ?? null")


def test_live_stream_in_browser(page):
    page.get_by_role("tab", name="Live").click()
    page.locator("#live-camera").get_by_text("Click to Access Webcam").click()
    record = page.locator("#live-camera button", has_text="Record")
    record.click()
    first = wait_for_image(page, "live-overlay")
    second = wait_for_image(page, "live-overlay", previous=first)      # the stream goes on
    wait_for_image(page, "live-overlay", previous=second)
    size = page.wait_for_function(  # in one step: the next frame may replace the picture any moment
        """() => { const im = document.querySelector('#live-overlay img');
            return im && im.complete && im.naturalWidth > 0 && [im.naturalWidth, im.naturalHeight]; }""").json_value()
    assert size == [LIVE_SIDE, LIVE_SIDE]
    sync_api.expect(page.locator("#live-status textarea")).to_have_value(re.compile(r"Face found.*Model time"))
    assert shot(page, "app_live.png", settle=False).stat().st_size > 10_000

    # stopping the camera stops the answers: no backlog of frames is left to drain
    page.locator("#live-camera button", has_text="Stop").click()
    sync_api.expect(record).to_be_visible()
    page.wait_for_function("() => document.querySelectorAll('#live-overlay .generating').length === 0")
    time.sleep(0.5)  # an answer on its way when the camera stopped may still arrive
    last = overlay_src(page)
    time.sleep(1.5)
    assert overlay_src(page) == last


def test_frame_upload_in_browser(page, tmp_path):
    from app_server import portrait_files

    photos = portrait_files(tmp_path)
    before = overlay_src(page)
    page.get_by_text("One picture instead of the camera").click()
    page.locator("#frame-input input[type=file]").set_input_files(str(photos["grace_hopper"]))
    page.locator("#frame-button").click()
    wait_for_image(page, "live-overlay", previous=before)
    sync_api.expect(page.locator("#live-status textarea")).to_have_value(re.compile("Face found"))


def test_video_in_browser(page, clip):
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-input input[type=file]").set_input_files(str(clip))
    page.locator("#video-button").click()
    state = page.wait_for_function(
        """() => { const v = document.querySelector('#video-output video');
            return v && v.readyState >= 1 && v.duration > 0 && [v.duration, v.readyState, v.videoWidth,
                                                                  v.videoHeight, v.error]; }""",
        timeout=120_000).json_value()
    duration, ready, width, height, error = state
    assert error is None and ready >= 1
    assert duration == pytest.approx(CLIP_FRAMES / CLIP_FPS, abs=0.25)
    assert (width, height) == (LIVE_SIDE, LIVE_SIDE)
    sync_api.expect(page.locator("#video-status textarea")).to_have_value(
        re.compile(f"{CLIP_FRAMES} frames .* Face found in"))
    sync_api.expect(page.locator("#video-csv a[href$='/part_tracks.csv']")).to_be_visible()  # the download link
    # the browser decodes and plays it: a frame is drawn and time moves on
    page.evaluate("() => { const v = document.querySelector('#video-output video'); v.muted = true; v.play(); }")
    page.wait_for_function("() => document.querySelector('#video-output video').currentTime > 0.2")
    assert shot(page, "app_video.png").stat().st_size > 10_000
