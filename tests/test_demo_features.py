"""The maths and logic behind the demo's Live, Video, Gallery and Morph tabs, without a server:
PartDiscModel.morph_parts (t = 1 is the swap), the shared export format, and partdisc_core.demo_tabs
on public-domain photos with a tiny model."""
from __future__ import annotations

import csv
import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import random_views, tiny_model
from partdisc_core.demo import DemoInputError
from partdisc_core.labelmaps import centroid_header, centroid_row, label_png
from partdisc_core.metrics import soft_centroids
from partdisc_core.result_files import ResultFiles
from partdisc_core.viz import part_colors

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from partdisc_core import demo_tabs  # noqa: E402
from partdisc_core.media import write_gif, write_mp4  # noqa: E402


# --- morph_parts -----------------------------------------------------------------------------------
def test_morph_at_one_is_the_swap_and_at_zero_the_reconstruction(eval_model):
    a, b = random_views(2, seed=3)
    b = b.roll(7, dims=-1) * 0.9
    swap = eval_model.swap_parts(a, b, parts=[1, 3])
    out = eval_model.morph_parts(a, b, parts=[1, 3], t=[0.0, 0.5, 1.0])
    assert out.shape == (2, 3, 3, 64, 64)
    torch.testing.assert_close(out[:, 2], swap.swapped_a, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 0], swap.recon_a, atol=1e-5, rtol=0)
    # in between it differs from both ends
    assert (out[:, 1] - out[:, 0]).abs().max() > 1e-4 and (out[:, 1] - out[:, 2]).abs().max() > 1e-4
    one = eval_model.morph_parts(a[:1], b[:1], parts=[1, 3], t=1.0)   # a scalar t: (B, 3, S, S)
    torch.testing.assert_close(one, swap.swapped_a[:1], atol=1e-5, rtol=0)


def test_morph_interpolates_g_linearly_for_the_chosen_parts_only(eval_model, monkeypatch):
    a, b = random_views(1, seed=4)
    b = b.flip(-2)
    seen = {}
    render = eval_model.render

    def spy(features, parts):
        seen["parts"] = parts.clone()
        return render(features, parts)

    monkeypatch.setattr(eval_model, "render", spy)
    eval_model.morph_parts(a, b, parts=[2], t=[0.0, 0.25, 1.0])
    g = seen["parts"]                                             # (T * B, K+1, C)
    _, g_ab = eval_model.encode(torch.cat([a, b]))
    ga, gb = g_ab[0], g_ab[1]
    torch.testing.assert_close(g[1, 1], 0.75 * ga[1] + 0.25 * gb[1], atol=1e-5, rtol=1e-5)   # part 2: index 1
    torch.testing.assert_close(g[1, [0, 2, 3, 4]], ga[[0, 2, 3, 4]])                        # others: A's own
    torch.testing.assert_close(g[2, 1], gb[1])


def test_morph_rejects_bad_parts_and_t(eval_model):
    a, b = random_views(1)
    with pytest.raises(ValueError, match="1..4"):
        eval_model.morph_parts(a, b, parts=[5], t=0.5)
    with pytest.raises(ValueError, match="finite"):
        eval_model.morph_parts(a, b, parts=[1], t=float("nan"))


# --- the shared export format ----------------------------------------------------------------------
def test_label_png_and_centroid_row_follow_the_export_format():
    k = 3
    maps = torch.zeros(k + 1, 6, 8)
    maps[0, 1, 2] = 1.0      # part 1 at x = 2, y = 1
    maps[1, 4, 6] = 1.0
    maps[2, :, :] = 0.5      # spread out: the centre
    maps[3] = 1.0
    row = centroid_row("a.png", maps, k)
    assert centroid_header(k) == ["image", "width", "height", "part1_x", "part1_y", "part2_x", "part2_y",
                                  "part3_x", "part3_y"]
    assert row[:3] == ["a.png", 8, 6]
    assert [float(v) for v in row[3:]] == pytest.approx([2, 1, 6, 4, 3.5, 2.5])
    im = label_png(np.array([[0, 1], [2, 3]]), k)
    assert im.mode == "P" and np.asarray(im).tolist() == [[0, 1], [2, 3]]
    assert np.asarray(im.getpalette()[:12]).reshape(4, 3).tolist() == part_colors(k).tolist()


# --- demo_tabs -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    import matplotlib.cbook
    import skimage.data

    folder = tmp_path_factory.mktemp("photos")
    out = {"astronaut": folder / "astronaut.png", "grace_hopper": folder / "grace_hopper.jpg"}
    Image.fromarray(skimage.data.astronaut()).save(out["astronaut"])
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as im:
        im.convert("RGB").save(out["grace_hopper"], quality=92)
    faces = skimage.data.lfw_subset()[:3]                     # 25x25 grayscale faces in [0, 1]
    for i, face in enumerate(faces):
        out[f"lfw_{i}"] = folder / f"lfw_{i}.png"
        Image.fromarray((face * 255).astype(np.uint8)).resize((100, 100)).save(out[f"lfw_{i}"])
    (folder / "not_an_image.png").write_text("plain text\n")
    out["not_an_image"] = folder / "not_an_image.png"
    return out


