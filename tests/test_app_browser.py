"""The Gradio demo in a real browser: Debian's headless Chromium driven by Playwright loads the
page, uploads images, runs Discover and Swap, checks that the result images appear, that a problem
pops up once, and that the part checkboxes carry the legend's colours, and saves screenshots under
test-artifacts/ (git-ignored)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conftest import loaded_image, require_browser, shot, wait_for_image  # noqa: E402

sync_api = require_browser()

from app_server import K, portrait_files  # noqa: E402

from partdisc_core.viz import part_colors  # noqa: E402


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    out = {**portrait_files(folder), "not_an_image": folder / "not_an_image.png", "no_face": folder / "no_face.png"}
    out["not_an_image"].write_text("plain text\n")
    Image.new("RGB", (200, 160), (120, 140, 160)).save(out["no_face"])
    return out


def toasts(page, text: str) -> int:
    """How many pop-up messages containing ``text`` the page shows (gradio lists repeats in one toast)."""
    return page.locator("[data-testid='toast-text']", has_text=text).count()


def test_discover_in_browser(page, photos):
    page.locator("#discover-input input[type=file]").set_input_files(str(photos["grace_hopper"]))
    page.locator("#discover-button").click()
    overlay = wait_for_image(page, "discover-overlay")
    for elem_id in ("discover-maps", "discover-attention"):
        wait_for_image(page, elem_id)
    status = page.locator("#discover-status textarea")
    sync_api.expect(status).to_have_value(re.compile("Face found"))
    shown = loaded_image(page, "discover-overlay")  # the upload and the click both answer: never read a half-loaded one
    assert shown["width"] >= 384 and shown["height"] > 384
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
    shown = loaded_image(page, "swap-output")
    assert shown["width"] > shown["height"] > 300  # 3 columns, 2 rows
    # the part checkboxes read like the legend: its labels and, before each, its colour
    labels = page.locator("#swap-parts label")
    assert labels.count() == K and labels.first.inner_text().strip() == "part 1"
    swatches = [labels.nth(i).locator("span").evaluate("s => getComputedStyle(s, '::before').backgroundColor")
                for i in range(K)]
    assert swatches == [f"rgb({r}, {g}, {b})" for r, g, b in part_colors(K)[:K].tolist()]
    assert shot(page, "app_swap.png").stat().st_size > 10_000


def test_a_problem_pops_up_once(page, photos):
    """A picture without a face: uploading it runs Discover and warns; pressing the button on the same
    picture does not warn again (the status says it). A bad file: one error, not one per press."""
    page.get_by_role("tab", name="Discover").click()
    for button in page.locator("button[data-testid='toast-close']").all():  # earlier tests' messages
        button.click()
    before = page.locator("#discover-overlay img").first.get_attribute("src") \
        if page.locator("#discover-overlay img").count() else None
    page.locator("#discover-input button[aria-label='Remove Image']").first.click()
    page.locator("#discover-input input[type=file]").set_input_files(str(photos["no_face"]))
    uploaded = wait_for_image(page, "discover-overlay", previous=before)
    sync_api.expect(page.get_by_text("No face found").first).to_be_visible()
    assert toasts(page, "No face found") == 1
    page.locator("#discover-button").click()
    wait_for_image(page, "discover-overlay", previous=uploaded)            # the button's answer arrived
    sync_api.expect(page.locator("#discover-status textarea")).to_have_value(re.compile("No face found"))
    assert toasts(page, "No face found") <= 1                              # not twice (it may have timed out)
    page.locator("#discover-input button[aria-label='Remove Image']").first.click()
    page.locator("#discover-input input[type=file]").set_input_files(str(photos["not_an_image"]))
    sync_api.expect(page.get_by_text("not an image").first).to_be_visible()   # the upload's error
    for _ in range(2):
        page.locator("#discover-button").click()
        sync_api.expect(page.locator("#discover-status textarea")).to_have_value(re.compile("not an image"))
    assert toasts(page, "not an image") == 1
    shot(page, "app_told_once.png")
    for button in page.locator("button[data-testid='toast-close']").all():
        button.click()


def test_example_runs_discover(page):
    page.get_by_role("tab", name="Discover").click()
    before = page.locator("#discover-overlay img").first.get_attribute("src") \
        if page.locator("#discover-overlay img").count() else None
    page.get_by_text("astronaut", exact=True).first.click()
    wait_for_image(page, "discover-overlay", previous=before)
    sync_api.expect(page.locator("#discover-status textarea")).to_have_value(re.compile("Face found"))
    shot(page, "app_example.png")
