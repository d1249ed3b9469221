"""partdisc_core.tracking: the face crop of a stream ignores detector noise, follows real motion
quickly, holds when the face is lost, and is cut at sub-pixel positions."""
from __future__ import annotations

import numpy as np
import pytest

from partdisc_core.facecrop import DEFAULT_PAD_MODE
from partdisc_core.tracking import FaceTracker, crop_square, fit_square, smooth_square, square_valid_box

pytest.importorskip("cv2")


def run_filter(measurements: np.ndarray, **kwargs) -> np.ndarray:
    tracker = FaceTracker(**kwargs)
    return np.stack([tracker.step(m, (640, 480))[0].copy() for m in measurements])


def test_detector_noise_is_smoothed_away():
    rng = np.random.default_rng(0)
    true = np.array([320.0, 240.0, 200.0])
    noisy = true + rng.normal(0, 4.0, (60, 3))     # a still face, the box wandering by ~2 % of its side
    smoothed = run_filter(noisy)
    raw_jitter = np.abs(np.diff(noisy[10:], axis=0)).mean()
    smooth_jitter = np.abs(np.diff(smoothed[10:], axis=0)).mean()
    assert smooth_jitter < 0.25 * raw_jitter
    assert np.abs(smoothed[10:] - true).max() < 8       # and it stays on the face


def test_real_motion_is_followed_within_a_few_frames():
    before = np.tile([200.0, 240.0, 200.0], (10, 1))
    after = np.tile([300.0, 250.0, 220.0], (10, 1))    # the face jumps by half its side
    smoothed = run_filter(np.concatenate([before, after]))
    assert np.allclose(smoothed[9], before[0])
    assert np.abs(smoothed[10] - after[0]).max() < 30    # most of the way in one frame
    assert np.abs(smoothed[15] - after[0]).max() < 0.03 * 220   # then settles: within 3 % of the side


def test_smooth_square_steps_grow_with_the_distance():
    prev = np.array([100.0, 100.0, 100.0])
    small = smooth_square(prev, prev + [1, 0, 0]) - prev
    large = smooth_square(prev, prev + [50, 0, 0]) - prev
    assert 0.15 <= small[0] < 0.2                         # noise: a small fraction of the way
    assert large[0] == pytest.approx(0.85 * 50)          # motion: most of the way
    batched = smooth_square(np.stack([prev, prev]), np.stack([prev + [1, 0, 0], prev + [50, 0, 0]]))
    assert np.allclose(batched, np.stack([prev + small, prev + large]))


def test_lost_face_holds_then_drifts_to_the_centre():
    tracker = FaceTracker(hold=3)
    face = np.array([100.0, 120.0, 150.0])
    tracker.step(face, (640, 480))
    held = [tracker.step(None, (640, 480)) for _ in range(3)]
    assert all(np.allclose(sq, face) and not found for sq, found in held)
    for _ in range(60):
        square, found = tracker.step(None, (640, 480))
    assert not found and np.allclose(square, [320, 240, 480], atol=1.0)
    # a new frame size (another camera) starts afresh: the centred square at once
    square, _ = tracker.step(None, (200, 100))
    assert np.allclose(square, [100, 50, 100])


def test_crop_square_matches_integer_crops_and_moves_sub_pixel():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop_square(img, (80.0, 60.0, 40.0), 40), img[40:80, 60:100])
    half = crop_square(img, (80.5, 60.0, 40.0), 40).astype(float)   # half a pixel right: the mean of neighbours
    expected = (img[40:80, 60:100].astype(float) + img[40:80, 61:101]) / 2
    assert np.abs(half - expected).max() <= 1.0
    out = crop_square(img, (0.0, 0.0, 40.0), 20)    # leaves the image: the outside is filled, no error
    assert out.shape == (20, 20, 3)
    assert square_valid_box((0.0, 0.0, 40.0), (160, 120), 20) == (10, 10, 20, 20)
    means = img[:20, :20].reshape(10, 2, 10, 2, 3).astype(float).mean(axis=(1, 3))   # inside: 2x2 means
    assert np.abs(out[10:, 10:] - means).max() <= 1.0
    edge = crop_square(img, (0.0, 0.0, 40.0), 20, pad_mode="edge")
    assert (edge[:10, :10] == edge[10, 10]).all()   # "edge" repeats the corner pixel ...
    if DEFAULT_PAD_MODE != "edge":
        assert not (out[:10, :10] == out[10, 10]).all()   # ... the default fill does not


def test_tracker_follows_a_real_face_panning_across_the_frame():
    import skimage.data

    photo = skimage.data.astronaut()
    rng = np.random.default_rng(2)
    tracker = FaceTracker()
    squares, raw = [], []
    for i in range(16):
        frame = photo[40:360, 4 * i:4 * i + 400]              # the camera pans: the face moves 4 px left a frame
        frame = np.clip(frame.astype(np.int16) + rng.integers(-8, 9, frame.shape), 0, 255).astype(np.uint8)
        measured = tracker.measure(frame)
        assert measured is not None
        raw.append(measured)
        view = tracker.update(frame, 128)
        assert view.found and view.image.shape == (128, 128, 3)
        squares.append(view.square)
    squares, raw = np.array(squares), np.array(raw)
    # it follows: the crop moves left about as fast as the face
    assert -6 < (squares[-1, 0] - squares[4, 0]) / 11 < -2
    # and shakes no more than the raw detections (second differences: changes of velocity)
    assert np.abs(np.diff(squares, 2, axis=0)).mean() <= np.abs(np.diff(raw, 2, axis=0)).mean() + 1e-6


def test_tracked_crop_stays_inside_the_frame_and_marks_the_fill(monkeypatch):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    tracker = FaceTracker()
    monkeypatch.setattr(tracker, "measure", lambda frame: np.array([10.0, 60.0, 80.0]))   # a face at the left edge
    view = tracker.update(img, 80)
    assert np.allclose(view.square, [40.0, 60.0, 80.0])          # moved right, into the frame
    np.testing.assert_array_equal(view.image, img[20:100, 0:80])
    assert view.valid_box == (0, 0, 80, 80)
    assert np.allclose(tracker.square, [10.0, 60.0, 80.0])       # the state still follows the face itself

    monkeypatch.setattr(tracker, "measure", lambda frame: np.array([80.0, 60.0, 150.0]))  # taller than the frame
    tracker.reset()
    view = tracker.update(img, 150)
    assert np.allclose(view.square, [80.0, 60.0, 150.0]) and view.valid_box == (0, 15, 150, 135)
    np.testing.assert_array_equal(view.image[15:135], img[:, 5:155])
    if DEFAULT_PAD_MODE != "edge":   # the rows above the frame are fill, not copies of its top row
        assert np.abs(view.image[:15].astype(float) - img[0, 5:155]).mean(axis=(1, 2)).min() > 30


def test_fit_square_is_continuous():
    frame = (160, 120)
    assert np.allclose(fit_square((10.0, 60.0, 80.0), frame), [40.0, 60.0, 80.0])
    assert np.allclose(fit_square((80.0, 60.0, 150.0), frame), [80.0, 60.0, 150.0])  # y: covers the frame
    assert np.allclose(fit_square((80.0, 10.0, 150.0), frame), [80.0, 45.0, 150.0])
    sides = np.linspace(110.0, 130.0, 41)   # across side = frame height: no jump
    cy = np.array([fit_square((80.0, 20.0, side), frame)[1] for side in sides])
    assert np.abs(np.diff(cy)).max() <= 0.26
