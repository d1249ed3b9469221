"""The four losses of eq. (9): reconstruction (7), semantic consistency (8), concentration (4-5)
and area (6), and three optional terms that are not in the paper (pixel L1, swap colour, border
prior). Each is a
small function or module; :class:`PartDiscLoss` adds them with the config's weights and lets any of
them be switched off (weight 0) for the Table 6 ablations.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import PartDiscConfig
from .layers import normalized_grid


def concentration_loss(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. (4-5) on the foreground maps V (B, K, H, W), in normalised coordinates [-1, 1).

    For each part k, the spatial variance of V_k around its centre c_k (weighted by V_k / z_k),
    summed over parts and averaged over the batch. Zero for point masses, growing with spread.
    """
    b, k, h, w = maps.shape
    maps = maps.float()
    grid = normalized_grid(h, device=maps.device) if h == w else _rect_grid(h, w, maps.device)
    z = maps.sum(dim=(2, 3), keepdim=True) + eps  # z_k, the soft area
    weights = maps / z
    centres = torch.einsum("bkhw,dhw->bkd", weights, grid)  # (c_x, c_y) per part
    sq = (grid.unsqueeze(0).unsqueeze(0) - centres[..., None, None]).pow(2).sum(dim=2)  # (B, K, H, W)
    return (sq * weights).sum(dim=(1, 2, 3)).mean()


def _rect_grid(h: int, w: int, device) -> torch.Tensor:
    ys = torch.arange(h, device=device, dtype=torch.float32) / h * 2 - 1
    xs = torch.arange(w, device=device, dtype=torch.float32) / w * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy])


def pixel_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between the reconstruction I' and the image I (both normalised).

    Not in the paper: an optional companion of eq. (7) that ties the reconstruction's colours to
    the input's, which the perceptual features alone leave nearly free (``lambda_pixel``)."""
    return (recon.float() - target.float()).abs().mean()


def swap_colour_loss(swapped: torch.Tensor, maps_a: torch.Tensor, image_b: torch.Tensor, maps_b: torch.Tensor,
                     eps: float = 1e-8) -> torch.Tensor:
    """Swap colour loss (not in the paper; ``lambda_swap``): image A decoded with image B's foreground
    G (``swapped``) should show, in A's region of each part k, the mean colour of part k in B.

    swapped, image_b: (B, 3, S, S), normalised; maps_a, maps_b: foreground V of A and of B (B, K, h, w).
    Per part, the V-weighted mean colour of ``swapped`` under V_k^A against that of ``image_b`` under
    V_k^B, L1 over channels; parts are weighted by the smaller of their two areas (a part missing
    from either image counts for nothing), then averaged over the batch."""
    size = maps_a.shape[-2:]
    swapped = F.adaptive_avg_pool2d(swapped.float(), size)
    image_b = F.adaptive_avg_pool2d(image_b.float(), size)
    maps_a, maps_b = maps_a.float(), maps_b.float()
    area_a, area_b = maps_a.sum(dim=(2, 3)), maps_b.sum(dim=(2, 3))
    mean_swap = torch.einsum("bkhw,bchw->bkc", maps_a, swapped) / (area_a.unsqueeze(-1) + eps)
    mean_b = torch.einsum("bkhw,bchw->bkc", maps_b, image_b) / (area_b.unsqueeze(-1) + eps)
    weight = torch.minimum(area_a, area_b)
    weight = weight / (weight.sum(dim=1, keepdim=True) + eps)
    return ((mean_swap - mean_b).abs().mean(dim=-1) * weight).sum(dim=1).mean()


def border_ring(h: int, w: int, width: float, device=None) -> torch.Tensor:
    """(H, W) bool: the pixels within ``width`` x side of the map's edge (at least one pixel)."""
    ry, rx = max(1, round(width * h)), max(1, round(width * w))
    ys, xs = torch.arange(h, device=device), torch.arange(w, device=device)
    near_y = (ys < ry) | (ys >= h - ry)
    near_x = (xs < rx) | (xs >= w - rx)
    return near_y[:, None] | near_x[None, :]


def border_loss(maps: torch.Tensor, width: float, prior: torch.Tensor | None = None, eps: float = 1e-6
                ) -> torch.Tensor:
    """Border prior (not in the paper; ``lambda_border``): -log V_background over the pixels known to
    be scenery, averaged over the batch.

    maps: (B, K+1, H, W), background last. Without ``prior`` those pixels are the ring within
    ``width`` of each view's edge; with ``prior`` (B, h, w) weights in [0, 1] (the photo's own edge
    ring and any fill, from :class:`partdisc_core.augment.PairedViews`, averaged down to the maps'
    size) they are weighted by it, and a batch with no such pixel gives 0. A face photo's edge is
    scenery, hair or clothes; without this term the scenery is as good a place for a part as the face
    (the area loss of eq. (6) pushes every part to grow, wherever it is), and parts spill onto walls
    while the face is left to the background. Zero when the background holds all those pixels."""
    nll = -(maps[:, -1].float() + eps).log()
    if prior is None:
        ring = border_ring(maps.shape[-2], maps.shape[-1], width, maps.device)
        return nll[:, ring].mean()
    weight = F.adaptive_avg_pool2d(prior.float().unsqueeze(1), maps.shape[-2:])[:, 0]
    return (weight * nll).sum() / weight.sum().clamp_min(1.0)


def area_loss(maps: torch.Tensor, alpha: float, eps: float = 1e-8) -> torch.Tensor:
    """Eq. (6): sum_k 1 / (1 + z_k / alpha) with z_k the soft pixel count of V_k; mean over batch.

    Rises sharply as a part's area z_k falls below alpha, which keeps every part (and the
    background) from vanishing.
    """
    z = maps.float().sum(dim=(2, 3)) + eps
    return (1.0 / (1.0 + z / alpha)).sum(dim=1).mean()


