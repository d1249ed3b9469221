"""partdisc_core.evaluation and train/evaluate.py: frames, rotation, and the CLI end to end."""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from conftest import tiny_model
from partdisc_core import save_model
from partdisc_core.evaluation import IGNORE_INDEX, evaluate, evaluate_landmarks, evaluate_masks, rotate_batch, rotate_points

REPO = Path(__file__).resolve().parent.parent
S = 32
L = 5


class DotFaces(Dataset):
    """Black S x S images with landmark j drawn as a 3x3 patch of grey level (j + 1) / 8, from
    non-square "original" images (H, W) of varying size; masks = patch id + 1."""

    def __init__(self, n, seed):
        g = np.random.default_rng(seed)
        self.sizes = g.integers(40, 120, (n, 2))                           # (H, W)
        xs = 3 + 6 * np.arange(L) + g.integers(0, 3, (n, L))              # separate bands: no overlaps
        self.s_points = np.stack([xs, g.integers(3, S - 3, (n, L))], -1).astype(float)  # S-frame pixels
        self.orig = self.s_points * (self.sizes[:, ::-1] / S)[:, None]      # the file's pixels

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, i):
        img = torch.zeros(3, S, S)
        mask = torch.zeros(S, S, dtype=torch.long)
        for j, (x, y) in enumerate(self.s_points[i].astype(int)):
            img[:, y - 1:y + 2, x - 1:x + 2] = (j + 1) / 8
            mask[y - 1:y + 2, x - 1:x + 2] = j + 1
        return {"image": img, "landmarks": torch.tensor(self.s_points[i], dtype=torch.float32),
                "orig_landmarks": torch.tensor(self.orig[i], dtype=torch.float32),
                "orig_size": torch.tensor(self.sizes[i]), "mask": mask}


class PatchOracle:
    """A stand-in model whose part k is exactly the patch of grey level (k + 1) / 8."""

    training = False
    cfg = SimpleNamespace(num_parts=L, num_classes=1)

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def predict(self, images, class_ids=None, return_attention=False, output_size=None, batch_size=32):
        grey = images[:, 0]
        fg = torch.stack([(grey - (k + 1) / 8).abs() < 0.03 for k in range(L)], 1).float()
        maps = torch.cat([fg, (fg.sum(1, keepdim=True) == 0).float()], 1)
        return SimpleNamespace(masks=maps)


def test_oracle_gets_perfect_scores_in_original_pixels():
    r = evaluate_landmarks(PatchOracle(), DotFaces(24, 0), DotFaces(12, 1), batch_size=5)
    assert r["num_fit"] == 24 and r["num_test"] == 12
    assert r["nme"] < 0.01                      # centroids mapped back to each image's own pixels
    assert r["nme_mean_shape"] > 5 * max(r["nme"], 1.0)
    for key in ("nmi", "ari", "fg_nmi", "fg_ari"):
        assert r[key] == pytest.approx(100.0)
    dense = evaluate_masks(PatchOracle(), DotFaces(6, 2), batch_size=4)
    assert dense["nmi"] == pytest.approx(100.0) and dense["fg_ari"] == pytest.approx(100.0)


def test_rotation_keeps_images_points_and_masks_together():
    # the oracle finds the rotated patches exactly where the rotated points and masks say
    r = evaluate(PatchOracle(), DotFaces(10, 3), DotFaces(20, 4), rotate=90.0, batch_size=4)
    assert r["nme"] < 0.01
    assert r["fg_nmi"] == pytest.approx(100.0) and r["dense_nmi"] == pytest.approx(100.0)
    # any angle: interpolation blurs the patches a little, yet the rotated points still land in them
    rotated = evaluate(PatchOracle(), DotFaces(10, 3), DotFaces(20, 4), rotate=37.0, batch_size=4)
    assert rotated["fg_nmi"] > 90.0


