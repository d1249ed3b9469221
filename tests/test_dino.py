"""The DINO variant (§4.3): a frozen ViT-S/8 (random weights here, 256-px input, 32x32 tokens) and
a trainable conv head; its weights come from the hub, a local file or a seeded random init,
chosen explicitly."""
import pytest
import torch

from partdisc_core import PartDiscConfig, PartDiscLoss, PartDiscModel, load_model, save_model
from partdisc_core.encoders import DinoEncoder
from partdisc_core.testing import TINY

SMALL = {**{k: TINY[k] for k in ("width", "depth", "heads", "mlp_dim", "num_parts", "decoder_channels")},
         "reconstruction": "mse"}
"""The tiny PartFormer and decoder; the image sizes are the DINO preset's."""


def dino_config(**changes) -> PartDiscConfig:
    return PartDiscConfig.preset("dino", **{**SMALL, "dino_weights": "random", **changes})


@pytest.fixture(scope="module")
def dino_model():
    torch.manual_seed(0)
    return PartDiscModel(dino_config())


def test_dino_builds_trains_and_predicts_with_random_weights(dino_model):
    model = dino_model.train()
    enc = model.encoder
    assert isinstance(enc, DinoEncoder)
    assert not enc.backbone.training and enc.head.training  # train() keeps the ViT in eval mode
    assert not any(p.requires_grad for p in enc.backbone.parameters())
    g = torch.Generator().manual_seed(0)
    v1 = torch.rand(1, 3, 256, 256, generator=g)
    out = model(v1, v1.flip(-1))
    assert out.maps[0].shape == (1, 5, 32, 32)          # 32x32 patch tokens of a 256-px input
    assert out.recon[0].shape == (1, 3, 128, 128)       # reconstruction at the PartFormer's size
    torch.testing.assert_close(out.maps[0].sum(1), torch.ones(1, 32, 32))
    model.zero_grad(set_to_none=True)
    PartDiscLoss(model.cfg)(out, model.arcface)["total"].backward()
    assert all(p.grad is None for p in enc.backbone.parameters())  # frozen
    for name, module in (("head", enc.head), ("partformer", model.partformer), ("decoder", model.decoder)):
        assert sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None) > 0, name
    assert enc.head[0].weight.grad.abs().sum() > 0     # the first conv of the head, behind the ViT
    model.eval()
    pred = model.predict(v1[0])
    assert pred.masks.shape == (1, 5, 256, 256) and pred.attention.shape == (1, 5, 8, 8)


def test_dino_hub_offline_fails_clearly(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="local weight file"):
        PartDiscModel(dino_config(dino_weights="hub"))


def test_dino_missing_weight_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="dino_weights"):
        PartDiscModel(dino_config(dino_weights=str(tmp_path / "nope.safetensors")))


def test_dino_weights_from_a_local_file_and_checkpoint(tmp_path):
    """A timm vit_small_patch8_224 state dict (224-px position embedding, with a classifier head)
    saved as .safetensors loads through dino_weights=path; checkpoints leave the frozen ViT out."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(3)
    src = timm.create_model("vit_small_patch8_224", pretrained=False).state_dict()
    path = tmp_path / "dino.safetensors"
    save_file({k: v.contiguous() for k, v in src.items()}, str(path))
    torch.manual_seed(4)
    model = PartDiscModel(dino_config(dino_weights=str(path))).eval()
    own = model.encoder.backbone.state_dict()
    assert "head.weight" not in own
    for k, v in own.items():
        if k == "pos_embed":  # resampled from 28x28 to 32x32 patches (+ the class token's)
            assert v.shape == (1, 1 + 32 * 32, 384)
            torch.testing.assert_close(v[:, :1], src[k][:, :1])
        else:
            assert torch.equal(v, src[k]), k

    folder = save_model(model, tmp_path / "ckpt", dtype=None)
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith("encoder.backbone.") for k in keys)
    assert any(k.startswith("encoder.head.") for k in keys)
    torch.manual_seed(5)
    loaded = load_model(folder)  # rebuilds the ViT from the config's dino_weights file
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # include_frozen: the ViT travels inside the checkpoint; the config still names the file
    path.rename(tmp_path / "moved.safetensors")
    whole = save_model(model, tmp_path / "whole", dtype=None, include_frozen=True)
    loaded = load_model(whole)
    assert loaded.cfg.dino_weights == str(path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_dino_weight_file_of_another_network(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "wrong.safetensors"
    save_file({"conv.weight": torch.zeros(8, 3, 3, 3)}, str(path))
    with pytest.raises(RuntimeError, match="(?i)missing"):
        PartDiscModel(dino_config(dino_weights=str(path)))
