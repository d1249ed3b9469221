"""partdisc_core.dense68 (dense face figures over 68 landmarks) and evaluate.py's use of them:
synthetic faces and label maps where every answer is known."""
import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_model
from partdisc_core import save_model
from partdisc_core.dense68 import Dense68Accumulator, face_region, face_region_polygon, scenery
from partdisc_core.evaluation import evaluate_dense68

REPO = Path(__file__).resolve().parent.parent
H = W = 200


def synthetic_points(cx=100.0, cy=110.0, half_width=40.0) -> np.ndarray:
    """68 iBUG-ordered points of a schematic face: a U-shaped jaw (0-16) of width 2 x half_width from
    y = cy - 20 down to y = cy + 40, a flat brow line (17-26) at y = cy - 30, and the inner points
    (27-67) spread on a small grid around (cx, cy) so that each lands on its own pixel."""
    t = np.linspace(np.pi, 0, 17)
    jaw = np.stack([cx + half_width * np.cos(t), cy - 20 + 60 * np.sin(t)], 1)
    brows = np.stack([np.linspace(cx - 35, cx + 35, 10), np.full(10, cy - 30.0)], 1)
    gx, gy = np.meshgrid(np.arange(7), np.arange(6))
    inner = np.stack([cx - 21 + 6 * gx.ravel(), cy - 20 + 6 * gy.ravel()], 1)[:41]
    return np.concatenate([jaw, brows, inner]).astype(np.float64)


def test_face_region_is_the_jaw_closed_over_the_raised_brows():
    p = synthetic_points()
    poly = face_region_polygon(p)
    # brows raised by 15 % of (jaw bottom 150 - brow top 80) = 10.5 px, order reversed (26 .. 17)
    assert poly.shape == (27, 2)
    np.testing.assert_allclose(poly[17:, 1], 80 - 10.5)
    np.testing.assert_allclose(poly[17:, 0], p[17:27, 0][::-1])
    region = face_region(p, (H, W))
    assert region[110, 100] and region[72, 100]          # centre; forehead above the brows, below the raise
    assert not region[66, 100]                           # above the raised brow line
    assert not region[110, 50] and not region[5, 5]      # left of the jaw; a corner
    area = region.sum()
    # close to the polygon's own area (shoelace formula)
    x, y = poly[:, 0], poly[:, 1]
    assert abs(area - 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))) < 0.05 * area


def test_scenery_starts_0_3_face_widths_from_the_region():
    p = synthetic_points()
    far = scenery(p, face_region(p, (H, W)))
    # the face spans x 60..140 (width 80): scenery starts 24 px beyond its edge
    assert not far[110, 60 - 20] and far[110, 60 - 28]
    assert not far[110, 140 + 20] and far[110, 140 + 28]
    assert far[0, 0] and not far[110, 100]


def test_accumulator_on_label_maps_with_known_answers():
    p = synthetic_points()
    region = face_region(p, (H, W))
    far = scenery(p, region)
    background = 8
    # perfect: parts exactly on the face region, every landmark its own part -> coverage 100, spill 0
    labels = np.full((H, W), background)
    labels[region] = 0
    acc = Dense68Accumulator()
    acc.update(labels, p, background)
    r = acc.result()
    assert r["coverage"] == pytest.approx(100.0) and r["spill"] == pytest.approx(0.0)
    # all 68 landmarks on part 0 except those outside the region -> bg68 = their share
    outside = [i for i, (x, y) in enumerate(np.round(p).astype(int)) if not region[y, x]]
    assert r["bg68"] == pytest.approx(100.0 * len(outside) / 68)
    assert r["nmi68"] == pytest.approx(0.0, abs=30.0) and r["num_dense68"] == 1
    # everything foreground: spill 100; nothing foreground: coverage 0, bg68 100
    acc = Dense68Accumulator()
    acc.update(np.zeros((H, W), int), p, background)
    assert acc.result()["spill"] == pytest.approx(100.0)
    acc = Dense68Accumulator()
    acc.update(np.full((H, W), background), p, background)
    r = acc.result()
    assert r["coverage"] == 0.0 and r["bg68"] == 100.0 and r["nmi68"] == pytest.approx(0.0, abs=1e-6)
    # half the scenery painted: spill 50 % (pooled over pixels)
    labels = np.full((H, W), background)
    ys, xs = np.nonzero(far)
    labels[ys[::2], xs[::2]] = 3
    acc = Dense68Accumulator()
    acc.update(labels, p, background)
    assert acc.result()["spill"] == pytest.approx(50.0, abs=0.1)


