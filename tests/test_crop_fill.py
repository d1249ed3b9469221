"""Face crops that run past the photo (issue 27, item 3): the demo's overlays leave the filled area
unpainted and its parts, label maps and centroids stay off it. A stand-in model puts part 1 on every
pixel, so anything it paints on the fill would show."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("cv2")

from partdisc_core import demo, demo_tabs, facecrop  # noqa: E402
from partdisc_core.inputs import portrait  # noqa: E402
from partdisc_core.model import Prediction  # noqa: E402
from partdisc_core.result_files import ResultFiles  # noqa: E402
from partdisc_core.tracking import FaceTracker  # noqa: E402

K = 4


class PartOneEverywhere:
    """``predict`` like PartDiscModel's, with part 1 certain on every pixel."""

    num_parts = K
    landmarks = None

    def predict(self, images, output_size="input", return_attention=True, **_):
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        h, w = np.asarray(images[0]).shape[:2] if output_size == "input" else (32, 32)
        masks = torch.zeros(len(images), K + 1, h, w)
        masks[:, 0] = 1.0
        attention = torch.full((len(images), K + 1, 4, 4), 1.0 / 16) if return_attention else None
        return Prediction(masks, masks.max(dim=1).indices, attention, torch.zeros(len(images), K + 1, 8))


@pytest.fixture(scope="module")
def narrow_photo(tmp_path_factory):
    """A photo narrower than its face crop (130 px; the framing square is ~170 px), as a PNG."""
    photo = portrait("astronaut")[30:230, 160:290]
    path = tmp_path_factory.mktemp("photo") / "narrow.png"
    Image.fromarray(photo).save(path)
    return photo, path


def _painted(overlay: np.ndarray, view: np.ndarray) -> np.ndarray:
    return np.abs(overlay.astype(int) - view.astype(int)).max(axis=-1) > 0


def test_real_maps_give_the_fill_to_the_background():
    maps = np.zeros((K + 1, 8, 8), np.float32)
    maps[0] = 1.0
    out = demo.real_maps(maps, (4, 0, 16, 16), (16, 16))   # the view's left quarter is fill
    assert (out[:, :, :2] == np.eye(K + 1)[-1][:, None, None]).all()   # fill: background only
    np.testing.assert_array_equal(out[:, :, 2:], maps[:, :, 2:])        # the rest unchanged
    torch.testing.assert_close(demo.real_maps(torch.from_numpy(maps), (4, 0, 16, 16), (16, 16)), torch.from_numpy(out))
    assert demo.real_maps(maps, None, (16, 16)) is maps
    assert demo.real_maps(maps, (0, 0, 16, 16), (16, 16)) is maps


def test_discover_overlay_leaves_the_fill_unpainted(narrow_photo):
    photo, path = narrow_photo
    result = demo.PartDiscDemo(PartOneEverywhere()).discover(path, opacity=0.6)
    view = result.analysis.view
    assert view.face_found and view.valid_box is not None
    inside = facecrop.box_mask(view.valid_box, view.image.shape[1::-1])
    assert 0.1 < 1 - inside.mean() < 0.4                    # the crop is partly fill, left and right
    side = view.image.shape[0]
    overlay = result.overlay[:side, :side]
    painted = _painted(overlay, view.image)
    assert not painted[~inside].any()                      # nothing painted on the fill ...
    assert painted[inside].mean() > 0.99                   # ... while part 1 covers all of the photo
    masks = result.analysis.masks                          # and the maps give the fill to the background
    fill = ~facecrop.box_mask(view.valid_box, view.image.shape[1::-1], masks.shape[:0:-1])
    assert (masks[-1][fill] == 1).all() and (masks[:-1][:, fill] == 0).all()
    assert "not part of it" in result.status


def test_live_frame_leaves_the_fill_unpainted(narrow_photo):
    photo, _ = narrow_photo
    view = FaceTracker().update(photo, demo_tabs.LIVE_SIDE)     # what live_frame's fresh tracker cuts
    assert view.found and view.valid_box != (0, 0, demo_tabs.LIVE_SIDE, demo_tabs.LIVE_SIDE)
    inside = facecrop.box_mask(view.valid_box, view.image.shape[1::-1])
    result = demo_tabs.live_frame(PartOneEverywhere(), photo, FaceTracker())
    painted = _painted(result.overlay, view.image)
    assert not painted[~inside].any() and painted[inside].mean() > 0.99


def test_video_and_live_batches_keep_parts_off_the_fill():
    views = [np.full((64, 64, 3), 90, np.uint8), np.full((64, 64, 3), 90, np.uint8)]
    boxes = [(16, 0, 64, 64), None]
    overlays, maps, _ = demo_tabs._overlays(PartOneEverywhere(), views, 0.5, boxes)
    assert not _painted(overlays[0], views[0])[:, :16].any() and _painted(overlays[0], views[0])[:, 16:].all()
    assert _painted(overlays[1], views[1]).all()
    assert (maps[0, 0, :, :8] == 0).all() and (maps[0, -1, :, :8] == 1).all() and (maps[1, 0] == 1).all()
    from partdisc_core.metrics import soft_centroids

    cx = soft_centroids(maps[:, :K])[:, 0, 0]              # part 1's centroid: the photo's part only
    assert cx[0] == pytest.approx((8 + 31) / 2) and cx[1] == pytest.approx(31 / 2)


def test_gallery_label_maps_leave_the_fill_to_the_background(narrow_photo, tmp_path):
    photo, path = narrow_photo
    files = ResultFiles(tmp_path / "results")
    try:
        result = demo_tabs.gallery(PartOneEverywhere(), [path], files.request())
        view = demo.load_view(path)[0]
        inside = facecrop.box_mask(view.valid_box, view.image.shape[1::-1])
        with zipfile.ZipFile(result.zip_path) as zf:
            labels = np.asarray(Image.open(io.BytesIO(zf.read("narrow.png"))))
            rows = zf.read("centroids.csv").decode().splitlines()
        assert labels.shape == inside.shape
        assert (labels[~inside] == K).all() and (labels[inside] == 0).all()
        x1 = float(rows[1].split(",")[3])                   # part 1's centroid x: the middle of the photo's part
        vx0, _, vx1, _ = view.valid_box
        assert x1 == pytest.approx((vx0 + vx1 - 1) / 2, abs=0.5)
    finally:
        files.close()
