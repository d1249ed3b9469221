import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

from partdisc_core import facecrop  # noqa: E402
from partdisc_core.inputs import portrait  # noqa: E402


def _contains(box, region):
    x0, y0, x1, y1 = box
    rx0, ry0, rx1, ry1 = region
    return x0 <= rx0 and y0 <= ry0 and x1 >= rx1 and y1 >= ry1


@pytest.fixture(scope="module")
def astronaut():
    return portrait("astronaut")


@pytest.fixture(scope="module")
def grace_hopper():
    return portrait("grace_hopper")


@pytest.fixture(scope="module")
def astronaut_crop(astronaut):
    return facecrop.crop_to_face(astronaut)


def test_astronaut_face_detected_and_framed(astronaut, astronaut_crop):
    res = astronaut_crop
    assert res.found and res.message == ""
    x0, y0, x1, y1 = res.box
    # square crop that contains the whole head (face + hair)
    assert x1 - x0 == y1 - y0
    assert _contains(res.box, (170, 30, 260, 130))
    # ... but is still a face crop, not the whole picture
    assert (x1 - x0) < 0.5 * astronaut.shape[1]
    assert res.image.shape == (y1 - y0, x1 - x0, 3) and res.image.dtype == np.uint8
    # the crop is really that part of the image (it lies inside the image)
    assert x0 >= 0 and y0 >= 0 and x1 <= 512 and y1 <= 512
    np.testing.assert_array_equal(res.image, astronaut[y0:y1, x0:x1])
    # the Haar box sits in the crop with the face slightly above the centre
    fx, fy, fw, fh = res.face_box
    assert _contains(res.box, (fx, fy, fx + fw, fy + fh))
    assert (fy + fh / 2) - (y0 + y1) / 2 >= 0


def test_detect_faces_boxes_and_speed(astronaut):
    t = time.perf_counter()
    boxes = facecrop.detect_faces(astronaut)
    dt = time.perf_counter() - t
    assert len(boxes) >= 1
    x, y, w, h = boxes[0]
    cx, cy = x + w / 2, y + h / 2
    assert 170 < cx < 260 and 50 < cy < 150
    assert 60 < w < 160
    assert dt < 2.0  # ~60 ms here for 512x512


def test_detect_faces_sorted_by_area(astronaut, grace_hopper):
    # astronaut (face ~95 px) on the left, Grace Hopper (face ~230 px) on the right
    left = np.pad(astronaut, ((0, 88), (0, 0), (0, 0)), mode="edge")
    canvas = np.concatenate([left, grace_hopper], axis=1)  # 600 x 1024
    boxes = facecrop.detect_faces(canvas)  # detected at 640 px, mapped back
    assert len(boxes) >= 2
    areas = [w * h for _, _, w, h in boxes]
    assert areas == sorted(areas, reverse=True)
    big, second = boxes[0], boxes[1]
    assert big[0] >= 512 and 180 < big[2] < 300  # Grace Hopper's face first
    assert 170 < second[0] + second[2] / 2 < 260 and 60 < second[2] < 160
    res = facecrop.crop_to_face(canvas)
    assert res.num_faces == len(boxes) and res.face_box == big


def test_grace_hopper(grace_hopper):
    res = facecrop.crop_to_face(grace_hopper, output_size=128)
    assert res.found
    assert res.image.shape == (128, 128, 3)
    fx, fy, fw, fh = res.face_box
    # her face is in the middle of the portrait, roughly x 150-380, y 100-330
    assert 200 < fx + fw / 2 < 330 and 150 < fy + fh / 2 < 290
    assert _contains(res.box, (fx, fy, fx + fw, fy + fh))


def test_crop_outside_image_is_moved_inside_or_filled(grace_hopper):
    # CelebA-like 178x218 framing: centred on the face, the box would leave the top of the image ...
    out = facecrop.crop_to_face(grace_hopper, output_size=(178, 218), scale=2.0, keep_inside=False)
    assert out.found and out.image.shape == (218, 178, 3)
    x0, y0, x1, y1 = out.box
    assert y0 < 0 and out.padded
    assert (y1 - y0) / (x1 - x0) == pytest.approx(218 / 178, abs=0.02)
    assert out.valid_box[1] > 0 and out.valid_box[3] == 218  # the rows above the photo are fill
    # ... so by default it is moved down into the image instead: same size, nothing filled
    res = facecrop.crop_to_face(grace_hopper, output_size=(178, 218), scale=2.0)
    bx0, by0, bx1, by1 = res.box
    assert by0 == 0 and (bx1 - bx0, by1 - by0) == (x1 - x0, y1 - y0)
    assert not res.padded and res.valid_mask().all() and res.image.shape == (218, 178, 3)
    # the unresized crop has the full box size, whatever the fill
    for mode in facecrop.PAD_MODES:
        raw = facecrop.crop_to_face(grace_hopper, scale=2.0, pad_mode=mode, keep_inside=False)
        rx0, ry0, rx1, ry1 = raw.box
        assert raw.image.shape[:2] == (ry1 - ry0, rx1 - rx0)
        vx0, vy0, vx1, vy1 = raw.valid_box
        np.testing.assert_array_equal(raw.image[vy0:vy1, vx0:vx1],
                                      grace_hopper[max(ry0, 0):ry1, max(rx0, 0):rx1][:vy1 - vy0, :vx1 - vx0])
    with pytest.raises(ValueError, match="pad_mode"):
        facecrop.crop_to_face(grace_hopper, pad_mode="wrap")