class ArcFace(nn.Module):
    """Semantic consistency, eq. (8): ArcFace over the K foreground part representations.

    W (K x N_class, C) holds one learnable vector per foreground part (per class when
    class-conditional); part k of every image is pulled towards W_k with an additive angular
    margin m and pushed away from the other parts' vectors, scaled by s.
    """

    def __init__(self, cfg: PartDiscConfig) -> None:
        super().__init__()
        self.num_parts = cfg.num_parts
        self.scale = cfg.arcface_scale
        self.margin = cfg.arcface_margin
        self.weight = nn.Parameter(torch.empty(cfg.num_parts * cfg.num_classes, cfg.feature_dim))
        nn.init.xavier_uniform_(self.weight)

    def class_weights(self, batch: int, class_ids: torch.Tensor | None) -> torch.Tensor:
        if class_ids is None:
            return self.weight[: self.num_parts].unsqueeze(0).expand(batch, -1, -1)
        idx = class_ids.long().reshape(-1, 1) * self.num_parts + torch.arange(self.num_parts, device=class_ids.device)
        return self.weight[idx]

    def forward(self, parts: torch.Tensor, class_ids: torch.Tensor | None = None) -> torch.Tensor:
        """parts: foreground G (B, K, C) -> scalar loss."""
        b, k, _ = parts.shape
        w = self.class_weights(b, class_ids)
        cosine = torch.einsum("bkc,btc->bkt", F.normalize(parts.float(), dim=-1), F.normalize(w.float(), dim=-1))
        eye = torch.eye(k, device=parts.device, dtype=torch.bool)
        theta = torch.acos(cosine.clamp(-1 + 1e-6, 1 - 1e-6))
        # cos(theta + m) while theta + m < pi; beyond, the usual monotone extension keeps it decreasing.
        with_margin = torch.where(theta + self.margin < math.pi, torch.cos(theta + self.margin),
                                  cosine - math.sin(math.pi - self.margin) * self.margin)
        logits = self.scale * torch.where(eye, with_margin, cosine)
        target = torch.arange(k, device=parts.device).expand(b, k)
        return F.cross_entropy(logits.reshape(b * k, k), target.reshape(-1))


class PartDiscLoss(nn.Module):
    """Total loss, eq. (9), over both views; holds the frozen perceptual network."""

    def __init__(self, cfg: PartDiscConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.perceptual = None
        if cfg.reconstruction == "perceptual" and cfg.lambda_rec > 0:
            from .perceptual import PerceptualNetwork

            self.perceptual = PerceptualNetwork(cfg)

    def reconstruction(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Eq. (7) (or MSE) between reconstructions and targets; both views come in one batch, so
        the frozen network runs once on all targets and once on all reconstructions."""
        if self.cfg.reconstruction == "mse":
            return F.mse_loss(recon.float(), target.float())
        with torch.no_grad():
            target_feats = self.perceptual(target)
        loss = recon.new_zeros((), dtype=torch.float32)
        for weight, a, b in zip(self.cfg.perceptual_layer_weights, self.perceptual(recon), target_feats):
            loss = loss + weight * (a.float() - b.float()).abs().mean()
        return loss

    def forward(self, out, arcface: ArcFace, class_ids: torch.Tensor | None = None,
                prior: tuple[torch.Tensor, ...] | None = None) -> dict[str, torch.Tensor]:
        """out: a :class:`partdisc_core.model.TrainOutput`; ``prior``: per view, where the border prior
        applies (see :func:`border_loss`; None: each view's edge ring). Returns each loss and their
        weighted ``total``."""
        cfg = self.cfg
        k = cfg.num_parts
        zero = out.maps[0].new_zeros((), dtype=torch.float32)
        views = range(len(out.maps))
        rec = con = area = sc = pix = swap = border = zero
        use_rec = cfg.reconstruction != "none" and cfg.lambda_rec > 0
        if use_rec or cfg.lambda_pixel > 0:
            # the mean over the views equals one call on both views together: every term is a mean
            recon, targets = torch.cat(out.recon), torch.cat(out.targets)
        if use_rec:
            rec = self.reconstruction(recon, targets)
        if cfg.lambda_pixel > 0:
            pix = pixel_loss(recon, targets)
        if cfg.lambda_con > 0:
            con = sum(concentration_loss(out.maps[i][:, :k], cfg.epsilon) for i in views) / len(out.maps)
        if cfg.lambda_area > 0:
            sl = slice(None) if cfg.area_on_background else slice(0, k)
            area = sum(area_loss(out.maps[i][:, sl], cfg.alpha, cfg.epsilon) for i in views) / len(out.maps)
        if cfg.lambda_sc > 0:
            sc = sum(arcface(out.parts[i][:, :k], class_ids) for i in views) / len(out.maps)
        if cfg.lambda_border > 0:
            border = sum(border_loss(out.maps[i], cfg.border_width, None if prior is None else prior[i])
                         for i in views) / len(out.maps)
        if cfg.lambda_swap > 0 and out.swapped is not None:
            maps = out.maps[0][:, :k].detach()
            swap = swap_colour_loss(out.swapped, maps, out.targets[0][out.donor], maps[out.donor])
        total = (cfg.lambda_rec * rec + cfg.lambda_pixel * pix + cfg.lambda_sc * sc + cfg.lambda_con * con
                 + cfg.lambda_area * area + cfg.lambda_swap * swap + cfg.lambda_border * border)
        return {"total": total, "rec": rec, "pix": pix, "sc": sc, "con": con, "area": area, "swap": swap,
                "border": border}
