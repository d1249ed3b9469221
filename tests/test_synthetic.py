"""Tests for the procedural synthetic-face generator (partdisc_core.synthetic)."""
import csv

import numpy as np
import pytest
import torch
from PIL import Image

from partdisc_core.synthetic import (CSV_HEADER, LANDMARK_NAMES, PART_NAMES, SyntheticBatch,
                                     SyntheticFaces, _main, save_landmarks_folder)

BG, HAIR, SKIN, LEYE, REYE, LBROW, RBROW, NOSE, MOUTH, CLOTHES = range(10)


@pytest.fixture(scope="module")
def batch():
    return SyntheticFaces().generate(48, seed=3)


def _min_dist(mask: torch.Tensor, point: torch.Tensor) -> float:
    """Distance (pixels) from an (x, y) point to the nearest True pixel centre of mask."""
    yx = mask.nonzero().float()
    if len(yx) == 0:
        return float("inf")
    return float(((yx[:, 1] - point[0]) ** 2 + (yx[:, 0] - point[1]) ** 2).sqrt().min())


def test_names():
    assert PART_NAMES == ("background", "hair", "skin", "left_eye", "right_eye", "left_brow",
                          "right_brow", "nose", "mouth", "clothes")
    assert LANDMARK_NAMES == ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")


def test_determinism():
    gen = SyntheticFaces(size=64)
    a, b = gen.generate(4, seed=11), gen.generate(4, seed=11)
    for name in ("images", "labels", "landmarks"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    c = gen.generate(4, seed=12)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.labels, c.labels)
    assert not torch.allclose(a.landmarks, c.landmarks)
    # the global RNG is neither used nor disturbed
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    gen.generate(2, seed=5)
    assert torch.equal(torch.rand(3), before)


def test_sample_and_prefix_consistency():
    gen = SyntheticFaces(size=64)
    one, five = gen.sample(7), gen.generate(5, seed=7)
    assert torch.equal(one.images, gen.generate(1, seed=7).images)
    assert torch.equal(one.images, five.images[:1])
    assert torch.equal(one.labels, five.labels[:1])
    assert torch.allclose(one.landmarks, five.landmarks[:1])


def test_shapes_dtypes_ranges(batch):
    assert isinstance(batch, SyntheticBatch)
    assert batch.images.shape == (48, 3, 128, 128) and batch.images.dtype == torch.float32
    assert batch.labels.shape == (48, 128, 128) and batch.labels.dtype == torch.int64
    assert batch.landmarks.shape == (48, 5, 2) and batch.landmarks.dtype == torch.float32
    assert batch.images.min() >= 0 and batch.images.max() <= 1
    assert batch.labels.min() >= 0 and batch.labels.max() < len(PART_NAMES)
    assert (batch.landmarks >= 0).all() and (batch.landmarks <= 127).all()
    assert set(batch.labels.unique().tolist()) == set(range(len(PART_NAMES)))
    small = SyntheticFaces(size=48).generate(2, seed=0)
    assert small.images.shape == (2, 3, 48, 48) and small.labels.shape == (2, 48, 48)


def test_typical_content(batch):
    for i in range(len(batch.labels)):
        present = set(batch.labels[i].unique().tolist())
        assert {BG, SKIN, LEYE, REYE, NOSE, MOUTH} <= present, (i, present)


def test_landmarks_agree_with_labels(batch):
    lab, lm = batch.labels, batch.landmarks
    for i in range(len(lab)):
        for k, eye in ((0, LEYE), (1, REYE)):
            x, y = lm[i, k].round().long().tolist()
            assert lab[i, y, x] == eye, (i, k)
        x, y = lm[i, 2].round().long().tolist()
        assert lab[i, y, x] == NOSE or _min_dist(lab[i] == NOSE, lm[i, 2]) <= 1.0, i
        for k in (3, 4):
            assert _min_dist(lab[i] == MOUTH, lm[i, k]) <= 1.5, (i, k)
        assert lm[i, 0, 0] < lm[i, 1, 0] and lm[i, 3, 0] < lm[i, 4, 0], i
        # image-left part labels are on the image left of their right counterparts
        xs = torch.arange(128.0)
        lx = xs[(lab[i] == LEYE).any(0)].mean()
        rx = xs[(lab[i] == REYE).any(0)].mean()
        assert lx < rx, i


