"""Landmarks from the parts (partdisc_core/keypoints.py, train/fit_landmarks.py) and the demo's use of
them: the fitted map, its file beside a checkpoint, the dots and part names in Discover."""
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from partdisc_core import load_model, save_model
from partdisc_core.keypoints import (LANDMARKS_NAME, fit_part_landmarks, load_part_landmarks, part_landmark_names,
                                     predict_landmarks, save_part_landmarks)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
import fit_landmarks  # noqa: E402
from conftest import tiny_model  # noqa: E402

K, S = 4, 32


def point_maps(centres: np.ndarray) -> np.ndarray:
    """(N, K+1, S, S) maps whose K foreground parts are single pixels at ``centres`` (N, K, 2) xy."""
    n = centres.shape[0]
    maps = np.zeros((n, K + 1, S, S), np.float32)
    maps[:, K] = 1.0
    for i in range(n):
        for k, (x, y) in enumerate(centres[i]):
            maps[i, :, y, x] = 0.0
            maps[i, k, y, x] = 1.0
    return maps


def linear_world(n: int, seed: int = 0):
    """Part centres and 5 landmarks that are an exact linear function of them."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(2, S - 2, size=(n, K, 2))
    mix = rng.normal(size=(2 * K, 10)) * 0.2
    landmarks = (centres.reshape(n, -1) @ mix + 3.0).reshape(n, 5, 2)
    return point_maps(centres), landmarks, centres


def test_fitted_map_recovers_a_linear_truth():
    maps, landmarks, _ = linear_world(40)
    head = fit_part_landmarks(maps, landmarks, K, frame=S)
    np.testing.assert_allclose(predict_landmarks(head, maps), landmarks, atol=1e-6)
    np.testing.assert_allclose(predict_landmarks(head, torch.from_numpy(maps[0])), landmarks[:1], atol=1e-5)


def test_file_round_trip_and_refusals(tmp_path):
    maps, landmarks, _ = linear_world(30)
    head = fit_part_landmarks(maps, landmarks, K, frame=S, fitted_on="synthetic")
    head.scores = {"x": 1.5}
    save_part_landmarks(head, tmp_path)
    back = load_part_landmarks(tmp_path, K)
    assert back.names == head.names and back.fitted_on == "synthetic" and back.scores == {"x": 1.5}
    np.testing.assert_array_equal(back.regressor.weights, head.regressor.weights)
    assert load_part_landmarks(tmp_path / "none", K) is None
    with pytest.raises(ValueError, match="fitted for 4 parts"):
        load_part_landmarks(tmp_path, K + 1)
    (tmp_path / LANDMARKS_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="not a landmark file"):
        load_part_landmarks(tmp_path, K)
    record = json.loads(json.dumps({"format": "partdisc-landmarks-1", "names": ["a"], "num_parts": K, "frame": S,
                                    "weights": [[0.0, 0.0]] * 3}))
    (tmp_path / LANDMARKS_NAME).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="do not fit"):
        load_part_landmarks(tmp_path, K)


def test_parts_are_named_after_a_landmark_only_when_near_one():
    centres = np.array([[[8, 10], [24, 10], [16, 28], [2, 2]]])
    maps = point_maps(centres)
    # a map that puts the 5 landmarks at: eyes (8, 10) and (24, 10), nose (16, 16), mouth (10, 22) and (22, 22)
    points = np.array([[8, 10], [24, 10], [16, 16], [10, 22], [22, 22]], np.float64)
    head = fit_part_landmarks(np.repeat(maps, 12, 0), np.repeat(points[None], 12, 0), K, frame=S)
    assert part_landmark_names(head, maps[0]) == ["left eye", "right eye", None, None]


def test_checkpoints_carry_the_map_and_a_damaged_file_is_left_out(tmp_path):
    eval_model = tiny_model().eval()
    maps, landmarks, _ = linear_world(30)
    eval_model.landmarks = fit_part_landmarks(maps, landmarks, eval_model.cfg.num_parts, frame=S)
    save_model(eval_model, tmp_path / "ck")
    loaded = load_model(tmp_path / "ck")
    np.testing.assert_array_equal(loaded.landmarks.regressor.weights, eval_model.landmarks.regressor.weights)
    save_model(loaded, tmp_path / "copy", dtype=torch.float16)       # a re-save keeps it
    assert (tmp_path / "copy" / LANDMARKS_NAME).is_file()
    (tmp_path / "ck" / LANDMARKS_NAME).write_text("[]")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_model(tmp_path / "ck").landmarks is None
    assert any("landmarks left out" in str(w.message) for w in caught)


def test_discover_draws_the_landmarks_and_names_parts(tmp_path):
    eval_model = tiny_model().eval()
    from PIL import Image

    from partdisc_core.demo import PartDiscDemo
    from partdisc_core.inputs import portrait

    Image.fromarray(portrait("astronaut")).save(tmp_path / "a.png")
    plain = PartDiscDemo(eval_model).discover(tmp_path / "a.png", crop=False)
    k = eval_model.cfg.num_parts
    maps, landmarks, _ = linear_world(30)
    eval_model.landmarks = fit_part_landmarks(maps, landmarks, k, frame=S)
    shown = PartDiscDemo(eval_model).discover(tmp_path / "a.png", crop=False)
    side = shown.analysis.masks.shape[-1]
    points = predict_landmarks(eval_model.landmarks, shown.analysis.masks)[0] * plain.overlay.shape[1] / side
    assert "White dots" in shown.status and "White dots" not in plain.status
    inside = [(int(x), int(y)) for x, y in points if 0 <= x < side * 4 and 0 <= y < plain.analysis.view.image.shape[0]]
    changed = np.abs(shown.overlay[:plain.analysis.view.image.shape[0]].astype(int)
                     - plain.overlay[:plain.analysis.view.image.shape[0]].astype(int)).sum(-1) > 0
    assert changed.any() and not changed.all()                     # dots, not a repaint
    for x, y in inside:
        assert changed[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3].any()


def test_fit_script_writes_a_map_that_load_model_attaches(tmp_path):
    eval_model = tiny_model().eval()
    from partdisc_core.synthetic import save_landmarks_folder

    folder = save_landmarks_folder(tmp_path / "faces", 24, size=64)
    save_model(eval_model, tmp_path / "ck")
    scores = fit_landmarks.main(["--checkpoint", str(tmp_path / "ck"), "--fit", f"{folder}:16",
                                 "--score", f"{folder}:-8", "--batch-size", "8"])
    assert set(scores) == {f"{folder}:-8"} and np.isfinite(list(scores.values())).all()
    head = load_model(tmp_path / "ck").landmarks
    assert head is not None and head.frame == eval_model.cfg.input_size and head.scores == scores
