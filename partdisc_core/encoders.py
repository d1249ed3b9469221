"""Feature-map encoders: the pixel representations F of §3.1 (B, C, H/4, W/4 for 128 px, 32x32)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .config import PartDiscConfig


class ResNetStemEncoder(nn.Module):
    """A ResNet18 trained from scratch, cut after ``layer1`` (reference code) or ``layer3`` (paper text).

    Built through timm so that the layer names match timm's ``resnet18``; a 1x1 projection maps the
    stem's channels to C when they differ.
    """

    def __init__(self, cfg: PartDiscConfig) -> None:
        super().__init__()
        import timm

        net = timm.create_model("resnet18", pretrained=False, num_classes=0)
        keep = ["conv1", "bn1", "act1", "maxpool", "layer1"]
        if cfg.resnet_cut == "layer3":
            keep += ["layer2", "layer3"]
        self.stem = nn.Sequential(*[getattr(net, name) for name in keep])
        channels = 64 if cfg.resnet_cut == "layer1" else 256
        self.proj = nn.Identity() if channels == cfg.feature_dim else nn.Conv2d(channels, cfg.feature_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.stem(x))


def _dino_backbone(cfg: PartDiscConfig) -> nn.Module:
    import timm

    source = cfg.dino_weights
    kwargs = dict(num_classes=0, img_size=cfg.encoder_image_size)
    if source == "random":
        return timm.create_model(cfg.dino_model, pretrained=False, **kwargs)
    if source == "hub":
        try:
            return timm.create_model(cfg.dino_model, pretrained=True, **kwargs)
        except Exception as exc:  # network errors come in many types
            raise RuntimeError(
                f"could not load the DINO weights of {cfg.dino_model!r} from the hub ({type(exc).__name__}: {exc}). "
                "Offline, set dino_weights to a local weight file (.pth or .safetensors)."
            ) from exc
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"dino_weights {source!r} is neither 'hub', 'random' nor an existing file")
    return timm.create_model(cfg.dino_model, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs)


class DinoEncoder(nn.Module):
    """Frozen DINO ViT-S/8 followed by a trainable conv head down to C channels (§4.3).

    The ViT never receives gradients and stays in eval mode; its patch tokens (32x32 for a 256-px
    input) go through three conv blocks (conv, BatchNorm, ReLU; the last block is a plain conv, as
    in the reference code) that reduce 384 channels to 256, 128 and C.
    """

    def __init__(self, cfg: PartDiscConfig) -> None:
        super().__init__()
        self.backbone = _dino_backbone(cfg)
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        dim = self.backbone.embed_dim
        k = cfg.dino_head_kernel
        pad = k // 2
        self.head = nn.Sequential(
            nn.Conv2d(dim, 256, k, padding=pad), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
            nn.Conv2d(256, 128, k, padding=pad), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, cfg.feature_dim, k, padding=pad),
        )

    def train(self, mode: bool = True) -> "DinoEncoder":
        super().train(mode)
        self.backbone.eval()  # frozen: no dropout, no statistics updates
        return self

    @torch.no_grad()
    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen ViT's patch tokens as a (B, 384, h, w) map."""
        tokens = self.backbone.forward_features(x)[:, self.backbone.num_prefix_tokens:]
        b, n, d = tokens.shape
        side = int(round(n ** 0.5))
        return tokens.transpose(1, 2).reshape(b, d, side, n // side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.tokens(x))


class MobileNetEncoder(nn.Module):
    """Frozen ImageNet MobileNetV2 (supervised pretraining) + a trainable conv head down to C.

    The paper's "pretrained, frozen encoder" variant (§4.3, its DINO rows) with weights that ship
    offline: the image, resized to ``encoder_image_size``, goes through the frozen network up to the
    last of ``mobilenet_taps``; the tapped blocks' outputs, resized to the first tap's size (F's) and
    concatenated, pass through the head (conv-BN-ReLU x2, conv) to C. Taps (6, 13) at 256 px (stride 8
    and 16, 128 channels) or (3, 6, 13) at 128 px (stride 4, 8 and 16, 152 channels, a quarter of the
    backbone's cost) both give a 32x32 F. The backbone's BatchNorms are folded into its convs; its
    weights are saved in every checkpoint (about 1 MB in fp16), so a checkpoint never depends on where
    the ImageNet weights came from.
    """

    def __init__(self, cfg: PartDiscConfig) -> None:
        super().__init__()
        from .perceptual import fold_batchnorm, mobilenetv2_features

        with torch.random.fork_rng(devices=[]):  # "random" weights: seeded, the caller's RNG untouched
            torch.manual_seed(0)
            features = mobilenetv2_features(cfg.mobilenet_weights)
        self.taps = cfg.mobilenet_taps
        self.backbone = fold_batchnorm(features[: self.taps[-1] + 1].eval())
        self.backbone.requires_grad_(False)
        for m in self.backbone.modules():
            if isinstance(m, (nn.ReLU, nn.ReLU6)):
                m.inplace = False  # the tapped outputs must survive the later blocks
        k = cfg.dino_head_kernel
        width = cfg.encoder_head_width
        channels = sum(self.tap_channels())
        self.head = nn.Sequential(
            nn.Conv2d(channels, width, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, k, padding=k // 2), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, cfg.feature_dim, k, padding=k // 2),
        )

    def tap_channels(self) -> list[int]:
        """Channels of each tapped block's output, in tap order (their concatenation feeds the head)."""
        return [[m for m in self.backbone[t].modules() if isinstance(m, nn.Conv2d)][-1].out_channels
                for t in self.taps]

    def train(self, mode: bool = True) -> "MobileNetEncoder":
        super().train(mode)
        self.backbone.eval()
        return self

    @torch.no_grad()
    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen network's tapped features, all at the first tap's size (F's), concatenated."""
        taps = []
        for i, layer in enumerate(self.backbone):
            x = layer(x)
            if i in self.taps:
                taps.append(x)
        size = taps[0].shape[-2:]
        return torch.cat([taps[0]] + [torch.nn.functional.interpolate(t, size=size, mode="bilinear",
                                                                      align_corners=False) for t in taps[1:]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.tokens(x))


def build_encoder(cfg: PartDiscConfig) -> nn.Module:
    if cfg.encoder == "resnet":
        return ResNetStemEncoder(cfg)
    if cfg.encoder == "mobilenetv2":
        return MobileNetEncoder(cfg)
    return DinoEncoder(cfg)