@pytest.fixture
def results(tmp_path):
    files = ResultFiles(tmp_path / "results")
    yield files
    files.close()


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=5).eval()


def panning_clip(path, n: int = 10, fps: int = 10, step: int = 4):
    """A clip of the astronaut photo with the camera panning right (the face moves left)."""
    import skimage.data

    photo = skimage.data.astronaut()
    frames = [np.ascontiguousarray(photo[40:360, step * i:step * i + 400]) for i in range(n)]
    return write_mp4(frames, path, fps=fps)


def test_live_frames_follow_the_face_and_refuse_bad_frames(model):
    import skimage.data

    photo = skimage.data.astronaut()
    tracker = demo_tabs.FaceTracker()
    first = demo_tabs.live_frame(model, photo[:400, :400], tracker)
    assert first.found and first.overlay.shape == (demo_tabs.LIVE_SIDE, demo_tabs.LIVE_SIDE, 3)
    assert "Face found" in first.status and "ms" in first.status
    whole = demo_tabs.live_frame(model, photo[:300, :400], None, crop=False)
    assert whole.found is None and whole.overlay.shape == (240, 320, 3)
    rgba = np.dstack([photo[:100, :100], np.full((100, 100), 255, np.uint8)])
    assert demo_tabs.live_frame(model, rgba, None, crop=False).overlay.shape == (320, 320, 3)
    for bad, message in ((None, "No camera frame"), (np.zeros((8, 8, 3), np.uint8), "only 8x8"),
                         (np.zeros((10, 10, 10, 3), np.uint8), "RGB picture"),
                         (np.zeros((2000, 3000, 3), np.uint8), "limit is 1920")):
        with pytest.raises(DemoInputError, match=message):
            demo_tabs.live_frame(model, bad, tracker)


def test_single_frame_decodes_uploads_safely(model, photos):
    r = demo_tabs.single_frame(model, photos["grace_hopper"])
    assert r.found and r.overlay.shape == (320, 320, 3)
    with pytest.raises(DemoInputError, match="not an image"):
        demo_tabs.single_frame(model, photos["not_an_image"])


