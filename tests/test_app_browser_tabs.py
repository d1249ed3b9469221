"""The demo's Live and Video tabs in a real browser: Debian's headless Chromium driven by Playwright,
its fake webcam filming a swaying face (conftest.py: ``camera_clip``). The live stream must bring
back overlays that keep changing and stop when the stream stops; an uploaded MP4, and a GIF, must
come back as a video the browser plays. Screenshots go to test-artifacts/ (git-ignored); without Playwright
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

from conftest import loaded_image, require_browser, shot, wait_for_image  # noqa: E402

sync_api = require_browser()

from partdisc_core.demo_tabs import LIVE_SIDE  # noqa: E402
from partdisc_core.media import write_gif, write_mp4  # noqa: E402
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
    shown = loaded_image(page, "live-overlay")  # in one step: the next frame may replace the picture any moment
    assert (shown["width"], shown["height"]) == (LIVE_SIDE, LIVE_SIDE)
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
    duration, ready, width, height, error = video_state(page)
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


def video_state(page) -> list:
    """The answer video's duration, readyState, size and error, once the browser has loaded its metadata."""
    return page.wait_for_function(
        """() => { const v = document.querySelector('#video-output video');
            return v && v.readyState >= 1 && v.duration > 0 && [v.duration, v.readyState, v.videoWidth,
                                                                  v.videoHeight, v.error]; }""",
        timeout=120_000).json_value()


def test_a_gif_is_taken_by_the_video_tab(page, tmp_path):
    """The Video tab's upload box takes a GIF (gr.Video's took only video/*: "Invalid file type:
    clip.gif", then "Please upload a video first"), and the clip comes back as a video."""
    gif = write_gif(moving_face_frames(6), tmp_path / "clip.gif", fps=5)
    page.reload(wait_until="domcontentloaded")                                   # a fresh page: an empty box
    page.get_by_role("tab", name="Video").click()
    upload = page.locator("#video-input input[type=file]")
    assert {".gif", ".mp4", ".webm"} <= {t.strip() for t in upload.get_attribute("accept").split(",")}
    upload.set_input_files(str(gif))
    sync_api.expect(page.locator("#video-input")).to_contain_text("clip.gif")     # kept, not refused
    page.locator("#video-button").click()
    duration, ready, width, height, error = video_state(page)
    assert error is None and duration == pytest.approx(6 / 5, abs=0.25)
    assert (width, height) == (LIVE_SIDE, LIVE_SIDE)
    sync_api.expect(page.locator("#video-status textarea")).to_have_value(re.compile(r"6 frames .*gif"))
    assert page.get_by_text("Invalid file type").count() == 0
    assert page.get_by_text("Please upload a video first").count() == 0
    shot(page, "app_video_gif.png")
