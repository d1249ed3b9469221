"""Small building blocks shared by the encoder head and the decoder."""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map ("channels-first" LayerNorm, as in ConvNeXt)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.layer_norm on the channel-last view is one fused kernel (no mean/var Python maths).
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def sincos_position_embedding(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding, (grid * grid, dim), rows in raster order."""
    if dim % 4:
        raise ValueError("position embedding dim must be a multiple of 4")
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij")
    out_y = ys.reshape(-1, 1) * omega.reshape(1, -1)
    out_x = xs.reshape(-1, 1) * omega.reshape(1, -1)
    emb = torch.cat([out_y.sin(), out_y.cos(), out_x.sin(), out_x.cos()], dim=1)
    return emb.float()


def normalized_grid(size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Coordinates in [-1, 1) of a size x size map, as (2, size, size): [x, y]."""
    coords = torch.arange(size, device=device, dtype=dtype) / size * 2.0 - 1.0
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([xs, ys])


def init_xavier(module: nn.Module) -> None:
    """Xavier-uniform init for linear and conv weights, zeros for biases, identity for norms."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, LayerNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


__all__ = ["LayerNorm2d", "sincos_position_embedding", "normalized_grid", "init_xavier"]
