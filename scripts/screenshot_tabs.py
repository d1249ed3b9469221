"""Screenshots of every tab of the demo as a user meets it, for a person to look at.

    python scripts/screenshot_tabs.py [--checkpoint PATH] [--out test-artifacts/tabs]

Starts ``app.py`` on the shipped checkpoint (or ``--checkpoint``) on a free loopback port
(``tests/app_server.py``), opens it in Debian's headless Chromium through Playwright (the browser
tests' flags, from the same file; never a downloaded browser) and goes through Discover, Swap,
Live (its one-picture form), Video, Gallery and Morph with a Helen face (``--helen``) and a CelebA
face (``--celeba``) from ``../shared/data/faces``; writes one full-page PNG per step into ``--out``
(git-ignored under test-artifacts/) and stops the app.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FACES = ROOT.parent / "shared" / "data" / "faces"
LOADED = """([id, prev]) => { const im = document.querySelector('#' + id + ' img');
    return im && im.complete && im.naturalWidth > 0 && im.src !== prev && im.src; }"""
IDLE = "() => document.querySelectorAll('.pending, .generating').length === 0"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--checkpoint", help="checkpoint folder (default: the shipped one)")
    p.add_argument("--out", default=str(ROOT / "test-artifacts" / "tabs"))
    p.add_argument("--helen", default=str(FACES / "helen_val68" / "helen_trainset" / "100032540_1.jpg"))
    p.add_argument("--celeba", default=str(FACES / "celeba_dev" / "000001.jpg"))
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each answer")
    return p.parse_args(argv)


def image_src(page, elem_id: str) -> str | None:
    img = page.locator(f"#{elem_id} img")
    return img.first.get_attribute("src") if img.count() else None


def new_image(page, elem_id: str, previous: str | None, timeout_ms: float) -> str:
    """Wait for a loaded picture in ``elem_id`` other than ``previous``; its src."""
    return page.wait_for_function(LOADED, arg=[elem_id, previous], timeout=timeout_ms).json_value()


def clip_of(face: Path, path: Path) -> Path:
    """A 2-s GIF of ``face`` with the camera drifting right and back (the Video tab's input)."""
    import numpy as np
    from PIL import Image

    from partdisc_core.inputs import resize
    from partdisc_core.media import write_gif

    with Image.open(face) as im:
        image = np.asarray(im.convert("RGB"))
    h, w = image.shape[:2]
    side = min(h, w) * 7 // 8
    shifts = np.r_[np.linspace(0, min(h, w) - side, 10), np.linspace(min(h, w) - side, 0, 10)].round().astype(int)
    frames = [resize(np.ascontiguousarray(image[:side, s:s + side]), (256, 256)) for s in shifts]
    return write_gif(frames, path, fps=10)


def run(page, url: str, helen: Path, celeba: Path, out: Path, work: Path, timeout_s: float) -> list[Path]:
    """Every tab with the two faces; the screenshots written."""
    ms = timeout_s * 1000
    shots: list[Path] = []

    def shot(name: str) -> None:
        page.wait_for_function(IDLE, timeout=ms)
        page.wait_for_timeout(600)                                # the answer's fade-in ends
        path = out / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)
        print(f"screenshot: {path}")

    def tab(name: str) -> None:
        page.get_by_role("tab", name=name).click()

    def upload(elem_id: str, *files: Path) -> None:
        page.locator(f"#{elem_id} input[type=file]").set_input_files([str(f) for f in files])

    page.goto(url, wait_until="domcontentloaded")
    for name, face in (("helen", helen), ("celeba", celeba)):
        outputs = ("discover-overlay", "discover-maps", "discover-attention")
        before = {elem_id: image_src(page, elem_id) for elem_id in outputs}
        if before["discover-overlay"]:
            page.locator("#discover-input button[aria-label='Remove Image']").first.click()
        upload("discover-input", face)
        for elem_id in outputs:
            new_image(page, elem_id, before[elem_id], ms)
        shot(f"discover_{name}")

    tab("Swap")
    upload("swap-a", helen)
    upload("swap-b", celeba)
    before = new_image(page, "swap-output", None, ms)            # both faces in: the swap runs by itself
    page.locator("#swap-parts label").first.click()               # part 1 off: the others are exchanged
    page.locator("#swap-button").click()
    new_image(page, "swap-output", before, ms)
    shot("swap")

    tab("Live")
    page.get_by_text("One picture instead of the camera").click()
    upload("frame-input", helen)
    page.locator("#frame-button").click()
    new_image(page, "live-overlay", None, ms)
    shot("live_frame")

    tab("Video")
    upload("video-input", clip_of(helen, work / "helen_clip.gif"))
    page.locator("#video-button").click()
    page.wait_for_function("() => { const v = document.querySelector('#video-output video');"
                           " return v && v.readyState >= 1 && v.duration > 0; }", timeout=ms)
    shot("video")

    tab("Gallery")
    more = sorted(helen.parent.glob("*.jpg"))[1:4] + sorted(celeba.parent.glob("*.jpg"))[1:4]
    upload("gallery-input", helen, celeba, *more)
    page.locator("#gallery-button").click()
    new_image(page, "gallery-output", None, ms)
    shot("gallery")

    tab("Morph")
    upload("morph-a", helen)
    upload("morph-b", celeba)
    page.locator("#morph-button").click()
    new_image(page, "morph-output", None, ms)
    new_image(page, "morph-strip", None, ms)
    shot("morph")
    return shots


def main(argv=None) -> list[Path]:
    args = parse_args(argv)
    from playwright.sync_api import sync_playwright

    from partdisc_core.testing import app_harness

    harness = app_harness(ROOT)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="partdisc-shots-") as tmp:
        work = Path(tmp)
        with harness.AppProcess(args.checkpoint, log_path=work / "app.log", env=harness.server_env(work)) as server, \
                sync_playwright() as p:
            browser = p.chromium.launch(executable_path=harness.CHROMIUM, headless=True, args=harness.CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                page.set_default_timeout(args.timeout * 1000)
                return run(page, server.url, Path(args.helen), Path(args.celeba), out, work, args.timeout)
            finally:
                browser.close()


if __name__ == "__main__":
    main()
