"""PartDiscConfig: the paper's defaults, JSON round trips, command-line overrides, validation."""
import json

import pytest

from partdisc_core import PartDiscConfig, apply_overrides
from partdisc_core.config import CONFIG_VERSION


def test_defaults_are_the_papers():
    cfg = PartDiscConfig()
    assert (cfg.depth, cfg.heads, cfg.width, cfg.mlp_dim, cfg.patch_size) == (6, 8, 256, 1024, 16)
    assert cfg.tau == 0.8 and cfg.feature_dim == 64 and cfg.image_size == 128
    assert (cfg.arcface_scale, cfg.arcface_margin) == (20.0, 0.5)
    assert (cfg.lambda_sc, cfg.lambda_con, cfg.lambda_area) == (0.01, 0.5, 0.5)
    assert cfg.perceptual_layer_weights == (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    assert cfg.num_tokens == cfg.num_parts + 1 and cfg.feature_size == 32 and cfg.input_size == 128


def test_dino_preset():
    cfg = PartDiscConfig.preset("dino", num_parts=4)
    assert cfg.encoder == "dino" and cfg.encoder_image_size == 256 and cfg.lambda_con == 0.3
    assert cfg.input_size == 256 and cfg.image_size == 128 and cfg.num_parts == 4
    assert PartDiscConfig.preset("resnet").lambda_con == 0.5


def test_class_conditional_token_count():
    assert PartDiscConfig(num_parts=4, num_classes=3).num_tokens == 13


def test_json_round_trip_file_and_text(tmp_path):
    cfg = PartDiscConfig(num_parts=5, tau=0.3, exchange=False, perceptual_layer_weights=(1, 2, 3, 4, 5),
                         mean=(0.5, 0.5, 0.5), dino_weights="/x/y.pth")
    path = tmp_path / "cfg.json"
    text = cfg.to_json(path)
    assert json.loads(path.read_text()) == json.loads(text)
    for back in (PartDiscConfig.from_json(path), PartDiscConfig.from_json(text), PartDiscConfig.from_json(str(path))):
        assert back == cfg
        assert isinstance(back.perceptual_layer_weights, tuple) and isinstance(back.mean, tuple)
        assert back.perceptual_layer_weights == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert PartDiscConfig.from_dict(cfg.to_dict()) == cfg
    assert json.loads(text)["version"] == CONFIG_VERSION


def test_from_dict_rejects_unknown_keys_and_newer_versions():
    d = PartDiscConfig().to_dict()
    with pytest.raises(ValueError, match="colour_depth"):
        PartDiscConfig.from_dict({**d, "colour_depth": 3})
    with pytest.raises(ValueError, match="newer"):
        PartDiscConfig.from_dict({**d, "version": CONFIG_VERSION + 1})


def test_overrides_parse_types():
    cfg = apply_overrides(PartDiscConfig(), [
        "tau=0.5", "num_parts=3", "exchange=false", "interpolate-features=0", "encoder=dino",
        "perceptual_layer_weights=1/32,1/16,1/8,1/4,1", "mean=0.5,0.4,0.3", "alpha=1",
    ])
    assert cfg.tau == 0.5 and isinstance(cfg.tau, float)
    assert cfg.num_parts == 3 and isinstance(cfg.num_parts, int)
    assert cfg.exchange is False and cfg.interpolate_features is False
    assert cfg.encoder == "dino"
    assert cfg.perceptual_layer_weights == (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    assert cfg.mean == (0.5, 0.4, 0.3)
    assert cfg.alpha == 1.0 and isinstance(cfg.alpha, float)
    assert apply_overrides(cfg, ["exchange=YES"]).exchange is True


@pytest.mark.parametrize("item", ["exchange=maybe", "num_parts=2.5", "no_such_key=1", "tau", "tau=abc",
                                  "tau=-1", "num_parts=0", "encoder=vgg"])
def test_bad_overrides_raise(item):
    with pytest.raises(ValueError):
        apply_overrides(PartDiscConfig(), [item])


@pytest.mark.parametrize("changes", [
    dict(num_parts=0), dict(num_classes=0), dict(encoder="vgg"), dict(resnet_cut="layer2"),
    dict(reconstruction="l2"), dict(perceptual_net="vgg16"), dict(image_size=120),
    dict(width=250, heads=8), dict(perceptual_layer_weights=(1, 1, 1, 1)), dict(tau=0.0), dict(alpha=-1.0),
    dict(patch_size=6, image_size=18), dict(lambda_con=-0.1), dict(lambda_rec=-1.0), dict(heads=0),
    dict(depth=0), dict(feature_dim=0),
])
def test_invalid_values_raise(changes):
    with pytest.raises(ValueError, match="invalid PartDiscConfig"):
        PartDiscConfig(**changes)


def test_replace_validates():
    cfg = PartDiscConfig()
    assert cfg.replace(tau=0.5).tau == 0.5 and cfg.tau == 0.8
    with pytest.raises(ValueError):
        cfg.replace(num_parts=-2)


def test_split_override_and_untyped_values():
    from partdisc_core.config import parse_value, split_override

    assert split_override("model.tau=0.5") == ("model.tau", "0.5")
    assert split_override("holdout-percent=5") == ("holdout_percent", "5")
    assert split_override("a=b=c") == ("a", "b=c")
    for bad in ("novalue", "=3"):
        with pytest.raises(ValueError):
            split_override(bad)
    assert parse_value("5", None) == 5 and parse_value("none", None) is None
    assert parse_value("[1, 2]", None) == [1, 2] and parse_value("text", None) == "text"
    assert parse_value('{"a": 1}', {}) == {"a": 1}
    assert apply_overrides(PartDiscConfig(), ["model.tau=0.25"]).tau == 0.25


def test_mobilenet_preset_is_the_shipped_cheap_encoder():
    cfg = PartDiscConfig.preset("mobilenetv2")
    assert (cfg.encoder_image_size, cfg.mobilenet_taps, cfg.lambda_con) == (128, (3, 6, 13), 0.3)
    assert PartDiscConfig.from_dict(cfg.to_dict()).mobilenet_taps == (3, 6, 13)  # JSON lists come back as tuples
