"""Metrics of §4.2 against hand-computed cases and scikit-learn."""
import math

import numpy as np
import pytest
import torch

from partdisc_core.metrics import (ContingencyAccumulator, apply_landmark_regressor, ari, contingency_table,
                                   dense_label_pairs, fit_landmark_regressor, keypoint_part_labels, mean_shape_nme,
                                   nme, nmi, nmi_ari_keypoints, soft_centroids)


# --- NMI / ARI ------------------------------------------------------------------------------------
def test_perfect_and_permuted_clusterings_score_100():
    a = np.array([0, 0, 1, 1, 2, 2, 2])
    assert nmi(a, a) == pytest.approx(1.0)
    assert ari(a, a) == pytest.approx(1.0)
    permuted = np.array([5, 5, 9, 9, 1, 1, 1])  # same partition, other label names
    assert nmi(a, permuted) == pytest.approx(1.0)
    assert ari(a, permuted) == pytest.approx(1.0)


def test_independent_labelings_score_about_zero():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 20000), rng.integers(0, 4, 20000)
    assert nmi(a, b) < 0.005
    assert abs(ari(a, b)) < 0.005


def test_two_by_two_contingency_by_hand():
    # a = [0, 0, 1, 1], b = [0, 0, 0, 1]: table [[2, 0], [1, 1]]
    a, b = [0, 0, 1, 1], [0, 0, 0, 1]
    np.testing.assert_array_equal(contingency_table(a, b), [[2, 0], [1, 1]])
    # ARI (Hubert & Arabie): index = C(2,2) = 1; rows: C(2,2)+C(2,2) = 2; cols: C(3,2)+C(1,2) = 3;
    # expected = 2 * 3 / C(4,2) = 1; max = (2 + 3) / 2 = 2.5 -> (1 - 1) / (2.5 - 1) = 0
    assert ari(a, b) == pytest.approx(0.0, abs=1e-12)
    # MI = sum p_ij log(p_ij / (p_i p_j)): cells (0,0): .5 log(.5/(.5*.75)), (1,0): .25 log(.25/(.5*.75)),
    # (1,1): .25 log(.25/(.5*.25)); H(a) = log 2, H(b) = -(.75 log .75 + .25 log .25); NMI = MI / mean(H)
    mi = 0.5 * math.log(0.5 / 0.375) + 0.25 * math.log(0.25 / 0.375) + 0.25 * math.log(0.25 / 0.125)
    ha, hb = math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert nmi(a, b) == pytest.approx(mi / ((ha + hb) / 2), rel=1e-12)
    # another table [[2, 1], [0, 3]] by hand: index = 1 + 3 = 4; rows 3 + 3 = 6; cols 1 + 6 = 7;
    # expected = 6 * 7 / 15 = 2.8; max = 6.5 -> ARI = 1.2 / 3.7
    assert ari([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]) == pytest.approx(1.2 / 3.7, rel=1e-12)


def test_matches_scikit_learn_on_random_labels():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(1, 300))
        a = rng.integers(0, int(rng.integers(1, 8)), n)
        b = rng.integers(0, int(rng.integers(1, 8)), n)
        assert nmi(a, b) == pytest.approx(sk.normalized_mutual_info_score(a, b), abs=1e-10)
        assert ari(a, b) == pytest.approx(sk.adjusted_rand_score(a, b), abs=1e-10)


def test_accumulator_equals_one_shot_and_grows():
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 4, 500), rng.integers(0, 7, 500)
    acc = ContingencyAccumulator(2, 2)   # smaller than needed: must grow
    for i in range(0, 500, 128):
        acc.update(a[i:i + 128], b[i:i + 128])
    n, r = acc.nmi_ari()
    assert n == pytest.approx(100 * nmi(a, b))
    assert r == pytest.approx(100 * ari(a, b))
    with pytest.raises(ValueError):
        acc.update([-1], [0])


def test_keypoint_labels_and_nmi_ari():
    # 2 images, 4x4 label maps; maps with K = 2 foreground parts + background (index 2)
    maps = torch.zeros(2, 3, 4, 4)
    maps[:, 2] = 1.0                       # background everywhere ...
    maps[:, 0, :, :2] = 2.0                # ... except part 0 on the left half
    maps[:, 1, :, 2:] = 2.0                # ... and part 1 on the right half
    maps[1, 2, 0, 3] = 5.0                 # background wins at (x=3, y=0) in image 1
    pts = torch.tensor([[[0.4, 1.0], [2.6, 1.2]], [[1.0, 3.0], [3.2, -0.7]]])  # rounded & clipped
    lab = keypoint_part_labels(maps, pts)
    np.testing.assert_array_equal(lab, [[0, 1], [0, 2]])
    fg = keypoint_part_labels(maps, pts, foreground_only=True)
    np.testing.assert_array_equal(fg, [[0, 1], [0, 1]])
    np.testing.assert_array_equal(keypoint_part_labels(maps.argmax(1), pts), lab)       # hard labels too
    np.testing.assert_array_equal(keypoint_part_labels(maps.numpy(), pts.numpy()), lab)  # numpy too
    n, a = nmi_ari_keypoints(fg)
    assert n == pytest.approx(100.0) and a == pytest.approx(100.0)   # each keypoint always in its own part
    n2, _ = nmi_ari_keypoints(lab)
    assert n2 < 100.0
    # with visibility the disagreeing keypoint is dropped
    n3, a3 = nmi_ari_keypoints(lab, visible=np.array([[True, True], [True, False]]))
    assert n3 == pytest.approx(100.0) and a3 == pytest.approx(100.0)
    with pytest.raises(ValueError):
        keypoint_part_labels(maps.argmax(1), pts, foreground_only=True)