def test_crop_moves_inside_the_photo_when_it_fits(astronaut):
    photo = astronaut[:, 150:]  # the face near the photo's left edge
    centred = facecrop.crop_to_face(photo, keep_inside=False)
    assert centred.box[0] < 0  # centred on the face, the square would leave the photo ...
    res = facecrop.crop_to_face(photo)
    x0, y0, x1, y1 = res.box
    cx0, cy0, cx1, cy1 = centred.box
    assert res.found and x0 == 0 and (y0, x1 - x0, y1 - y0) == (cy0, cx1 - cx0, cy1 - cy0)  # ... it moves right
    assert not res.padded and res.valid_mask().all()
    np.testing.assert_array_equal(res.image, photo[y0:y1, x0:x1])
    fx, fy, fw, fh = res.face_box
    assert _contains(res.box, (fx, fy, fx + fw, fy + fh))  # the whole face stays in it


def test_fit_box():
    assert facecrop.fit_box((-10, 5, 30, 45), 50, 40) == (0, 0, 40, 40)     # fits: moved inside
    assert facecrop.fit_box((30, -3, 70, 37), 50, 40) == (10, 0, 50, 40)
    assert facecrop.fit_box((5, 5, 25, 25), 50, 40) == (5, 5, 25, 25)       # inside: unchanged
    # longer than the image: it covers the image's whole extent, as near to where it was as it can
    assert facecrop.fit_box((-30, -10, 40, 60), 50, 40) == (-20, -10, 50, 60)
    assert facecrop.fit_box((5, -40, 75, 30), 50, 40) == (0, -30, 70, 40)
    assert facecrop.fit_box((-2.5, 1.0, 37.5, 41.0), 50, 40) == pytest.approx((0.0, 0.0, 40.0, 40.0))


def _photo_with_a_loud_edge(astronaut, side: str):
    """A photo narrower than the face crop, its edge column on `side` random colours."""
    photo = astronaut[30:230, 160:290].copy()  # 130 px wide; the framing square is ~170 px
    column = 0 if side == "left" else -1
    photo[:, column] = np.random.default_rng(0).integers(0, 256, (photo.shape[0], 3))
    return photo, photo[:, column].astype(float)


@pytest.mark.parametrize("side", ["left", "right"])
def test_crop_larger_than_the_photo_is_filled_without_stripes(astronaut, side):
    photo, edge = _photo_with_a_loud_edge(astronaut, side)
    res = facecrop.crop_to_face(photo)
    assert res.found and res.padded
    x0, y0, x1, y1 = res.box
    assert x0 < 0 and x1 > photo.shape[1] and 0 <= y0 and y1 <= photo.shape[0]  # filled left and right only
    vx0, vy0, vx1, vy1 = res.valid_box
    assert (vx0, vy0, vx1, vy1) == (-x0, 0, photo.shape[1] - x0, y1 - y0)
    np.testing.assert_array_equal(res.image[:, vx0:vx1], photo[y0:y1])
    fill = res.image[:, :vx0] if side == "left" else res.image[:, vx1:]
    assert fill.shape[1] >= 5
    # no column of the fill repeats the edge column (replicating would copy it into every one)
    diff = np.abs(fill.astype(float) - edge[y0:y1, None]).mean(axis=(0, 2))
    assert diff.min() > 30
    smeared = facecrop.crop_to_face(photo, pad_mode="edge")  # the old fill: the edge smeared out
    stripes = smeared.image[:, :vx0] if side == "left" else smeared.image[:, vx1:]
    assert np.abs(stripes.astype(float) - edge[y0:y1, None]).max() == 0
    # the valid box follows a resize
    small = facecrop.crop_to_face(photo, output_size=64)
    s = 64 / (x1 - x0)
    assert small.valid_box[0] == pytest.approx(vx0 * s, abs=1) and small.valid_box[2] == pytest.approx(vx1 * s, abs=1)
    assert small.valid_mask().shape == (64, 64) and small.valid_mask().sum() == np.prod(np.subtract(
        small.valid_box[2:], small.valid_box[:2]))


