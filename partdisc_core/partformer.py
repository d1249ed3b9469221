"""PartFormer (§3.1): a ViT whose class token is replaced by K + 1 learnable part tokens.

The output is G, the part representations (B, K + 1, C): the part tokens after the last block,
LayerNorm and a linear projection to C. The last token is the background.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import PartDiscConfig
from .layers import sincos_position_embedding


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v with the softmax in float32: the same maths as the fused kernel.
    Used to train on the CPU, where the fused kernel's backward pass is slow for sequences as short
    as the PartFormer's (tens of tokens; figures in benchmarks/README.md)."""
    logits = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    return logits.float().softmax(dim=-1).to(v.dtype) @ v


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, num_queries_kept: int = 0, rows: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Self-attention of the tokens x (B, N, d) -> (B, N, d), or (B, rows, d) for the first
        ``rows`` tokens alone when ``rows`` > 0 (they still attend to all N). With
        ``num_queries_kept`` > 0 also returns the attention weights of the first ``num_queries_kept``
        tokens (the part tokens), averaged over heads: (B, Q, N)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if rows:
            q = q[:, :, :rows]
        if q.device.type == "cpu" and torch.is_grad_enabled() and q.requires_grad:
            out = explicit_attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # fused kernel
        weights = None
        if num_queries_kept:
            # Only the part tokens' rows, computed explicitly: (B, heads, Q, N) -> mean over heads.
            logits = q[:, :, :num_queries_kept] @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5)
            weights = logits.float().softmax(dim=-1).mean(dim=1)
        return self.proj(out.transpose(1, 2).reshape(b, q.shape[2], d)), weights


class Block(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor, num_queries_kept: int = 0, rows: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, N, width) -> (B, N, width), or the first ``rows`` tokens' outputs alone (``rows`` > 0)."""
        y, weights = self.attn(self.norm1(x), num_queries_kept, rows)
        x = (x[:, :rows] if rows else x) + y
        x = x + self.mlp(self.norm2(x))
        return x, weights


class PartFormer(nn.Module):
    """Patch embedding + (K + 1) part tokens P + pre-LN blocks + LN + projection to C (= G)."""

    def __init__(self, cfg: PartDiscConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_parts = cfg.num_parts
        self.num_classes = cfg.num_classes
        grid = cfg.image_size // cfg.patch_size
        self.patch_embed = nn.Conv2d(3, cfg.width, cfg.patch_size, stride=cfg.patch_size, bias=False)
        # P: the learnable part embeddings (K x N_class foreground + 1 shared background).
        self.part_tokens = nn.Parameter(torch.randn(cfg.num_tokens, cfg.width) * 0.02)
        self.register_buffer("pos_embed", sincos_position_embedding(grid, cfg.width), persistent=False)
        self.norm_pre = nn.LayerNorm(cfg.width)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.mlp_dim) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.feature_dim, bias=False)

    def select_tokens(self, batch: int, class_ids: torch.Tensor | None) -> torch.Tensor:
        """The K + 1 part tokens of each sample: (B, K + 1, width)."""
        k = self.num_parts
        if self.num_classes == 1:
            return self.part_tokens.unsqueeze(0).expand(batch, -1, -1)
        if class_ids is None:
            raise ValueError("this model has class-conditional part tokens: pass class_ids (B,)")
        idx = class_ids.long().reshape(-1, 1) * k + torch.arange(k, device=class_ids.device)
        background = torch.full((batch, 1), self.part_tokens.shape[0] - 1, device=class_ids.device, dtype=torch.long)
        return self.part_tokens[torch.cat([idx, background], dim=1)]

    def forward(self, images: torch.Tensor, class_ids: torch.Tensor | None = None,
                return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """images (B, 3, S, S) normalised -> G (B, K + 1, C) and, on request, the attention of each
        part token to the patch tokens averaged over heads and layers, (B, K + 1, S/p, S/p)."""
        b = images.shape[0]
        patches = self.patch_embed(images)
        grid_h, grid_w = patches.shape[-2:]
        patches = patches.flatten(2).transpose(1, 2) + self.pos_embed.to(patches.dtype)
        tokens = self.select_tokens(b, class_ids).to(patches.dtype)
        x = self.norm_pre(torch.cat([tokens, patches], dim=1))
        q = tokens.shape[1] if return_attention else 0
        attention = None
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            # G reads only the part tokens after the last block: its patch-token outputs are never used
            x, weights = block(x, q, rows=tokens.shape[1] if i == last else 0)
            if weights is not None:
                attention = weights if attention is None else attention + weights
        parts = self.proj(self.norm(x[:, : tokens.shape[1]]))
        if attention is not None:
            attention = (attention / len(self.blocks))[:, :, tokens.shape[1]:]
            attention = attention / attention.sum(-1, keepdim=True)  # a distribution over patches
            attention = attention.reshape(b, -1, grid_h, grid_w)
        return parts, attention