def test_dense_pairs_ignore_and_foreground():
    maps = torch.zeros(1, 3, 2, 3)
    maps[0, 0] = torch.tensor([[3.0, 0, 0], [0, 0, 0]])
    maps[0, 1] = torch.tensor([[0, 2.0, 0], [0, 0, 1.0]])
    maps[0, 2] = torch.tensor([[0, 0, 5.0], [4.0, 4.0, 0]])
    gt = torch.tensor([[[1, 2, 0], [255, 0, 2]]])
    pred, g = dense_label_pairs(maps, gt)
    np.testing.assert_array_equal(pred, [0, 1, 2, 2, 1])
    np.testing.assert_array_equal(g, [1, 2, 0, 0, 2])
    pred_fg, g_fg = dense_label_pairs(maps, gt, foreground_only=True)
    np.testing.assert_array_equal(g_fg, [1, 2, 2])
    np.testing.assert_array_equal(pred_fg, [0, 1, 1])   # argmax over parts 0, 1 only


# --- NME ------------------------------------------------------------------------------------------
def test_nme_by_hand():
    gt = np.array([[[0.0, 0.0], [10.0, 0.0], [5.0, 5.0]]])           # inter-ocular distance 10
    pred = gt + np.array([[[3.0, 4.0], [0.0, 0.0], [0.0, -1.0]]])   # errors 5, 0, 1
    assert nme(pred, gt) == pytest.approx(100 * (5 + 0 + 1) / 3 / 10)
    # two images: the second has distance 20 and error 2 everywhere -> 10 %
    gt2 = np.concatenate([gt, gt * 2])
    pred2 = np.concatenate([pred, gt * 2 + np.array([2.0, 0.0])])
    assert nme(pred2, gt2) == pytest.approx((20.0 + 10.0) / 2)
    assert nme(pred, gt, norm=[5.0]) == pytest.approx(100 * 2 / 5)
    assert nme(pred, gt, visible=[[False, True, True]]) == pytest.approx(100 * 0.5 / 10)
    with pytest.raises(ValueError):
        nme(pred, np.zeros_like(gt))   # zero inter-ocular distance


def test_mean_shape_nme():
    fit = np.array([[[0.0, 0.0], [10.0, 0.0]], [[2.0, 0.0], [12.0, 0.0]]])   # mean: (1,0), (11,0)
    test = np.array([[[1.0, 0.0], [11.0, 0.0]], [[0.0, 0.0], [10.0, 0.0]]])
    assert mean_shape_nme(fit, test) == pytest.approx((0.0 + 10.0) / 2)


def test_regressor_recovers_an_exact_affine_map():
    rng = np.random.default_rng(3)
    cen = rng.uniform(0, 100, (40, 4, 2))
    a, bias = rng.normal(size=(8, 10)), rng.normal(size=10)
    lm = (cen.reshape(40, -1) @ a + bias).reshape(40, 5, 2)
    reg = fit_landmark_regressor(cen, lm)
    test = rng.uniform(0, 100, (7, 4, 2))
    np.testing.assert_allclose(apply_landmark_regressor(reg, test), (test.reshape(7, -1) @ a + bias).reshape(7, 5, 2),
                               atol=1e-6)
    # a tiny ridge barely changes an exact fit; per-landmark fitting with visibility also recovers it
    ridged = fit_landmark_regressor(cen, lm, ridge=1e-8)
    np.testing.assert_allclose(apply_landmark_regressor(ridged, test), apply_landmark_regressor(reg, test), atol=1e-3)
    vis = rng.uniform(size=(40, 5)) > 0.2
    lm_missing = np.where(vis[..., None], lm, 0.0)   # unannotated points carry junk
    partial = fit_landmark_regressor(cen, lm_missing, visible=vis)
    np.testing.assert_allclose(apply_landmark_regressor(partial, test), apply_landmark_regressor(reg, test), atol=1e-6)


def test_soft_centroids_torch_and_numpy():
    maps = torch.zeros(1, 2, 5, 6)
    maps[0, 0, 1, 4] = 1.0                           # a single pixel: x = 4, y = 1
    maps[0, 1, 2, 1] = maps[0, 1, 4, 3] = 1.0        # two pixels: mean (2, 3)
    c = soft_centroids(maps)
    assert isinstance(c, torch.Tensor)
    np.testing.assert_allclose(c.numpy(), [[[4, 1], [2, 3]]])
    np.testing.assert_allclose(soft_centroids(maps.numpy() * 7.0), [[[4, 1], [2, 3]]])   # scale-free
    zero = soft_centroids(torch.zeros(1, 1, 5, 6))
    np.testing.assert_allclose(zero.numpy(), [[[2.5, 2.0]]])   # empty map -> image centre