def test_video_overlays_every_frame_and_tracks_parts(model, tmp_path, results):
    clip = panning_clip(tmp_path / "pan.mp4")
    calls = []
    r = demo_tabs.video(model, clip, results.request(), progress=lambda f, d: calls.append(f))
    assert r.frames == 10 and r.clip_seconds == pytest.approx(1.0)
    assert calls[-1] == pytest.approx(1.0) and calls == sorted(calls)
    assert "Face found in all 10 frames" in r.status and "s per second of video" in r.status
    with av.open(r.video_path) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(frames) == 10 and frames[0].shape == (320, 320, 3)
    with open(r.csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    k = model.num_parts
    assert list(rows[0]) == ["frame", "time_s", "width", "height"] + [f"part{i}_{c}" for i in range(1, k + 1)
                                                                       for c in "xy"]
    assert [int(r["frame"]) for r in rows] == list(range(10))
    assert float(rows[3]["time_s"]) == pytest.approx(0.3)
    xy = np.array([[float(r[f"part{i}_{c}"]) for i in range(1, k + 1) for c in "xy"] for r in rows])
    assert (xy[:, 0::2] > -1).all() and (xy[:, 0::2] < 400).all() and (xy[:, 1::2] < 320).all()
    # the camera pans right, the face moves left in the clip by 4 px a frame: so do the part tracks
    # (the crop follows with some smoothing lag, the parts stay on the face)
    drift = (xy[-1, 0::2] - xy[2, 0::2]).mean() / 7
    assert -6 < drift < -1.5


def test_video_without_crop_maps_centroids_to_the_whole_frame(model, tmp_path, results):
    clip = panning_clip(tmp_path / "pan.mp4", n=4)
    r = demo_tabs.video(model, clip, results.request(), crop=False)
    with av.open(r.video_path) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (400, 320)
    with open(r.csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    # the centroids of the first frame are soft_centroids of the model's maps, scaled to 400x320
    import skimage.data

    frame = skimage.data.astronaut()[40:360, 0:400]
    maps = model.predict(frame, output_size=None, return_attention=False).masks
    cen = soft_centroids(maps[:, :model.num_parts])[0].numpy()
    s = maps.shape[-1]
    expected = (cen + 0.5) * np.array([400, 320]) / s - 0.5
    got = np.array([[float(rows[0][f"part{i}_{c}"]) for c in "xy"] for i in range(1, model.num_parts + 1)])
    np.testing.assert_allclose(got, expected, atol=6)  # the clip went through H.264 once


def test_video_bad_inputs(model, tmp_path, results, photos):
    with pytest.raises(DemoInputError, match="not a video"):
        demo_tabs.video(model, photos["not_an_image"], results.request())
    with pytest.raises(DemoInputError, match="still image"):
        demo_tabs.video(model, photos["grace_hopper"], results.request())
    long_clip = panning_clip(tmp_path / "long.mp4", n=12, fps=2)  # 6 s
    with pytest.raises(DemoInputError, match="6.0 s long; the limit is 5 s"):
        demo_tabs.video(model, long_clip, results.request(), max_seconds=5)
    gif = write_gif([np.full((64, 64, 3), 100 + 20 * i, np.uint8) for i in range(3)], tmp_path / "flat.gif", fps=5)
    r = demo_tabs.video(model, gif, results.request())
    assert r.frames == 3 and "No face found in any of the 3 frames: the centre of each frame was used" in r.status
    assert "Face found in" not in r.status and "follows it" not in r.status  # the words agree with the count


@pytest.mark.parametrize("found, frames, words", [
    (0, 45, "No face found in any of the 45 frames: the centre of each frame was used"),
    (45, 45, "Face found in all 45 frames; the crop follows it smoothly."),
    (3, 45, "Face found in 3 of 45 frames; the crop follows it smoothly, holds still where it is lost"),
])
def test_video_status_says_what_following_the_face_did(found, frames, words):
    assert demo_tabs.face_sentence(found, frames).startswith(words)


def test_gallery_grid_and_zip_in_the_export_format(model, photos, results):
    names = ["astronaut", "grace_hopper", "lfw_0", "lfw_1", "lfw_2", "astronaut", "not_an_image"]
    r = demo_tabs.gallery(model, [photos[n] for n in names], results.request())
    assert r.names == ["astronaut", "grace_hopper", "lfw_0", "lfw_1", "lfw_2", "astronaut-2"]
    assert "Skipped 1: not_an_image.png" in r.status and "6 faces" in r.status
    cell = demo_tabs.GALLERY_CELL
    assert r.grid.shape[1] >= 4 * cell and r.grid.shape[0] >= 2 * cell  # 2 rows of up to 4
    k = model.num_parts
    with zipfile.ZipFile(r.zip_path) as zf:
        listing = set(zf.namelist())
        assert {f"{n}.png" for n in r.names} | {f"images/{n}.png" for n in r.names} | {"centroids.csv"} == listing
        rows = list(csv.DictReader(io.StringIO(zf.read("centroids.csv").decode())))
        labels = np.asarray(Image.open(io.BytesIO(zf.read("grace_hopper.png"))))
        view = np.asarray(Image.open(io.BytesIO(zf.read("images/grace_hopper.png"))))
    assert list(rows[0]) == centroid_header(k) and [r_["image"] for r_ in rows] == [f"{n}.png" for n in r.names]
    # the label map is the model's argmax on the view at the view's size, as train/export.py writes it
    pred = model.predict(view, return_attention=False)
    np.testing.assert_array_equal(labels, pred.labels[0].numpy())
    assert int(rows[1]["width"]) == view.shape[1]
    expected = centroid_row("grace_hopper.png", pred.masks[0], k)
    assert [float(v) for v in list(rows[1].values())[3:]] == pytest.approx([float(v) for v in expected[3:]],
                                                                           abs=2e-3)


def test_gallery_limits(model, photos, results):
    with pytest.raises(DemoInputError, match="at most 16"):
        demo_tabs.gallery(model, [photos["astronaut"]] * 17, results.request())
    with pytest.raises(DemoInputError, match="upload some faces"):
        demo_tabs.gallery(model, [], results.request())
    with pytest.raises(DemoInputError, match="None of the files"):
        demo_tabs.gallery(model, [photos["not_an_image"]], results.request())


def test_morph_tab_at_one_equals_the_swap(model, photos, results):
    from partdisc_core import demo

    from partdisc_core.inputs import to_uint8

    r = demo_tabs.morph(model, photos["astronaut"], photos["grace_hopper"], results.request(), parts=[1, 2], t=1.0)
    view_a, _ = demo.load_view(photos["astronaut"])
    direct = model.swap_parts(view_a.image, demo.load_view(photos["grace_hopper"])[0].image, parts=[1, 2])
    swapped = to_uint8(direct.swapped_a[0])
    assert np.abs(r.frames[-1].astype(int) - swapped).max() <= 1       # the strip ends at the swap
    cell = demo_tabs.MORPH_CELL                                          # the middle picture is the swap too
    top = demo.GRID_TOP_PAD + 26                                         # the viewer's margin, the edge, the title
    middle = r.picture[top:top + cell, 12 + cell:12 + 2 * cell]
    expected = np.asarray(Image.fromarray(swapped).resize((cell, cell), Image.BICUBIC))
    assert np.abs(middle.astype(int) - expected).mean() < 2
    with Image.open(r.strip_path) as gif:
        assert gif.n_frames == 2 * demo_tabs.MORPH_STEPS - 2           # forward and back
    r0 = demo_tabs.morph(model, photos["astronaut"], photos["grace_hopper"], results.request(), parts=[1, 2], t=0)
    recon = to_uint8(model.reconstruct(view_a.image)[0])
    assert np.abs(r0.frames[0].astype(int) - recon).max() <= 1
    assert not np.array_equal(r0.picture, r.picture)


def test_part_names_reach_the_csvs_titles_legends_and_statuses(photos, results, tmp_path):
    """A model with part_names.json: the names head the CSV columns (part<k>_<name>_x), name the
    chosen parts in the statuses and short titles, and label the legends; the gallery grid leaves
    the viewer's margin above its first titles. Without names, the numbers stay."""
    from partdisc_core import demo
    from partdisc_core.partnames import PartNames

    named = tiny_model(seed=5).eval()
    named.part_names = PartNames(("left eye", "right eye", "nose", "upper lip"), 4)
    a, b = photos["astronaut"], photos["grace_hopper"]
    g = demo_tabs.gallery(named, [a, b], results.request())
    with zipfile.ZipFile(g.zip_path) as zf:
        header = zf.read("centroids.csv").decode().splitlines()[0].split(",")
    assert header[3:7] == ["part1_left_eye_x", "part1_left_eye_y", "part2_right_eye_x", "part2_right_eye_y"]
    assert header[-2:] == ["part4_upper_lip_x", "part4_upper_lip_y"]
    assert header == centroid_header(4, named.part_names.names)
    assert (g.grid[:demo.GRID_TOP_PAD] == 255).all() and (g.grid[demo.GRID_TOP_PAD:demo.GRID_TOP_PAD + 26] < 128).any()
    v = demo_tabs.video(named, panning_clip(tmp_path / "pan.mp4", n=3), results.request())
    with open(v.csv_path) as f:
        assert f.readline().strip().split(",")[:6] == ["frame", "time_s", "width", "height", "part1_left_eye_x",
                                                       "part1_left_eye_y"]
    m = demo_tabs.morph(named, a, b, results.request(), parts=[1, 3], t=0.5)
    assert "A rebuilt with parts 1 (left eye), 3 (nose) moved 50%" in m.status
    s = demo.PartDiscDemo(named).swap(a, b, parts=[3])
    assert "Exchanged part 3 (nose);" in s.status
    assert demo.part_list([3], 4, named.part_names.names, short=True) == "nose"
    assert demo.part_list([1, 2, 3], 4, named.part_names.names, short=True) == "3 parts"
    assert demo.part_list([1, 2, 3, 4], 4, named.part_names.names) == "all parts"
    assert demo.part_list([1, 3], 4) == "parts 1, 3" and centroid_header(1) == ["image", "width", "height", "part1_x",
                                                                                 "part1_y"]
    d = demo.PartDiscDemo(named).discover(a)
    assert "Part names: each part is named once" in d.status and "left and right are the image's" in d.status
    plain = demo.PartDiscDemo(tiny_model(seed=5).eval()).discover(a)
    assert "Part names" not in plain.status
    legend = d.overlay[plain.analysis.view.image.shape[0]:]             # below the picture: the legend differs
    assert legend.shape != plain.overlay[plain.analysis.view.image.shape[0]:].shape or \
        not np.array_equal(legend, plain.overlay[plain.analysis.view.image.shape[0]:])


def test_morph_tab_bad_inputs(model, photos, results):
    a, b = photos["astronaut"], photos["grace_hopper"]
    for t, message in ((1.5, "between 0 and 1"), ("x", "a number"), (float("nan"), "between 0 and 1")):
        with pytest.raises(DemoInputError, match=message):
            demo_tabs.morph(model, a, b, results.request(), parts=[1], t=t)
    with pytest.raises(DemoInputError, match="part 9 does not exist"):
        demo_tabs.morph(model, a, b, results.request(), parts=[9])
    with pytest.raises(DemoInputError, match="Image B: .*not an image"):
        demo_tabs.morph(model, a, photos["not_an_image"], results.request(), parts=[1])
    with pytest.raises(DemoInputError, match="two images"):
        demo_tabs.morph(model, a, None, results.request())
    none = demo_tabs.morph(model, a, b, results.request(), parts=[], t=0.5)
    assert "No parts chosen" in none.status
