"""Paired geometric views (§4.3), generated batched on the training device.

Each image gets two independent random similarity transforms (scale, rotation, translation); one
horizontal flip is shared by both views. An optional shared zoom (applied to both views alike)
adds scale and crop variety, e.g. tight face crops. All warps are one ``affine_grid`` +
``grid_sample`` call for the whole batch: no per-sample Python work.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    """Ranges of the paired-view transforms.

    The paper: scale ±5 %, rotation ±15° (uniform), translation ±5 px. The reference code draws the
    rotation from N(0, 15°) clipped to ±30° and translates by up to 5 % of the image size: that is
    the default here (``rotation_dist="normal"``)."""

    scale: float = 0.05
    rotation: float = 15.0
    rotation_dist: str = "normal"   # "normal": N(0, rotation) clipped to ±2*rotation; "uniform": ±rotation
    translation: float = 0.05       # fraction of the image size
    flip: bool = True               # one horizontal flip (p = 0.5) shared by both views
    zoom: tuple[float, float] = (1.0, 1.0)
    """Shared zoom range (>1 zooms in, i.e. a tighter crop); with it a shared shift of up to
    ``zoom_shift`` of the size keeps crops varied."""
    zoom_shift: float = 0.0
    padding: str = "border"
    """What fills a view outside the photo: "border" (repeat the edge), "reflection", "zeros" (black)
    or "grey" (mid-grey, the demo's crop fill: partdisc_core.facecrop)."""
    feature_jitter: float = 0.0
    """Strength of a random appearance change (brightness, contrast, saturation, colour cast) applied
    only to the images the encoder F sees, never to the PartFormer's input or the reconstruction
    target. Not in the paper: F then cannot tell the decoder the true colours, so they must travel
    through the part representations G, which makes swapping parts move their appearance. 0: off."""

    background_ring: float = 0.0
    """Width, as a share of the side, of the ring along the photo's own edge that the border prior
    (``model.lambda_border``) treats as scenery. With it the views also carry where that ring, and any
    fill from outside the photo, lands after the zoom, shift and transform, so the prior follows the
    photo's edge wherever a view puts it instead of a fixed frame of the view (a frame the encoder
    can find from its padding alone). 0: the prior uses the view's own edge (``model.border_width``)."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["zoom"] = list(self.zoom)
        return d


def _uniform(n: int, low: float, high: float, gen: torch.Generator | None, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def similarity_matrices(scale: torch.Tensor, angle: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor,
                        flip: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 2, 3) matrices mapping output coords to input coords in affine_grid's [-1, 1] frame."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx = torch.ones_like(scale) if flip is None else torch.where(flip, -1.0, 1.0)
    inv = 1.0 / scale
    row0 = torch.stack([cos * inv * sx, -sin * inv, tx], dim=1)
    row1 = torch.stack([sin * inv * sx, cos * inv, ty], dim=1)
    return torch.stack([row0, row1], dim=1)


def appearance_jitter(images: torch.Tensor, strength: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """A random appearance change of each image (B, 3, H, W) in [0, 1], all in one batched pass:
    saturation, a per-channel colour cast, brightness and contrast, each drawn uniformly within
    ``strength`` of no change (1.0). Geometry is untouched. Returns images clamped to [0, 1]."""
    if strength <= 0:
        return images
    b, device = images.shape[0], images.device

    def factor(*shape: int) -> torch.Tensor:
        return 1.0 + (torch.rand(b, *shape, generator=gen, device=device) * 2 - 1) * strength

    gray = images.mean(dim=1, keepdim=True)
    out = gray + factor(1, 1, 1) * (images - gray)            # saturation
    out = out * factor(3, 1, 1).clamp_min(0.0) * factor(1, 1, 1)  # colour cast, brightness
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = mean + factor(1, 1, 1) * (out - mean)               # contrast
    return out.clamp(0.0, 1.0).to(images.dtype)


class PairedViews:
    """Callable: images (B, 3, H, W) -> (view1, view2), both (B, 3, H, W), on the images' device."""

    def __init__(self, cfg: AugmentConfig | None = None, seed: int | None = None) -> None:
        self.cfg = cfg or AugmentConfig()
        self.seed = seed
        self._gen: torch.Generator | None = None

    def _generator(self, device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._gen is None or self._gen.device != torch.device(device):
            self._gen = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen

    def _params(self, n: int, gen, device) -> torch.Tensor:
        c = self.cfg
        scale = 1.0 + _uniform(n, -c.scale, c.scale, gen, device)
        if c.rotation_dist == "normal":
            deg = (torch.randn(n, generator=gen, device=device) * c.rotation).clamp(-2 * c.rotation, 2 * c.rotation)
        else:
            deg = _uniform(n, -c.rotation, c.rotation, gen, device)
        t = 2.0 * c.translation  # fraction of the size -> [-1, 1] units
        tx, ty = _uniform(n, -t, t, gen, device), _uniform(n, -t, t, gen, device)
        return scale, deg * math.pi / 180.0, tx, ty

    def __call__(self, images: torch.Tensor, with_prior: bool = False) -> tuple[torch.Tensor, ...]:
        """(view1, view2); with ``with_prior`` also (prior1, prior2), (B, H, W) in [0, 1]: how much of
        each view pixel is the photo's edge ring (``background_ring``) or fill from outside it."""
        b, device = images.shape[0], images.device
        gen = self._generator(device)
        c = self.cfg
        flip = (torch.rand(b, generator=gen, device=device) < 0.5) if c.flip else torch.zeros(b, dtype=torch.bool, device=device)
        zoom = _uniform(b, c.zoom[0], c.zoom[1], gen, device)
        shift = 2.0 * c.zoom_shift
        zx, zy = _uniform(b, -shift, shift, gen, device), _uniform(b, -shift, shift, gen, device)
        thetas = []
        for _ in range(2):
            scale, angle, tx, ty = self._params(b, gen, device)
            # Compose: shared zoom/shift (and flip) first, then this view's own similarity transform.
            thetas.append(similarity_matrices(scale * zoom, angle, tx + zx, ty + zy, flip))
        theta = torch.cat(thetas).to(images.dtype)
        both = images.repeat(2, 1, 1, 1)
        grid = F.affine_grid(theta, list(both.shape), align_corners=False)
        if c.padding == "grey":   # zeros padding around 0.5-centred images = a mid-grey fill
            out = F.grid_sample(both - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5
        else:
            out = F.grid_sample(both, grid, mode="bilinear", padding_mode=c.padding, align_corners=False)
        if not with_prior:
            return out[:b], out[b:]
        h, w = images.shape[-2:]
        inner = torch.zeros(1, 1, h, w, dtype=grid.dtype, device=device)
        ry, rx = round(c.background_ring * h), round(c.background_ring * w)
        inner[..., ry:h - ry, rx:w - rx] = 1.0
        inside = F.grid_sample(inner.expand(2 * b, 1, h, w), grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False)
        prior = (1.0 - inside[:, 0]).clamp(0.0, 1.0)
        return out[:b], out[b:], prior[:b], prior[b:]
