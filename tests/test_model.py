"""The model: V and S (eq. 2-3), the two-stream exchange of G, attention maps, class-conditional
part tokens, predict / reconstruct / swap_parts, and CPU-CUDA agreement."""
import pytest
import torch
import torch.nn.functional as F

from conftest import random_views, tiny_model
from partdisc_core import PartDiscModel, part_probabilities, synthesize


# ---------------------------------------------------------------- V (eq. 2) and S (eq. 3)
def _random_g_f(b=2, k1=5, c=8, h=6, w=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k1, c, generator=g), torch.randn(b, c, h, w, generator=g)


def test_v_is_softmax_over_parts_of_tau_dot_products():
    parts, feats = _random_g_f()
    tau = 0.8
    v = part_probabilities(parts, feats, tau)
    assert v.shape == (2, 5, 6, 7)
    torch.testing.assert_close(v.sum(dim=1), torch.ones(2, 6, 7))
    assert (v >= 0).all()
    # by hand: pixel (i, j) of image b, logits_k = tau * <G_k, F_ij>
    for b, i, j in [(0, 0, 0), (1, 5, 6), (0, 3, 2)]:
        logits = tau * (parts[b] @ feats[b, :, i, j])
        torch.testing.assert_close(v[b, :, i, j], logits.softmax(0))
    # tau is an inverse temperature: larger tau gives sharper (lower-entropy) maps
    entropy = lambda p: -(p * p.clamp_min(1e-12).log()).sum(1).mean()  # noqa: E731
    assert entropy(part_probabilities(parts, feats, 4.0)) < entropy(v) < entropy(part_probabilities(parts, feats, 0.1))


def test_s_is_the_convex_combination_of_g():
    parts, feats = _random_g_f()
    v = part_probabilities(parts, feats, 0.8)
    s = synthesize(v, parts)
    assert s.shape == (2, 8, 6, 7)
    by_hand = (v.unsqueeze(2) * parts[:, :, :, None, None]).sum(dim=1)
    torch.testing.assert_close(s, by_hand)
    lo = parts.min(dim=1).values[:, :, None, None]
    hi = parts.max(dim=1).values[:, :, None, None]
    assert (s >= lo - 1e-5).all() and (s <= hi + 1e-5).all()
    # a one-hot V copies G_k
    onehot = F.one_hot(torch.full((2, 6, 7), 2), 5).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(synthesize(onehot, parts), parts[:, 2, :, None, None].expand(2, 8, 6, 7))


# ---------------------------------------------------------------- training forward
def test_train_forward_shapes(model):
    v1, v2 = random_views()
    out = model(v1, v2)
    k1 = model.cfg.num_parts + 1
    assert len(out.recon) == len(out.maps) == len(out.parts) == len(out.targets) == 2
    for n in range(2):
        assert out.recon[n].shape == (2, 3, 64, 64) and out.targets[n].shape == (2, 3, 64, 64)
        assert out.maps[n].shape == (2, k1, 16, 16) and out.parts[n].shape == (2, k1, 64)
        torch.testing.assert_close(out.maps[n].sum(1), torch.ones(2, 16, 16))
    torch.testing.assert_close(out.targets[0], model.normalize(v1))


def _capture(model):
    """Hooks recording F (encoder output) and G (PartFormer output) of the last forward pass."""
    seen = {}
    hooks = [model.encoder.register_forward_hook(lambda m, i, o: seen.__setitem__("F", o)),
             model.partformer.register_forward_hook(lambda m, i, o: seen.__setitem__("G", o[0]))]
    return seen, hooks


@pytest.mark.parametrize("exchange", [True, False])
def test_exchange_by_construction(exchange):
    model = tiny_model(exchange=exchange).eval()
    seen, hooks = _capture(model)
    v1, v2 = random_views()
    with torch.no_grad():
        out = model(v1, v2)
    for h in hooks:
        h.remove()
    f1, f2 = seen["F"].split(2)
    g1, g2 = seen["G"].split(2)
    tau = model.cfg.tau
    torch.testing.assert_close(out.parts[0], g1)
    torch.testing.assert_close(out.parts[1], g2)
    own = part_probabilities(g1, f1, tau)
    assert not torch.allclose(own, part_probabilities(g2, f1, tau), atol=1e-4)  # the views' G differ
    used_1, used_2 = (g2, g1) if exchange else (g1, g2)
    torch.testing.assert_close(out.maps[0], part_probabilities(used_1, f1, tau))   # V^{2->1}
    torch.testing.assert_close(out.maps[1], part_probabilities(used_2, f2, tau))   # V^{1->2}
    with torch.no_grad():
        recon_1 = model.decode(synthesize(out.maps[0], used_1))
    torch.testing.assert_close(out.recon[0], recon_1)