def test_fill_outside_modes():
    rng = np.random.default_rng(3)
    crop = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    box = (10, 4, 31, 30)
    inside = facecrop.box_mask(box, (40, 30))
    assert inside.sum() == 21 * 26 and inside[4, 10] and not inside[4, 31] and not inside[3, 10]
    outs = {m: facecrop.fill_outside(crop, box, m) for m in facecrop.PAD_MODES}
    for mode, out in outs.items():
        assert out.shape == crop.shape and out.dtype == np.uint8, mode
        np.testing.assert_array_equal(out[inside], crop[inside])
    np.testing.assert_array_equal(outs["edge"], np.pad(crop[4:30, 10:31], ((4, 0), (10, 9), (0, 0)), mode="edge"))
    assert (outs["grey"][~inside] == facecrop.GREY).all() and (outs["black"][~inside] == 0).all()
    mean = crop[inside].mean(0)
    assert np.abs(outs["mean"][~inside] - mean).max() <= 0.5
    np.testing.assert_array_equal(outs["reflect"][4:30, 9], crop[4:30, 11])  # mirrored about the border
    assert outs["blur"][~inside].astype(float).std(0).max() < crop[inside].std(0).min()  # smooth, no detail
    assert facecrop.fill_outside(crop, (0, 0, 40, 30), "grey") is crop  # nothing outside
    for mode in ("reflect", "blur"):  # a one-pixel-wide inside: nothing to mirror, no error
        out = facecrop.fill_outside(crop, (10, 4, 11, 30), mode)
        assert out.shape == crop.shape
    assert (facecrop.fill_outside(crop, (5, 5, 5, 5), "mean") == facecrop.GREY).all()  # empty inside
    with pytest.raises(ValueError, match="pad_mode"):
        facecrop.fill_outside(crop, box, "wrap")


def test_scale_box_keeps_the_pixels_whose_centres_are_inside():
    assert facecrop.scale_box((0, 0, 40, 30), (40, 30), (80, 60)) == (0, 0, 80, 60)
    assert facecrop.scale_box((10, 3, 30, 30), (40, 30), (20, 15)) == (5, 1, 15, 15)
    assert facecrop.scale_box((1, 0, 3, 3), (3, 3), (2, 2)) == (1, 0, 2, 2)  # x 0.67..2: the centre 1.5 only
    mask = facecrop.box_mask((10, 3, 30, 30), (40, 30), (20, 15))
    assert mask.shape == (15, 20) and mask.sum() == 10 * 14


@pytest.mark.parametrize("kind", ["flat", "noise", "coffee"])
def test_no_face(kind):
    if kind == "flat":
        img = np.full((300, 400, 3), (90, 140, 200), np.uint8)
    elif kind == "noise":
        img = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    else:
        img = skdata.coffee()
    H, W = img.shape[:2]
    res = facecrop.crop_to_face(img)
    assert not res.found
    assert res.message == "No face found: using the centre of the image"
    assert res.face_box is None
    side = min(H, W)
    assert res.image.shape == (side, side, 3)
    x0, y0, x1, y1 = res.box
    assert (x1 - x0, y1 - y0) == (side, side)
    assert abs((x0 + x1) / 2 - W / 2) <= 1 and abs((y0 + y1) / 2 - H / 2) <= 1
    np.testing.assert_array_equal(res.image, img[y0:y1, x0:x1])
    out = facecrop.crop_to_face(img, output_size=64)
    assert out.image.shape == (64, 64, 3) and not out.found


def test_grayscale_inputs(astronaut, astronaut_crop):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    rgb_gray = np.repeat(gray[:, :, None], 3, axis=2)
    for img in (rgb_gray, gray):
        res = facecrop.crop_to_face(img)
        assert res.found
        assert res.image.shape[2] == 3 and res.image.dtype == np.uint8
        # same face as for the colour image (within a few pixels)
        assert np.abs(np.subtract(res.box, astronaut_crop.box)).max() <= 8


def test_float_and_small_inputs(astronaut, astronaut_crop):
    x0, y0, x1, y1 = astronaut_crop.box
    res = facecrop.crop_to_face(astronaut.astype(np.float32) / 255.0)
    assert res.found
    # a tight 80x80 MTFL-like crop is upscaled for detection and still works
    tight = np.asarray(Image.fromarray(astronaut[45:185, 155:295]).resize((80, 80)))
    small = facecrop.crop_to_face(tight, output_size=80)
    assert small.found
    assert small.image.shape == (80, 80, 3)


def test_margin_overrides_scale(astronaut):
    a = facecrop.crop_to_face(astronaut, margin=0.5)  # scale 2
    b = facecrop.crop_to_face(astronaut, scale=2.0)
    assert a.box == b.box
    c = facecrop.crop_to_face(astronaut, scale=1.2)
    assert (c.box[2] - c.box[0]) < (b.box[2] - b.box[0])


def test_cascade_cached():
    assert facecrop._get_cascade() is facecrop._get_cascade()


def test_imports_without_cv2(monkeypatch):
    path = Path(facecrop.__file__)
    monkeypatch.setitem(sys.modules, "cv2", None)  # "import cv2" now fails
    spec = importlib.util.spec_from_file_location("_facecrop_nocv2", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "_facecrop_nocv2", mod)
    spec.loader.exec_module(mod)
    assert hasattr(mod, "crop_to_face")
    with pytest.raises(ImportError):
        mod.detect_faces(np.zeros((32, 32, 3), np.uint8))