def test_nmi68_and_ari68_are_100_when_each_landmark_has_its_own_label_on_every_face():
    acc = Dense68Accumulator()
    for shift in (0, 3, 6):
        p = synthetic_points(cx=100 + shift)
        labels = np.full((H, W), 99)
        xy = np.round(p).astype(int)
        labels[xy[:, 1], xy[:, 0]] = np.arange(68)    # distinct pixels by construction
        acc.update(labels, p, background=99)
    r = acc.result()
    assert r["nmi68"] == pytest.approx(100.0) and r["ari68"] == pytest.approx(100.0)
    assert r["bg68"] == 0.0


def test_landmarks_outside_the_image_are_left_out_and_bad_points_are_refused():
    p = synthetic_points()
    p[0] = (-30, 110)
    acc = Dense68Accumulator()
    acc.update(np.zeros((H, W), int), p, background=8)
    assert acc.landmarks == 67
    with pytest.raises(ValueError, match="68, 2"):
        acc.update(np.zeros((H, W), int), p[:5], background=8)
    with pytest.raises(ValueError, match="no landmark"):
        Dense68Accumulator().result()


def save_faces68(folder: Path, n: int) -> None:
    """A folder of n synthetic 200 x 200 'faces' (a skin-coloured ellipse on a grey wall) with both
    landmarks.csv (5 points) and landmarks68.csv."""
    folder.mkdir(parents=True)
    rows5, rows68 = [], []
    for i in range(n):
        p = synthetic_points(cx=95 + i, cy=105 + i % 3)
        img = np.full((H, W, 3), 90, np.uint8)
        region = face_region(p, (H, W))
        img[region] = (200, 150, 120)
        name = f"f{i:02d}.png"
        Image.fromarray(img).save(folder / name)
        five = [p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]]
        rows5.append([name] + [f"{v:.2f}" for xy in five for v in xy])
        rows68.append([name] + [f"{v:.2f}" for v in p.ravel()])
    for fname, rows, num in (("landmarks.csv", rows5, 5), ("landmarks68.csv", rows68, 68)):
        with open(folder / fname, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image"] + [f"p{j}_{a}" for j in range(num) for a in "xy"])
            w.writerows(rows)


def test_evaluate_dense68_on_a_real_model_and_in_the_cli(tmp_path):
    from partdisc_core.data.landmarks import LandmarksDataset

    save_faces68(tmp_path / "faces", 12)
    model = tiny_model(seed=0)
    model.train()
    data = LandmarksDataset(tmp_path / "faces", model.cfg.input_size, csv_name="landmarks68.csv")
    r = evaluate_dense68(model, data, batch_size=5)
    assert model.training                              # restored
    assert r["num_dense68"] == 12
    for key in ("nmi68", "bg68", "coverage", "spill"):
        assert 0.0 <= r[key] <= 100.0
    # the CLI reports them for the test split of a folder that has landmarks68.csv
    ckpt = save_model(tiny_model(seed=1).eval(), tmp_path / "ckpt")
    sys.path.insert(0, str(REPO / "train"))
    import evaluate as cli

    r = cli.main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "faces"), "--split-fit", "7",
                  "--no-progress"])
    assert r["num_test"] == 5 and r["num_dense68"] == 5
    assert {"nmi68", "ari68", "bg68", "coverage", "spill"} <= set(r)
    r = cli.main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "faces"), "--split-fit", "7",
                  "--no-progress", "--no-dense68"])
    assert "coverage" not in r


def test_dense68_dataset_follows_the_test_split_by_name(tmp_path):
    from partdisc_core.data.landmarks import LandmarksDataset

    save_faces68(tmp_path / "faces", 6)
    # reorder landmarks68.csv: the dataset must still pick rows by image name
    lines = (tmp_path / "faces" / "landmarks68.csv").read_text().splitlines()
    (tmp_path / "faces" / "landmarks68.csv").write_text("\n".join([lines[0]] + lines[1:][::-1]) + "\n")
    data = LandmarksDataset(tmp_path / "faces", 64, csv_name="landmarks68.csv", names=["f04.png", "f01.png"])
    assert data.names == ["f04.png", "f01.png"]
    np.testing.assert_allclose(data[0]["orig_landmarks"].numpy(), synthetic_points(cx=99, cy=106), atol=0.01)
    with pytest.raises(ValueError, match="no row"):
        LandmarksDataset(tmp_path / "faces", 64, csv_name="landmarks68.csv", names=["missing.png"])
    assert torch.is_tensor(data[1]["image"])