def test_rotate_batch_direction_and_fill():
    img = torch.zeros(1, 3, 16, 16)
    img[0, :, 7, 15] = 1.0                                        # right of the centre
    out, pts, masks = rotate_batch(img, 90.0, torch.tensor([[[15.0, 7.0]]]),
                                   torch.ones(1, 16, 16, dtype=torch.long), fill="zeros")
    y, x = divmod(int(out[0, 0].argmax()), 16)
    assert (x, y) == (7, 0)                                       # counter-clockwise: now at the top
    np.testing.assert_allclose(pts[0, 0].numpy(), [7.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(rotate_points(pts, -90.0, 16)[0, 0].numpy(), [15.0, 7.0], atol=1e-5)
    assert (masks == 1).all()                                     # 90 deg: nothing comes from outside
    _, _, m45 = rotate_batch(img, 45.0, masks=torch.ones(1, 16, 16, dtype=torch.long))
    assert (m45[0, 0, 0] == IGNORE_INDEX) and (m45[0, 8, 8] == 1)  # corners come from outside
    with pytest.raises(ValueError):
        rotate_batch(torch.zeros(1, 3, 8, 10), 10.0)


def test_evaluate_landmarks_real_model_restores_training_mode():
    from partdisc_core.data import build_dataset

    model = tiny_model(seed=0)
    model.train()
    data = build_dataset("synthetic", split="val", length=14, image_size=64)
    fit = torch.utils.data.Subset(data, range(10))
    test = torch.utils.data.Subset(data, range(10, 14))
    r = evaluate_landmarks(model, fit, test, batch_size=8)
    assert model.training
    assert set(r) == {"nme", "nmi", "ari", "fg_nmi", "fg_ari", "num_fit", "num_test", "nme_mean_shape"}


def test_cli_end_to_end(tmp_path):
    from partdisc_core.synthetic import save_landmarks_folder

    save_landmarks_folder(tmp_path / "fit", 20, size=64, seed=0)
    save_landmarks_folder(tmp_path / "test", 10, size=64, seed=100)
    ckpt = save_model(tiny_model(seed=1).eval(), tmp_path / "ckpt")
    out = tmp_path / "res" / "r.json"
    cmd = [sys.executable, str(REPO / "train" / "evaluate.py"), "--checkpoint", str(ckpt), "--fit",
           str(tmp_path / "fit"), "--test", str(tmp_path / "test"), "--json", str(out), "--device", "cpu",
           "--batch-size", "16", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "nme_mean_shape" in proc.stdout
    r = json.loads(out.read_text())
    assert r["num_fit"] == 20 and r["num_test"] == 10
    for key in ("nme", "nme_mean_shape"):
        assert 0.0 < r[key] < 1000.0
    for key in ("nmi", "fg_nmi"):
        assert 0.0 <= r[key] <= 100.0
    for key in ("ari", "fg_ari"):
        assert -100.0 <= r[key] <= 100.0
    # one folder split in order: a clear error for an impossible split (in-process: quicker)
    sys.path.insert(0, str(REPO / "train"))
    import evaluate as cli

    with pytest.raises(SystemExit, match="--split-fit"):
        cli.main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "test"), "--split-fit", "10"])
    r2 = cli.main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "fit"), "--split-fit", "14", "--rotate", "15",
                   "--no-progress", "--batch-size", "20"])
    assert r2["num_fit"] == 14 and r2["num_test"] == 6
    # one split for fit and test (validation on a training split): interleaved, disjoint images
    r3 = cli.main(["--checkpoint", str(ckpt), "--dataset", "landmarks", "--data-root", str(tmp_path / "fit"),
                   "--fit-split", "train", "--test-split", "train", "--no-progress"])
    assert r3["num_fit"] == 3 and r3["num_test"] == 2  # 0, 7, 14 fit; 3, 17 measured


def test_limit_dataset_spreads_its_picks_over_the_whole_set():
    """A prefix of a path-sorted folder can be one sub-collection only: the picks must span the set."""
    from partdisc_core.evaluation import limit_dataset

    data = list(range(100))
    picked = [data[i] for i in limit_dataset(data, 5).indices]
    assert picked == [0, 25, 50, 74, 99]
    assert limit_dataset(data, 100) is data and limit_dataset(data, None) is data
    with pytest.raises(ValueError):
        limit_dataset(data, 0)


def test_interleaved_split_is_disjoint_and_spread():
    """Validation on a training split: fit and measured images never overlap and both reach the end
    of the split (not one sub-collection); evaluate.py uses it when fit and test name one split."""
    from partdisc_core.evaluation import interleaved_split

    data = list(range(100))
    fit, test = interleaved_split(data)
    assert fit.indices == list(range(0, 100, 7))
    assert set(fit.indices).isdisjoint(test.indices) and test.indices[0] == 3
    assert fit.indices[-1] >= 90 and test.indices[-1] >= 80
    fit, test = interleaved_split(data, fit_every=2, test_every=1, test_offset=0)
    assert test.indices == list(range(1, 100, 2))  # a measured image that also fits is dropped
    with pytest.raises(ValueError, match="too small"):
        interleaved_split([0])
    with pytest.raises(ValueError, match=">= 1"):
        interleaved_split(data, fit_every=0)