@pytest.mark.parametrize("exchange", [True, False])
def test_exchange_by_perturbing_the_other_view(exchange):
    """View 1's reconstruction changes with view 2's image only through G^(2) (two-stream)."""
    model = tiny_model(exchange=exchange).eval()  # eval: no batch-norm coupling between samples
    seen, hooks = _capture(model)
    v1, v2 = random_views()
    other = torch.rand(v2.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        a = model(v1, v2)
        f1_a, g1_a = seen["F"][:2].clone(), seen["G"][:2].clone()
        b = model(v1, other)
        f1_b, g1_b = seen["F"][:2].clone(), seen["G"][:2].clone()
    for h in hooks:
        h.remove()
    torch.testing.assert_close(f1_a, f1_b)  # F^(1) does not depend on view 2
    torch.testing.assert_close(g1_a, g1_b)
    assert not torch.allclose(a.parts[1], b.parts[1], atol=1e-4)  # G^(2) did change
    if exchange:
        assert (a.recon[0] - b.recon[0]).abs().max() > 1e-4
        assert (a.maps[0] - b.maps[0]).abs().max() > 1e-4
    else:
        torch.testing.assert_close(a.recon[0], b.recon[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.maps[0], b.maps[0], atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------- attention maps (Fig. 1)
def test_attention_is_a_distribution_and_does_not_change_g(eval_model):
    x = eval_model.normalize(random_views()[0])
    with torch.no_grad():
        g_plain, none = eval_model.partformer(x)
        g_attn, attn = eval_model.partformer(x, return_attention=True)
    assert none is None
    torch.testing.assert_close(g_attn, g_plain, atol=0, rtol=0)
    assert attn.shape == (2, eval_model.cfg.num_parts + 1, 4, 4)
    assert (attn >= 0).all()
    torch.testing.assert_close(attn.sum(dim=(2, 3)), torch.ones(2, eval_model.cfg.num_parts + 1))


def test_attention_matches_a_hand_computation(eval_model):
    """Each part token's softmax attention to the patch tokens, averaged over heads and layers."""
    pf = eval_model.partformer
    inputs = []
    hooks = [blk.attn.register_forward_pre_hook(lambda m, a: inputs.append(a[0])) for blk in pf.blocks]
    x = eval_model.normalize(random_views()[0])
    with torch.no_grad():
        _, attn = pf(x, return_attention=True)
    for h in hooks:
        h.remove()
    k1 = pf.part_tokens.shape[0]
    total = 0
    for blk, h in zip(pf.blocks, inputs):
        b, n, d = h.shape
        heads = blk.attn.heads
        q, k, _ = blk.attn.qkv(h).reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        w = ((q @ k.transpose(-2, -1)) / (d // heads) ** 0.5).softmax(-1)  # (B, heads, N, N)
        total = total + w[:, :, :k1, k1:].mean(dim=1)
    total = total / total.sum(-1, keepdim=True)
    torch.testing.assert_close(attn, total.reshape(attn.shape), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("grad", [False, True])
def test_last_block_computes_only_the_part_tokens_with_the_same_result(grad):
    """G reads the part tokens alone after the last block, so the PartFormer skips that block's
    patch-token outputs: G and every gradient equal those of the whole last block (the training path
    with the explicit CPU attention, and the fused inference path)."""
    model = tiny_model(seed=3)
    pf = model.partformer
    x = model.normalize(random_views()[0])

    def whole(images):  # every block on every token, then the part tokens
        patches = pf.patch_embed(images)
        patches = patches.flatten(2).transpose(1, 2) + pf.pos_embed
        tokens = pf.select_tokens(images.shape[0], None)
        h = pf.norm_pre(torch.cat([tokens, patches], dim=1))
        for block in pf.blocks:
            h, _ = block(h)
        assert h.shape[1] == tokens.shape[1] + patches.shape[1]
        return pf.proj(pf.norm(h[:, : tokens.shape[1]]))

    seen = []
    hook = pf.blocks[-1].mlp.register_forward_hook(lambda m, a, out: seen.append(a[0].shape[1]))
    with torch.set_grad_enabled(grad):
        fast, _ = pf(x)
        hook.remove()
        slow = whole(x)
    assert seen == [pf.part_tokens.shape[0]]  # the last MLP ran on the K + 1 part tokens alone
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-5)
    if grad:
        w = torch.randn_like(fast)
        g_fast = torch.autograd.grad((fast * w).sum(), list(pf.parameters()))
        g_slow = torch.autograd.grad((slow * w).sum(), list(pf.parameters()))
        for a, b in zip(g_fast, g_slow):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- class-conditional tokens (§4.4)
def test_class_conditional_tokens():
    model = tiny_model(num_classes=3).eval()
    pf, k = model.partformer, model.cfg.num_parts
    assert pf.part_tokens.shape == (3 * k + 1, 64)
    ids = torch.tensor([2, 0, 1])
    sel = pf.select_tokens(3, ids)
    assert sel.shape == (3, k + 1, 64)
    for row, c in enumerate(ids.tolist()):
        torch.testing.assert_close(sel[row, :k], pf.part_tokens[c * k:(c + 1) * k])
        torch.testing.assert_close(sel[row, k], pf.part_tokens[-1])  # shared background token
    # G depends on the class id through the tokens; the same id gives the same G
    x = model.normalize(random_views(batch=1)[0]).expand(3, -1, -1, -1)
    with torch.no_grad():
        g, _ = pf(x, torch.tensor([0, 1, 1]))
    assert not torch.allclose(g[0, :k], g[1, :k], atol=1e-4)
    torch.testing.assert_close(g[1], g[2])
    with pytest.raises(ValueError, match="class_ids"):
        pf(x)
    # ArcFace vectors W are selected per class as well
    w = model.arcface.class_weights(3, ids)
    for row, c in enumerate(ids.tolist()):
        torch.testing.assert_close(w[row], model.arcface.weight[c * k:(c + 1) * k])
    # the public paths take class ids
    v1, v2 = random_views()
    out = model(v1, v2, class_ids=torch.tensor([0, 2]))
    assert out.maps[0].shape == (2, k + 1, 16, 16)
    pred = model.predict(v1, class_ids=[1, 2])
    assert pred.masks.shape == (2, k + 1, 64, 64)


# ---------------------------------------------------------------- inference API
def test_predict_outputs(eval_model):
    k1 = eval_model.cfg.num_parts + 1
    imgs = torch.rand(2, 3, 50, 70, generator=torch.Generator().manual_seed(0))
    pred = eval_model.predict(imgs)
    assert pred.masks.shape == (2, k1, 50, 70) and pred.labels.shape == (2, 50, 70)
    torch.testing.assert_close(pred.masks.sum(1), torch.ones(2, 50, 70))
    assert torch.equal(pred.labels, pred.masks.argmax(1))
    assert pred.attention.shape == (2, k1, 4, 4) and pred.parts.shape == (2, k1, 64)
    # §3.4: G matched against F upsampled bilinearly to the image size
    feats, parts = eval_model.encode(imgs)
    torch.testing.assert_close(pred.parts, parts)
    up = F.interpolate(feats, size=(64, 64), mode="bilinear", align_corners=False)
    square = eval_model.predict(imgs, output_size=None)
    torch.testing.assert_close(square.masks, part_probabilities(parts, up, eval_model.cfg.tau))
    assert eval_model.predict(imgs, output_size=32).masks.shape == (2, k1, 32, 32)
    assert eval_model.predict(imgs, return_attention=False).attention is None
    chunked = eval_model.predict(imgs, batch_size=1)
    torch.testing.assert_close(chunked.masks, pred.masks)


def test_predict_without_feature_interpolation():
    model = tiny_model(interpolate_features=False).eval()
    imgs = random_views()[0]
    pred = model.predict(imgs, output_size=None)
    assert pred.masks.shape[-2:] == (16, 16)  # matched at F's own size (Table 11)
    feats, parts = model.encode(imgs)
    torch.testing.assert_close(pred.masks, part_probabilities(parts, feats, model.cfg.tau))
    full = model.predict(imgs)
    assert full.masks.shape[-2:] == (64, 64)
    torch.testing.assert_close(full.masks.sum(1), torch.ones(2, 64, 64))


def test_predict_mixed_sizes_gives_lists(eval_model):
    g = torch.Generator().manual_seed(0)
    pred = eval_model.predict([torch.rand(3, 40, 60, generator=g), torch.rand(3, 80, 30, generator=g)])
    assert isinstance(pred.masks, list) and isinstance(pred.labels, list)
    assert pred.masks[0].shape == (5, 40, 60) and pred.masks[1].shape == (5, 80, 30)
    assert pred.labels[1].shape == (80, 30) and pred.parts.shape == (2, 5, 64)


def test_predict_requires_eval_mode(model):
    with pytest.raises(RuntimeError, match="eval"):
        model.predict(torch.rand(3, 64, 64))


def test_reconstruct_and_swap_parts(eval_model):
    a, b = random_views(seed=3)
    recon = eval_model.reconstruct(a)
    assert recon.shape == (2, 3, 64, 64) and recon.min() >= 0 and recon.max() <= 1
    torch.testing.assert_close(recon, eval_model.render(*eval_model.encode(a)))

    swap = eval_model.swap_parts(a, b, parts=[1, 3])
    fa, ga = eval_model.encode(a)
    fb, gb = eval_model.encode(b)
    mixed = ga.clone()
    mixed[:, [0, 2]] = gb[:, [0, 2]]
    torch.testing.assert_close(swap.swapped_a, eval_model.render(fa, mixed), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(swap.recon_a, recon, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(swap.recon_b, eval_model.reconstruct(b), atol=1e-5, rtol=1e-4)
    assert (swap.swapped_a - swap.recon_a).abs().max() > 1e-4
    everything = eval_model.swap_parts(a, b)  # all foreground parts; background stays
    mixed_all = torch.cat([gb[:, :-1], ga[:, -1:]], dim=1)
    torch.testing.assert_close(everything.swapped_a, eval_model.render(fa, mixed_all), atol=1e-5, rtol=1e-4)
    same = eval_model.swap_parts(a, a, parts=[2])
    torch.testing.assert_close(same.swapped_a, same.recon_a)
    for bad in ([0], [5]):
        with pytest.raises(ValueError, match="part numbers"):
            eval_model.swap_parts(a, b, parts=bad)
    with pytest.raises(ValueError, match="as many"):
        eval_model.swap_parts(a, b[:1])


# ---------------------------------------------------------------- devices
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cpu_and_cuda_agree():
    cpu = tiny_model(seed=4).eval()
    gpu = tiny_model(seed=4).eval().to("cuda")
    v1, v2 = random_views()
    with torch.no_grad():
        out_c = cpu(v1, v2)
        out_g = gpu(v1.cuda(), v2.cuda())
    torch.testing.assert_close(out_g.maps[0].cpu(), out_c.maps[0], atol=2e-2, rtol=0)
    torch.testing.assert_close(out_g.recon[0].cpu(), out_c.recon[0], atol=5e-2, rtol=5e-2)
    pc, pg = cpu.predict(v1), gpu.predict(v1)  # bfloat16 autocast on CUDA
    assert pg.masks.device.type == "cuda"
    torch.testing.assert_close(pg.masks.cpu(), pc.masks, atol=5e-2, rtol=0)
    torch.testing.assert_close(pg.attention.cpu(), pc.attention, atol=5e-2, rtol=0)


def test_decoder_blur_keeps_flat_synthesis_and_spreads_a_point():
    from partdisc_core.model import smooth_synthesis
    from partdisc_core.testing import tiny_config

    flat = torch.full((1, 3, 9, 9), 0.7)
    torch.testing.assert_close(smooth_synthesis(flat, 1.5), flat)  # a Gaussian of unit mass
    point = torch.zeros(1, 2, 15, 15)
    point[0, 0, 7, 7] = 1.0
    out = smooth_synthesis(point, 1.0)
    assert out[0, 0].sum() == pytest.approx(1.0, abs=1e-5) and out[0, 1].abs().max() == 0  # channels stay apart
    assert out[0, 0, 7, 7] < 0.2 and out[0, 0, 7, 8] == pytest.approx(out[0, 0, 8, 7].item())
    assert out[0, 0, 7, 8] > out[0, 0, 7, 9] > 0
    assert smooth_synthesis(point, 0.0) is point
    # the model decodes the blurred S: with a blur the decoder's output changes, gradients still flow
    torch.manual_seed(0)
    model = PartDiscModel(tiny_config(perceptual_weights="random"))
    s = torch.randn(2, model.cfg.feature_dim, 16, 16, requires_grad=True)
    sharp = model.decode(s)
    model.cfg.decoder_blur = 1.5
    blurred = model.decode(s)
    assert not torch.allclose(sharp, blurred)
    blurred.sum().backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="decoder_blur"):
        tiny_config(decoder_blur=-1.0)
