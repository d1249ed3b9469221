"""The demo's logic in-process, without a server: decoding uploads under limits
(``inputs.decode_image``), the model wrapper ``demo.PartDiscDemo`` (what each tab shows, its cache),
part-number parsing, the picture layouts of ``viz`` and the offline examples."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from partdisc_core import demo, viz
from partdisc_core.inputs import ImageInputError, decode_image, portrait, resize, to_rgb


def save(img: Image.Image, path, **kwargs):
    img.save(path, **kwargs)
    return path


# --- decoding under limits -----------------------------------------------------------------------
def test_decode_refuses_over_the_limits(tmp_path):
    face = Image.fromarray(portrait("grace_hopper"))
    path = save(face, tmp_path / "face.jpg", quality=90)
    with pytest.raises(ImageInputError, match="limit is 0 MB"):
        decode_image(path, max_bytes=1000)
    with pytest.raises(ImageInputError, match=r"512x600 pixels .*limit is 0 MP"):
        decode_image(path, max_pixels=100_000)
    with pytest.raises(ImageInputError, match="at least 1000x1000"):
        decode_image(path, min_side=1000)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageInputError, match="empty"):
        decode_image(empty)
    strip = save(Image.new("RGB", (4000, 20)), tmp_path / "strip.png")  # 1024 x 5 once downscaled
    with pytest.raises(ImageInputError, match="at least 8x8"):
        decode_image(strip, max_side=1024)


def test_decode_downscales_first_and_says_what_it_did(tmp_path):
    big = np.zeros((3000, 4000, 3), np.uint8)
    big[:, :2000] = (200, 40, 40)
    d = decode_image(save(Image.fromarray(big), tmp_path / "big.jpg", quality=90), max_side=500)
    assert d.array.shape == (375, 500, 3) and d.original_size == (4000, 3000)
    assert d.notes == ["downscaled from 4000x3000"]
    assert d.array[:, :240, 0].mean() > 150 and d.array[:, 260:, 0].mean() < 50

    deep = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    d16 = decode_image(save(Image.fromarray(deep), tmp_path / "deep.png"))
    assert d16.notes == ["16-bit image converted to 8 bits"]
    np.testing.assert_array_equal(d16.array[..., 1], (deep >> 8).astype(np.uint8))
    cmyk = decode_image(save(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), tmp_path / "red.jpg"))
    assert cmyk.notes == ["CMYK image converted to RGB"] and cmyk.array[..., 0].mean() > 200

    upright = np.zeros((60, 40, 3), np.uint8)
    upright[:30] = (220, 30, 30)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = save(Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90), tmp_path / "rot.jpg",
                   exif=exif.tobytes(), quality=95)
    d = decode_image(rotated)
    assert d.array.shape == (60, 40, 3) and "rotated as its EXIF orientation says" in d.notes
    assert d.array[5, 20, 0] > 150 and d.array[55, 20, 0] < 100

    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    d = decode_image(gif)
    assert d.notes == ["animated image: the first frame is used"] and d.array[0, 0, 0] > 200


def test_decode_gives_clear_messages_for_bad_files(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(ImageInputError, match="not an image that can be read"):
        decode_image(text)
    buf = io.BytesIO()
    Image.fromarray(portrait("astronaut")).save(buf, format="JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    with pytest.raises(ImageInputError, match="corrupt or truncated"):
        decode_image(cut)


def test_demo_load_image_wraps_refusals(tmp_path):
    with pytest.raises(demo.DemoInputError, match="Please upload"):
        demo.load_image(None)
    with pytest.raises(demo.DemoInputError, match="did not reach the server"):
        demo.load_image(tmp_path / "gone.png")
    with pytest.raises(demo.DemoInputError, match="at least 16x16"):
        demo.load_image(save(Image.new("RGB", (12, 40)), tmp_path / "tiny.png"))
    small = demo.load_image(save(Image.new("RGB", (40, 30)), tmp_path / "small.png"))
    assert small.notes == ["small image (40x30): the results will be coarse"]


# --- one conversion for the whole library ----------------------------------------------------------
def test_to_rgb_strict_for_model_inputs_and_clipping_for_pictures():
    over = np.full((4, 4), 1.2, np.float32)
    with pytest.raises(ImageInputError, match=r"\[0, 1\]"):
        to_rgb(over)
    assert to_rgb(over, "uint8", clip=True).min() == 255
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[0, 0, 3] = 100, 255  # one opaque pixel, the rest transparent
    out = to_rgb(rgba, "uint8")
    assert tuple(out[0, 0]) == (100, 0, 0) and tuple(out[1, 1]) == (255, 255, 255)
    deep = Image.fromarray(np.full((3, 3), 257 * 7, np.uint16))
    assert to_rgb(deep, None).dtype == np.float32 and to_rgb(deep, "uint8")[0, 0, 0] == 7
    # viz, the face crop and the answer files all draw through it
    np.testing.assert_array_equal(viz._as_image_uint8(rgba), out)
    with pytest.raises(ValueError):
        to_rgb(np.zeros((4, 4, 3), np.uint8), dtype="int8")


def test_resize_keeps_kind_and_default_filters():
    img = portrait("astronaut")
    small = resize(img, (64, 48))
    assert small.shape == (48, 64, 3) and small.dtype == np.uint8
    assert resize(img, (512, 512)) is img
    m = np.linspace(0, 1, 100, dtype=np.float64).reshape(10, 10)
    up = resize(m, (20, 20), "bilinear")
    assert up.dtype == np.float32 and up.shape == (20, 20) and 0 <= up.min() and up.max() <= 1
    pil = resize(Image.fromarray(img), (32, 32))
    assert isinstance(pil, Image.Image) and pil.size == (32, 32)


def test_portraits():
    assert portrait("astronaut").shape == (512, 512, 3) and portrait("grace_hopper").shape == (600, 512, 3)
    with pytest.raises(ValueError, match="astronaut"):
        portrait("mona_lisa")


# --- the model wrapper ---------------------------------------------------------------------------
@pytest.fixture
def photo(tmp_path):
    return save(Image.fromarray(portrait("astronaut")), tmp_path / "astronaut.png")


def test_discover_shows_overlay_maps_and_attention(eval_model, photo):
    app = demo.PartDiscDemo(eval_model)
    r = app.discover(photo, crop=True, hard=True, opacity=0.5)
    k = eval_model.num_parts
    assert r.overlay.shape[0] > demo.DISPLAY_SIDE and r.overlay.shape[1] >= demo.DISPLAY_SIDE
    width = 2 + min(k + 1, demo.GRID_COLUMNS) * (demo.TILE + 2)
    assert r.part_maps.shape[1] == width and r.attention.shape == r.part_maps.shape
    assert (r.part_maps[:demo.GRID_TOP_PAD] == 255).all()  # room for the viewer's buttons
    assert r.status.startswith("Face found") and f"K = {k} parts" in r.status
    whole = app.discover(photo, crop=False)
    assert "not cropped" in whole.status and whole.analysis.view.face_found is None


def test_discover_reuses_the_model_answer_until_the_file_changes(eval_model, photo, monkeypatch):
    app = demo.PartDiscDemo(eval_model)
    calls = []
    predict = eval_model.predict
    monkeypatch.setattr(eval_model, "predict", lambda *a, **k: calls.append(1) or predict(*a, **k))
    first = app.discover(photo, opacity=0.2)
    second = app.discover(photo, opacity=0.9, hard=False)  # display options only: no new model call
    assert len(calls) == 1 and not np.array_equal(first.overlay, second.overlay)
    save(Image.fromarray(portrait("grace_hopper")), photo)  # another upload at the same path
    app.discover(photo)
    assert len(calls) == 2


def test_swap_grid_status_and_errors(eval_model, photo, tmp_path):
    other = save(Image.fromarray(portrait("grace_hopper")), tmp_path / "gh.jpg", quality=92)
    app = demo.PartDiscDemo(eval_model)
    k = eval_model.num_parts
    out = app.swap(photo, other)
    assert out.parts == list(range(1, k + 1)) and "Exchanged all parts" in out.status
    assert out.grid.shape == (demo.GRID_TOP_PAD + 6 + 2 * (20 + demo.SWAP_CELL + 6), 6 + 3 * (demo.SWAP_CELL + 6), 3)
    assert (out.grid[:demo.GRID_TOP_PAD] == 255).all()  # room for the viewer's label and buttons above the titles
    none = app.swap(photo, other, parts=[])
    assert "No parts chosen" in none.status and "Exchanged no parts" in none.status
    assert "Exchanged part 2;" in app.swap(photo, other, parts="2").status
    text = tmp_path / "b.png"
    text.write_text("no")
    with pytest.raises(demo.DemoInputError, match="^Image B: This file is not an image"):
        app.swap(photo, text)
    with pytest.raises(demo.DemoInputError, match="two images"):
        app.swap(photo, None)


@pytest.mark.parametrize("given, expected", [
    (None, [1, 2, 3, 4]), ([3, 1, 3], [1, 3]), ("2, 4", [2, 4]), (["part 2", "1"], [1, 2]), ("parts 3, 1", [1, 3]), (["part3"], [3]), ([2.0], [2]), ([], []),
])
def test_parse_parts(given, expected):
    assert demo.parse_parts(given, 4) == expected


@pytest.mark.parametrize("bad, message", [([5], "1..4"), (["eyes"], "not a part number"), ([0], "does not exist"),
                                          (["inf"], "not a part number")])
def test_parse_parts_refuses(bad, message):
    with pytest.raises(demo.DemoInputError, match=message):
        demo.parse_parts(bad, 4)


# --- picture layouts and examples ----------------------------------------------------------------
def test_picture_layouts():
    img = portrait("astronaut")[:100, :80]
    legend = viz.legend_image(4, max_width=320)   # wrapped to the image, at least 320 px
    framed = viz.with_legend(img, 4)
    assert framed.shape == (100 + legend.shape[0] + 4, max(80, legend.shape[1]), 3)
    assert viz.pad_top(img, 10).shape == (110, 80, 3)
    grid = viz.titled_grid([[img, img], [img]], [["a", "b"], ["c"]], cell=50, pad=4, title_height=16)
    assert grid.shape == (4 + 2 * (16 + 50 + 4), 4 + 2 * (50 + 4), 3)
    assert (grid[4 + 16 + 70:, 4 + 54:] == 255).all()  # the second row has one picture


def test_write_examples(tmp_path):
    out = demo.write_examples(tmp_path)
    assert list(out) == ["astronaut", "grace_hopper", "synthetic_face_1", "synthetic_face_2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.png" for n in out)  # no temporary files
    with Image.open(out["grace_hopper"]) as im:
        assert im.size == (512, 600)
    mtimes = {n: p.stat().st_mtime_ns for n, p in out.items()}
    assert {n: p.stat().st_mtime_ns for n, p in demo.write_examples(tmp_path).items()} == mtimes  # kept


def test_visualize_is_compact_with_names_and_landmark_dots(eval_model, monkeypatch):
    """``python -m partdisc_core.visualize``: the image and its overlay fill the width of the two map
    grids below them (the top row was a small pair beside a wide empty band), the legend carries the
    part names, and the landmarks are drawn as dots, as in the Discover tab."""
    from partdisc_core import visualize
    from partdisc_core.keypoints import PartLandmarks
    from partdisc_core.metrics import LandmarkRegressor
    from partdisc_core.partnames import PartNames

    k, frame = eval_model.num_parts, eval_model.cfg.input_size
    image = resize(portrait("astronaut"), (96, 80))
    plain = visualize.visualize(eval_model, image)
    ink = np.flatnonzero((plain[:40] < 250).any(axis=(0, 2)))                # the top row's columns
    assert ink.max() - ink.min() > 0.9 * plain.shape[1]

    legends = []
    monkeypatch.setattr(visualize, "legend_image", lambda *a, **kw: legends.append(kw["names"]) or
                        viz.legend_image(*a, **kw))
    weights = np.zeros((2 * k + 1, 2))
    weights[-1] = (frame / 2, frame / 2)                                     # one landmark, in the middle
    try:
        eval_model.part_names = PartNames(tuple(f"region {i}" for i in range(1, k + 1)), k)
        eval_model.landmarks = PartLandmarks(LandmarkRegressor(weights, 1), ("middle",), k, frame)
        shown = visualize.visualize(eval_model, image)
    finally:
        eval_model.part_names = eval_model.landmarks = None
    assert legends == [[f"{i} · region {i}" for i in range(1, k + 1)]]
    height = round((plain.shape[1] - 3 * visualize.PAD) * 80 / (2 * 96))    # the top row's pictures
    top = slice(0, height + 2 * visualize.PAD)
    assert shown.shape[1] == plain.shape[1] and shown.shape[0] > plain.shape[0]  # longer labels: more legend lines
    changed = np.argwhere((shown[top] != plain[top]).any(axis=2))            # only the dot on the overlay
    width = round(height * 96 / 80)
    centre = np.array([visualize.PAD + height / 2, 2 * visualize.PAD + width * 1.5])
    assert len(changed) and np.abs(changed - centre).max() < height / 10
