"""train/export.py: palette label maps mirroring the input tree, one centroid CSV, bad files skipped."""
import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_model
from partdisc_core import save_model
from partdisc_core.metrics import soft_centroids
from partdisc_core.viz import part_colors

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "train"))

import export  # noqa: E402


@pytest.fixture
def photo_tree(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8), "RGB").save(root / "rgb.jpg")
    Image.fromarray(rng.integers(0, 255, (33, 30), dtype=np.uint8), "L").save(root / "sub" / "gray.png")
    Image.fromarray(rng.integers(0, 255, (24, 36, 4), dtype=np.uint8), "RGBA").save(root / "sub" / "deeper" / "rgba.png")
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / "notes.txt").write_text("not an image, not even looked at")
    return root


def test_export_writes_labels_centroids_and_skips_bad_files(tmp_path, photo_tree, capsys):
    model = tiny_model(seed=3).eval()
    ckpt = save_model(model, tmp_path / "ckpt", dtype=None)
    out = tmp_path / "out"
    result = export.main(["--checkpoint", str(ckpt), "--input", str(photo_tree), "--out", str(out),
                          "--device", "cpu", "--batch-size", "2", "--no-progress"])
    k = model.cfg.num_parts
    assert result["written"] == 3
    # the corrupt file is reported on stderr and in skipped.txt, and nothing is written for it
    assert "broken.jpg" in capsys.readouterr().err
    assert "broken.jpg" in (out / "skipped.txt").read_text()
    assert not (out / "sub" / "broken.png").exists()

    expected = {"rgb.jpg": (40, 56), "sub/gray.png": (33, 30), "sub/deeper/rgba.png": (24, 36)}
    for rel, (h, w) in expected.items():
        png = out / Path(rel).with_suffix(".png")
        with Image.open(png) as im:
            assert im.mode == "P" and im.size == (w, h)
            labels = np.asarray(im)
            palette = np.asarray(im.getpalette()[:3 * (k + 1)]).reshape(-1, 3)
        np.testing.assert_array_equal(palette, part_colors(k))   # background = last entry
        assert labels.max() <= k
        # the labels are the model's own argmax at the image's size
        pred = model.predict(photo_tree / rel, return_attention=False)
        np.testing.assert_array_equal(labels, pred.labels[0].numpy())

    with open(out / "centroids.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["rgb.jpg", "sub/deeper/rgba.png", "sub/gray.png"]
    row = rows[0]
    assert (int(row["width"]), int(row["height"])) == (56, 40)
    cen = np.array([[float(row[f"part{i}_x"]), float(row[f"part{i}_y"])] for i in range(1, k + 1)])
    maps = model.predict(photo_tree / "rgb.jpg", return_attention=False).masks
    np.testing.assert_allclose(cen, soft_centroids(maps[:, :k])[0].numpy(), atol=2e-3)
    assert (cen[:, 0] >= 0).all() and (cen[:, 0] <= 55).all() and (cen[:, 1] <= 39).all()


def test_output_names_resolve_collisions(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    files = [root / "a.jpg", root / "a.png", root / "b.jpg"]
    names = export.output_names(files, root)
    assert names[root / "b.jpg"] == Path("b.png")
    assert {names[root / "a.jpg"], names[root / "a.png"]} == {Path("a.jpg.png"), Path("a.png.png")}


def test_export_rejects_empty_folder(tmp_path):
    model = tiny_model(seed=0).eval()
    ckpt = save_model(model, tmp_path / "ckpt", dtype=None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no images"):
        export.main(["--checkpoint", str(ckpt), "--input", str(tmp_path / "empty"), "--out", str(tmp_path / "o"),
                     "--no-progress"])
