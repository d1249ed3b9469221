"""The demo's Live (/frame), Video (/video), Gallery (/gallery) and Morph (/morph) endpoints through
gradio_client against the session's ``python app.py`` (conftest.py: tiny random K = 4 model), on
public-domain photos and generated clips: the values of every answer, every kind of bad input (a
clear message, and the next call still works), and the live stream's settings."""
from __future__ import annotations

import csv
import inspect
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest.importorskip("gradio_client")
av = pytest.importorskip("av")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app_server import K, encode_clip, noisy_copies, portrait_files  # noqa: E402
from partdisc_core import demo_tabs  # noqa: E402
from partdisc_core.demo import GRID_TOP_PAD, SWAP_CELL  # noqa: E402
from partdisc_core.labelmaps import centroid_header  # noqa: E402
from partdisc_core.media import MAX_VIDEO_SECONDS, write_gif, write_mp4  # noqa: E402
from partdisc_core.result_files import ResultFiles  # noqa: E402

PAD, TITLE = 6, 20
"""``viz.titled_grid``'s margins: the swap and morph pictures are grids of titled cells, below a
``GRID_TOP_PAD`` margin for the image viewer's label and buttons."""


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    out = portrait_files(folder)
    out["not_an_image"] = folder / "not_an_image.png"
    out["not_an_image"].write_text("this is text, not a picture\n")
    Image.new("RGB", (4, 4), (200, 150, 120)).save(folder / "tiny.png")
    out["tiny"] = folder / "tiny.png"
    return out


def panning_frames(n: int, step: int = 4) -> list[np.ndarray]:
    """The astronaut photo filmed by a camera panning right (the face moves left), 400x320."""
    from partdisc_core.inputs import portrait

    photo = portrait("astronaut")
    return [np.ascontiguousarray(photo[40:360, step * i:step * i + 400]) for i in range(n)]