def test_pose_settings():
    flat = SyntheticFaces(size=96, max_rotation=0.0).generate(8, seed=2).landmarks
    assert torch.allclose(flat[:, 0, 1], flat[:, 1, 1], atol=1e-4)      # eyes level
    assert torch.allclose(flat[:, 3, 1], flat[:, 4, 1], atol=1e-4)      # mouth corners level
    tilted = SyntheticFaces(size=96).generate(8, seed=2).landmarks
    assert (tilted[:, 0, 1] - tilted[:, 1, 1]).abs().max() > 1.0
    small = SyntheticFaces(size=96, scale_range=(0.3, 0.3)).generate(8, seed=2).landmarks
    big = SyntheticFaces(size=96, scale_range=(0.6, 0.6)).generate(8, seed=2).landmarks
    iod = lambda lm: (lm[:, 1] - lm[:, 0]).norm(dim=-1)  # noqa: E731
    assert torch.allclose(iod(big) / iod(small), torch.full((8,), 2.0), atol=1e-3)


def test_part_colours_differ_from_background(batch):
    img, lab = batch.images, batch.labels
    for part in (HAIR, SKIN, LEYE, REYE, NOSE, MOUTH, CLOTHES):
        diffs = []
        for i in range(len(img)):
            m, bg = lab[i] == part, lab[i] == BG
            if m.sum() > 3 and bg.sum() > 3:
                diffs.append((img[i][:, m].mean(1) - img[i][:, bg].mean(1)).abs().sum())
        assert len(diffs) > 10 and torch.stack(diffs).mean() > 0.15, PART_NAMES[part]


def test_labels_explain_image(batch):
    """Per-part mean colours fit the image far better with its own labels than another's."""
    def residual(img, lab):
        err = 0.0
        for k in range(len(PART_NAMES)):
            m = lab == k
            if m.any():
                err += float(((img[:, m] - img[:, m].mean(1, keepdim=True)) ** 2).sum())
        return err
    img, lab = batch.images, batch.labels
    own = sum(residual(img[i], lab[i]) for i in range(8))
    other = sum(residual(img[i], lab[(i + 1) % 8]) for i in range(8))
    assert own < 0.5 * other
    # eye pixels are largely the near-white sclera, and the pupils are dark
    eye = (lab == LEYE) | (lab == REYE)
    assert (img.amin(1)[eye] > 0.8).float().mean() > 0.3 and img.amin(1)[eye].min() < 0.1


def test_save_landmarks_folder(tmp_path):
    out = save_landmarks_folder(tmp_path / "faces", count=3, size=64, seed=20)
    assert out == tmp_path / "faces"
    with open(out / "landmarks.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == CSV_HEADER
    assert rows[0][:3] == ["image", "lefteye_x", "lefteye_y"] and len(rows) == 4
    gen = SyntheticFaces(size=64)
    for i, row in enumerate(rows[1:]):
        ref = gen.generate(1, seed=20 + i)
        assert row[0] == f"{i:06d}.png"
        coords = torch.tensor([float(v) for v in row[1:]]).view(5, 2)
        assert torch.allclose(coords, ref.landmarks[0], atol=1e-3)
        rgb = np.asarray(Image.open(out / row[0]))
        assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
        diff = np.abs(rgb.astype(int) - ref.images[0].permute(1, 2, 0).numpy() * 255)
        assert diff.max() <= 1.0
        lab_img = Image.open(out / "labels" / row[0])
        assert lab_img.mode == "L"
        assert np.array_equal(np.asarray(lab_img), ref.labels[0].numpy().astype(np.uint8))
        x, y = coords[0].round().long().tolist()
        assert np.asarray(lab_img)[y, x] == LEYE


def test_cli(tmp_path):
    _main(["--out", str(tmp_path / "cli"), "--count", "2", "--size", "32", "--seed", "1"])
    assert sorted(p.name for p in (tmp_path / "cli").glob("*.png")) == ["000000.png", "000001.png"]
    assert Image.open(tmp_path / "cli" / "000001.png").size == (32, 32)
