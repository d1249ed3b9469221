"""CNN decoder (§3.1): the synthetic feature map S back to an image."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import PartDiscConfig
from .layers import LayerNorm2d


class ReLUNoGradInplace(nn.ReLU):
    """ReLU that works in place only when no gradient is being recorded.

    LayerNorm2d returns a permuted view; an in-place op on a view makes autograd copy the whole
    gradient through a strided CopySlices node, while at inference the in-place op saves an
    allocation (figures in benchmarks/README.md). Same values either way."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x, inplace=not (torch.is_grad_enabled() and x.requires_grad))


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """3x3 conv, channels-first LayerNorm, ReLU (LN in place of BN, §3.1)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), LayerNorm2d(cout), ReLUNoGradInplace())


class Decoder(nn.Module):
    """Two 2x upsamplings and five conv blocks (2 at H/4, 2 at H/2, 1 at H), then a final conv to RGB.

    Output: the reconstructed image, normalised like the input (ImageNet mean/std).
    """

    def __init__(self, cfg: PartDiscConfig) -> None:
        super().__init__()
        c = cfg.decoder_channels
        k = cfg.decoder_final_kernel
        up = lambda: nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False)  # noqa: E731
        self.net = nn.Sequential(
            conv_block(cfg.feature_dim, c), conv_block(c, c), up(),
            conv_block(c, c), conv_block(c, c), up(),
            conv_block(c, c), nn.Conv2d(c, 3, k, padding=k // 2),
        )

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.net(s)