def write_webm(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    """A VP8 WebM (PyAV's libvpx), as browsers record them."""
    return encode_clip(frames, path, fps, "webm", "libvpx")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    out = {"pan": write_mp4(panning_frames(10), folder / "pan.mp4", fps=10),
           "webm": write_webm(panning_frames(6), folder / "pan.webm", fps=6),
           "gif": write_gif([np.full((64, 64, 3), 100 + 20 * i, np.uint8) for i in range(3)], folder / "flat.gif",
                            fps=5)}
    seconds = int(MAX_VIDEO_SECONDS) + 2                  # 2 frames a second, small: too long, not too big
    out["long"] = write_mp4([np.full((64, 64, 3), 10 * i % 256, np.uint8) for i in range(2 * seconds)],
                            folder / "long.mp4", fps=2)
    data = out["pan"].read_bytes()
    out["truncated"] = folder / "truncated.mp4"
    out["truncated"].write_bytes(data[: len(data) // 2])
    out["text"] = folder / "notes.mp4"
    out["text"].write_text("this is text, not a video\n")
    return out


def picture(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def cell(grid: np.ndarray, row: int, col: int, side: int) -> np.ndarray:
    """One cell of a ``titled_grid`` picture."""
    y, x = GRID_TOP_PAD + PAD + row * (TITLE + side + PAD) + TITLE, PAD + col * (side + PAD)
    return grid[y:y + side, x:x + side]


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def frame(client, path, crop=True, opacity=0.5):
    overlay, status = client.predict(handle_file(str(path)), crop, opacity, api_name="/frame")
    return picture(overlay), status


def video(client, path, crop=True, opacity=0.5):
    return client.predict(handle_file(str(path)), crop, opacity, api_name="/video")


def gallery(client, paths, crop=True, opacity=0.5):
    grid, archive, status = client.predict([handle_file(str(p)) for p in paths], crop, opacity,
                                           api_name="/gallery")
    return picture(grid), archive, status


def morph(client, a, b, parts, t, crop=True):
    pic, strip, status = client.predict(handle_file(str(a)), handle_file(str(b)), parts, t, crop,
                                        api_name="/morph")
    return picture(pic), strip, status


def swap(client, a, b, parts):
    grid, status = client.predict(handle_file(str(a)), handle_file(str(b)), parts, True, api_name="/swap")
    return picture(grid), status


def works(client, photos) -> None:
    """The app still answers after a refusal."""
    overlay, status = frame(client, photos["astronaut"])
    assert overlay.shape == (demo_tabs.LIVE_SIDE, demo_tabs.LIVE_SIDE, 3) and "Face found" in status


def test_the_new_endpoints_are_listed_and_the_stream_is_not(client):
    info = client.view_api(print_info=False, return_format="dict")
    assert {"/discover", "/swap", "/frame", "/video", "/gallery", "/morph"} <= set(info["named_endpoints"])
    assert not info["unnamed_endpoints"]                                      # the webcam stream is UI only
    assert not [name for name, e in info["named_endpoints"].items()
                if any(p["parameter_name"] == "tracker" for p in e["parameters"])]
    params = {name: [p["parameter_name"] for p in e["parameters"]] for name, e in info["named_endpoints"].items()}
    assert params["/frame"] == ["image", "crop", "opacity"]
    assert params["/video"] == ["clip", "crop", "opacity"]
    assert params["/gallery"] == ["files", "crop", "opacity"]
    assert params["/morph"] == ["image_a", "image_b", "parts", "t", "crop"]


# --- /frame ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_frame_on_photos(client, photos, name):
    overlay, status = frame(client, photos[name])
    assert overlay.shape == (demo_tabs.LIVE_SIDE, demo_tabs.LIVE_SIDE, 3) and overlay.std() > 10
    assert "Face found" in status and "Model time" in status
    plain, _ = frame(client, photos[name], opacity=0.0)
    assert np.abs(plain.astype(int) - overlay).mean() > 5      # the parts are painted over the face


def test_frame_without_crop_keeps_the_aspect(client, photos):
    overlay, status = frame(client, photos["grace_hopper"], crop=False)     # 512x600
    assert overlay.shape == (demo_tabs.LIVE_SIDE, round(512 * demo_tabs.LIVE_SIDE / 600), 3)
    assert "not cropped" in status


@pytest.mark.parametrize("name, message", [("not_an_image", "not an image"), ("tiny", "4x4")])
def test_frame_bad_input(client, photos, name, message):
    with pytest.raises(AppError, match=message):
        frame(client, photos[name])
    works(client, photos)


# --- /video ----------------------------------------------------------------------------------------
def decode(path) -> tuple[list[np.ndarray], object]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, (codec.name, codec.pix_fmt, float(stream.average_rate))


def test_video_overlays_every_frame_and_tracks_the_parts(client, clips):
    out, tracks, status = video(client, clips["pan"])
    frames, (codec, pix_fmt, fps) = decode(out)
    assert Path(out).suffix == ".mp4" and codec == "h264" and pix_fmt == "yuv420p"   # plays in Chromium
    assert len(frames) == 10 and fps == pytest.approx(10)
    assert all(f.shape == (demo_tabs.LIVE_SIDE, demo_tabs.LIVE_SIDE, 3) for f in frames)
    assert "10 frames" in status and "Face found in all 10 frames" in status
    rows = read_csv(tracks)
    assert list(rows[0]) == ["frame", "time_s"] + centroid_header(K)[1:]
    assert [int(r["frame"]) for r in rows] == list(range(10))
    assert [float(r["time_s"]) for r in rows] == pytest.approx(np.arange(10) / 10)
    assert {(r["width"], r["height"]) for r in rows} == {("400", "320")}
    xy = np.array([[float(r[f"part{i}_{c}"]) for i in range(1, K + 1) for c in "xy"] for r in rows])
    assert ((xy[:, 0::2] > -1) & (xy[:, 0::2] < 400)).all() and ((xy[:, 1::2] > -1) & (xy[:, 1::2] < 320)).all()


def test_video_without_crop_and_other_containers(client, clips):
    out, tracks, status = video(client, clips["pan"], crop=False, opacity=0.0)
    frames, _ = decode(out)
    assert len(frames) == 10 and frames[0].shape == (320, 400, 3)            # the whole frame
    assert "Face found" not in status
    original, _ = decode(clips["pan"])
    assert np.abs(frames[0].astype(int) - original[0]).mean() < 4            # opacity 0: the clip itself
    out, tracks, status = video(client, clips["webm"])
    assert len(decode(out)[0]) == 6 and len(read_csv(tracks)) == 6 and "vp8" in status
    out, tracks, status = video(client, clips["gif"])
    assert len(decode(out)[0]) == 3 and "No face found in any of the 3 frames" in status


@pytest.mark.parametrize("name, message", [
    ("text", "not a video that can be read"),
    ("truncated", "corrupt or truncated"),
    ("long", rf"{int(MAX_VIDEO_SECONDS) + 2}\.0 s long; the limit is {int(MAX_VIDEO_SECONDS)} s"),
])
def test_video_bad_input(client, clips, photos, name, message):
    with pytest.raises(AppError, match=message):
        video(client, clips[name])
    works(client, photos)


def test_video_refuses_a_still_image_and_no_file(client, photos):
    with pytest.raises(AppError, match="still image"):
        video(client, photos["grace_hopper"])
    with pytest.raises(AppError, match="upload a video"):
        client.predict(None, True, 0.5, api_name="/video")
    works(client, photos)


# --- /gallery --------------------------------------------------------------------------------------
def test_gallery_grid_zip_and_centroids(client, photos, tmp_path):
    copies = noisy_copies(photos["grace_hopper"], tmp_path, 4, prefix="hopper")
    files = [photos["astronaut"], photos["grace_hopper"], *copies, photos["astronaut"], photos["not_an_image"]]
    grid, archive, status = gallery(client, files)
    names = ["astronaut", "grace_hopper", "hopper_000", "hopper_001", "hopper_002", "hopper_003", "astronaut-2"]
    assert "7 faces" in status and "Skipped 1: not_an_image.png" in status
    side = demo_tabs.GALLERY_CELL
    cols = demo_tabs.GALLERY_COLUMNS
    assert grid.shape[1] == PAD + cols * (side + PAD)                          # 4 columns
    assert grid.shape[0] > GRID_TOP_PAD + PAD + 2 * (TITLE + side + PAD)        # 2 rows and the legend
    with zipfile.ZipFile(archive) as zf:
        assert set(zf.namelist()) == ({f"{n}.png" for n in names} | {f"images/{n}.png" for n in names}
                                      | {"centroids.csv"})
        rows = list(csv.DictReader(io.StringIO(zf.read("centroids.csv").decode())))
        labels = Image.open(io.BytesIO(zf.read("astronaut.png")))
        view = np.asarray(Image.open(io.BytesIO(zf.read("images/astronaut.png"))))
    assert list(rows[0]) == centroid_header(K) and [r["image"] for r in rows] == [f"{n}.png" for n in names]
    assert labels.mode == "P" and labels.size == (view.shape[1], view.shape[0])
    assert set(np.unique(np.asarray(labels))) <= set(range(K + 1))
    assert int(rows[0]["width"]) == view.shape[1] and int(rows[0]["height"]) == view.shape[0]
    xy = np.array([[float(r[f"part{i}_{c}"]) for i in range(1, K + 1) for c in "xy"] for r in rows])
    assert ((xy >= -1) & (xy <= view.shape[0])).all()
    # the same photo twice: the same labels and centroids
    assert [r[k] for r in rows for k in list(r)[1:] if r["image"] == "astronaut.png"] == \
        [r[k] for r in rows for k in list(r)[1:] if r["image"] == "astronaut-2.png"]


def test_gallery_limits(client, photos, tmp_path):
    many = noisy_copies(photos["astronaut"], tmp_path, demo_tabs.GALLERY_MAX + 1)
    with pytest.raises(AppError, match=f"17 files were given; the gallery takes at most {demo_tabs.GALLERY_MAX}"):
        gallery(client, many)
    works(client, photos)
    with pytest.raises(AppError, match="None of the files could be read"):
        gallery(client, [photos["not_an_image"]])
    with pytest.raises(AppError, match="upload some faces"):
        client.predict([], True, 0.5, api_name="/gallery")
    grid, _, status = gallery(client, many[:demo_tabs.GALLERY_MAX])             # 16 is fine
    assert "16 faces" in status and grid.shape[0] > 4 * demo_tabs.GALLERY_CELL


# --- /morph ----------------------------------------------------------------------------------------
def test_morph_ends_are_the_reconstruction_and_the_swap(client, photos):
    a, b = photos["astronaut"], photos["grace_hopper"]
    swapped, _ = swap(client, a, b, [1, 2])
    one, strip, status = morph(client, a, b, [1, 2], 1.0)
    zero, _, status0 = morph(client, a, b, [1, 2], 0.0)
    half, _, _ = morph(client, a, b, [1, 2], 0.5)
    assert "parts 1, 2 moved 100%" in status and "moved 0%" in status0
    side = demo_tabs.MORPH_CELL
    assert SWAP_CELL == side and one.shape == (GRID_TOP_PAD + PAD + TITLE + side + PAD, PAD + 3 * (side + PAD), 3)
    # t = 1: the swap's "A + parts of B"; t = 0: its plain "A reconstructed"
    assert np.abs(cell(one, 0, 1, side).astype(int) - cell(swapped, 0, 2, side)).mean() < 1.0
    assert np.abs(cell(zero, 0, 1, side).astype(int) - cell(swapped, 0, 1, side)).mean() < 1.0
    assert np.abs(cell(one, 0, 1, side).astype(int) - cell(zero, 0, 1, side)).mean() > 1.0
    assert np.abs(cell(half, 0, 1, side).astype(int) - cell(zero, 0, 1, side)).mean() > 0.2
    # A and B as the model saw them are the same at every t
    assert np.array_equal(cell(one, 0, 0, side), cell(zero, 0, 0, side))
    # the strip: t = 0 .. 1 and back, looping; its ends are the reconstruction and the swap
    with Image.open(strip) as gif:
        assert gif.format == "GIF" and gif.n_frames == 2 * demo_tabs.MORPH_STEPS - 2 and gif.info["loop"] == 0
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB"), dtype=int))
    assert frames[0].shape == (GRID_TOP_PAD + side, side, 3) and (frames[0][:GRID_TOP_PAD] == 255).all()
    first, last = frames[0][GRID_TOP_PAD:], frames[demo_tabs.MORPH_STEPS - 1][GRID_TOP_PAD:]  # below the margin
    ends = cell(zero, 0, 1, side), cell(one, 0, 1, side)
    distance = [[np.abs(f - e).mean() for e in ends] for f in (first, last)]   # GIF palettes: ~3 levels off
    assert distance[0][0] < 4 and distance[1][1] < 4
    assert distance[0][0] < distance[0][1] and distance[1][1] < distance[1][0]
    steps = demo_tabs.MORPH_STEPS                                               # and back: t = 7/8 .. 1/8
    assert all(np.array_equal(frames[steps + j], frames[steps - 2 - j]) for j in range(steps - 2))


def test_morph_without_parts_is_the_reconstruction(client, photos):
    zero, _, _ = morph(client, photos["astronaut"], photos["grace_hopper"], [1, 2], 0.0)
    none, _, status = morph(client, photos["astronaut"], photos["grace_hopper"], [], 0.7)
    assert "No parts chosen" in status
    assert np.abs(cell(none, 0, 1, demo_tabs.MORPH_CELL).astype(int) - cell(zero, 0, 1, demo_tabs.MORPH_CELL)
                  ).mean() < 1.0


@pytest.mark.parametrize("t, parts, b, message", [
    (1.5, [1], "grace_hopper", r"t must be between 0 and 1, got 1\.5"),
    (-0.1, [1], "grace_hopper", r"t must be between 0 and 1, got -0\.1"),
    ("x", [1], "grace_hopper", "t must be a number between 0 and 1"),
    (0.5, [K + 5], "grace_hopper", rf"part {K + 5} does not exist: this model has parts 1\.\.{K}"),
    (0.5, [1], "not_an_image", "Image B: .*not an image"),
])
def test_morph_bad_input(client, photos, t, parts, b, message):
    with pytest.raises(AppError, match=message):
        morph(client, photos["astronaut"], photos[b], parts, t)
    works(client, photos)


# --- the live stream ---------------------------------------------------------------------------------
def test_live_stream_drops_frames_instead_of_queueing_them(eval_model, tmp_path):
    """The webcam stream is UI only, its own concurrency group, bounded in time; gradio keeps only
    the newest frame of a stream while the handler is busy (``/stream/{event_id}`` replaces it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("partdisc_app", ROOT / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    results = ResultFiles(tmp_path / "results")
    try:
        blocks = app.build_demo(eval_model, {}, results=results)
        streams = [fn for fn in blocks.fns.values() if fn.connection == "stream"]
        assert len(streams) == 1
        live = streams[0]
        assert live.api_visibility == "private" and live.concurrency_id == "live"
        assert live.concurrency_limit == app.LIVE_STREAMS and live.time_limit == app.LIVE_TIME_LIMIT_S
        assert live.stream_every == app.LIVE_EVERY_S <= 1 / 15
        camera = live.inputs[0]
        assert camera.streaming and camera.sources == ["webcam"] and camera.elem_id == "live-camera"
    finally:
        results.close()


def test_live_answers_are_jpegs_of_their_own(tmp_path):
    results = ResultFiles(tmp_path / "results")
    try:
        image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), np.uint8)
        image[:] = image.mean(axis=(0, 1), dtype=int)                          # flat: JPEG keeps it
        paths = [demo_tabs.write_jpeg(results.request(), "overlay", image) for _ in range(2)]
        assert paths[0] != paths[1] and all(p.endswith("overlay.jpg") for p in paths)
        with Image.open(paths[0]) as im:
            assert im.format == "JPEG" and np.abs(np.asarray(im, dtype=int) - image).max() <= 2
    finally:
        results.close()


# --- one message per problem ---------------------------------------------------------------------------
def load_app():
    import importlib.util

    spec = importlib.util.spec_from_file_location("partdisc_app", ROOT / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


def test_the_browser_is_told_each_problem_once_and_the_api_every_time(monkeypatch, photos):
    """Uploading a picture runs the tab, and pressing its button runs it again on the same file: the
    page's events share a Told, so a problem pops up once (a repeated error becomes the status) until
    other files arrive; the API endpoints call the handler itself, so every call gets its error."""
    import gradio as gr

    app = load_app()
    shown = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **kw: shown.append(message))
    good, bad, other = str(photos["astronaut"]), str(photos["not_an_image"]), str(photos["grace_hopper"])

    def handler(image, crop=True):
        if image == bad:
            raise gr.Error("This file is not an image that can be read.", print_exception=False)
        app.warn("No face found: using the centre of the image")
        return "picture", f"status of {Path(image).name}"

    page, told = app.once_per_problem(handler, outputs=2), app.Told()
    assert page(good, True, told) == ("picture", "status of astronaut.png")     # upload: shown
    assert page(good, False, told) == ("picture", "status of astronaut.png")    # button / option: not again
    assert shown == ["No face found: using the centre of the image"]
    with pytest.raises(gr.Error, match="not an image"):                          # upload: the error pops up
        page(bad, True, told)
    for _ in range(2):                                                           # button: the status says it
        assert page(bad, True, told) == (None, "This file is not an image that can be read.")
    page(other, True, told)                                                      # another file: told again
    page(good, True, told)                                                       # ... and back: again
    page(good, True, app.Told())                                                 # another session: told
    assert len(shown) == 4
    for _ in range(2):                                                           # the API: every time
        with pytest.raises(gr.Error, match="not an image"):
            handler(bad)
        handler(good)
    assert len(shown) == 6
    assert list(inspect.signature(page).parameters) == ["image", "crop", "told"]


def test_the_endpoints_have_no_trigger_and_the_page_runs_them_with_its_told(eval_model, tmp_path):
    import gradio as gr

    app = load_app()
    results = ResultFiles(tmp_path / "results")
    try:
        blocks = app.build_demo(eval_model, {}, results=results)
        fns = list(blocks.fns.values())
        public = {fn.api_name: fn for fn in fns if fn.api_visibility == "public"}
        assert set(public) == {"discover", "swap", "frame", "video", "gallery", "morph"}
        assert all(not fn.targets for fn in public.values())                     # API only: no button fires them
        page = [fn for fn in fns if fn.api_visibility == "private" and fn.connection != "stream"]
        assert {fn.api_name.split("_")[0] for fn in page if ("click" in [t[1] for t in fn.targets])} >= {
            "discover", "swap", "frame", "video", "gallery", "morph"}
        for fn in page:                                                           # each with its tab's Told last
            assert isinstance(fn.inputs[-1], gr.State)
            assert isinstance(fn.inputs[-1].value, app.Told)
            assert fn.concurrency_id == "model"
    finally:
        results.close()
