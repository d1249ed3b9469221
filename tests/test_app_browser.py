"""The Gradio demo in a real browser: Debian's headless Chromium driven by Playwright loads the
page, uploads images, runs Discover and Swap, checks that the result images appear, and saves
screenshots under test-artifacts/ (git-ignored)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conftest import require_browser, shot, wait_for_image  # noqa: E402

sync_api = require_browser()

from app_server import portrait_files  # noqa: E402


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    out = {**portrait_files(folder), "not_an_image": folder / "not_an_image.png"}
    out["not_an_image"].write_text("plain text\n")
    return out


def test_discover_in_browser(page, photos):
    page.locator("#discover-input input[type=file]").set_input_files(str(photos["grace_hopper"]))
    page.locator("#discover-button").click()
    overlay = wait_for_image(page, "discover-overlay")
    for elem_id in ("discover-maps", "discover-attention"):
        wait_for_image(page, elem_id)
    status = page.locator("#discover-status textarea")
    sync_api.expect(status).to_have_value(re.compile("Face found"))
    size = page.locator("#discover-overlay img").first.evaluate("im => [im.naturalWidth, im.naturalHeight]")
    assert size[0] >= 384 and size[1] > 384
    # moving to soft masks redraws the overlay
    page.get_by_label("Hard masks").uncheck()
    wait_for_image(page, "discover-overlay", previous=overlay)
    assert shot(page, "app_discover.png").stat().st_size > 10_000


def test_bad_file_shows_a_message(page, photos):
    page.locator("#discover-input button[aria-label='Remove Image']").first.click()
    page.locator("#discover-input input[type=file]").set_input_files(str(photos["not_an_image"]))
    page.locator("#discover-button").click()
    sync_api.expect(page.get_by_text("not an image").first).to_be_visible()
    shot(page, "app_bad_file.png")
    for button in page.locator("button[data-testid='toast-close']").all():  # dismiss the messages
        button.click()


def test_swap_in_browser(page, photos):
    page.get_by_role("tab", name="Swap").click()
    page.locator("#swap-a input[type=file]").set_input_files(str(photos["astronaut"]))
    page.locator("#swap-b input[type=file]").set_input_files(str(photos["grace_hopper"]))
    page.locator("#swap-button").click()
    wait_for_image(page, "swap-output")
    sync_api.expect(page.locator("#swap-status textarea")).to_have_value(
        re.compile("Exchanged all parts"))
    size = page.locator("#swap-output img").first.evaluate("im => [im.naturalWidth, im.naturalHeight]")
    assert size[0] > size[1] > 300  # 3 columns, 2 rows
    assert shot(page, "app_swap.png").stat().st_size > 10_000


def test_example_runs_discover(page):
    page.get_by_role("tab", name="Discover").click()
    before = page.locator("#discover-overlay img").first.get_attribute("src") \
        if page.locator("#discover-overlay img").count() else None
    page.get_by_text("astronaut", exact=True).first.click()
    wait_for_image(page, "discover-overlay", previous=before)
    sync_api.expect(page.locator("#discover-status textarea")).to_have_value(re.compile("Face found"))
    shot(page, "app_example.png")
