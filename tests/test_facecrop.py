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


def test_crop_outside_image_is_padded(grace_hopper):
    # CelebA-like 178x218 framing makes the box taller than the image allows
    res = facecrop.crop_to_face(grace_hopper, output_size=(178, 218), scale=2.0)
    assert res.found
    assert res.image.shape == (218, 178, 3)
    x0, y0, x1, y1 = res.box
    assert y0 < 0  # extends above the image ...
    assert (y1 - y0) / (x1 - x0) == pytest.approx(218 / 178, abs=0.02)
    # ... and the unresized crop has the full box size with replicated edges
    raw = facecrop.crop_to_face(grace_hopper, scale=2.0)
    rx0, ry0, rx1, ry1 = raw.box
    assert raw.image.shape[:2] == (ry1 - ry0, rx1 - rx0)
    if ry0 < 0:
        np.testing.assert_array_equal(raw.image[0], raw.image[-ry0])
    refl = facecrop.crop_to_face(grace_hopper, scale=2.0, pad_mode="reflect")
    assert refl.image.shape == raw.image.shape


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
