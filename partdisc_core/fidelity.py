"""How faithful the decoder's images are: reconstruction PSNR, swap transfer and how image-specific
the part representations G are. Not metrics of the paper, which judges reconstructions by eye
(Fig. 11); they make "the reconstruction looks like the face" and "swapping parts moves them"
measurable for every checkpoint (``train/evaluate.py --recon``).

* PSNR: plain reconstruction (each image's own F and G) against the image at the model's
  ``image_size``, in [0, 1], per image, then averaged.
* Swap transfer: image i is paired with image (i + N/2) mod N. With every foreground part swapped
  (A takes B's G_1..G_K), for each part k present in both, ``1 - |m(swapA, A_k) - m(recB, B_k)| /
  |m(recA, A_k) - m(recB, B_k)|``, where m(x, R) is the mean RGB colour of image x over region R and
  A_k, B_k are the argmax regions of part k in A and in B; 1 means part k of A now has B's colour,
  0 that it kept its own. Averaged over regions whose two reconstructions differ by more than
  ``min_distance`` (RGB distance in [0, 1] units).
* G cosine: mean cosine similarity between G_k of two different images, per part (near 1: G hardly
  depends on the image, so swaps cannot change anything).
* Swap locality: A takes B's G_k for one part k alone; the share of the total absolute pixel change
  |swap - recA| (summed over RGB) that falls inside A's region of part k dilated by
  ``round(3 * size / 128)`` px (3 px at 128 px), averaged over every (pair, part) whose region covers
  at least ``min_area`` (2 %) of the image and whose swap changes anything. 1: a one-part swap only
  touches that part; the part's area fraction is what a change spread evenly would score.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

__all__ = ["reconstruction_metrics", "psnr", "region_means", "swap_locality", "swap_transfer"]


def psnr(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images (B, 3, H, W) in [0, 1]."""
    mse = (recon.float() - target.float()).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return 10.0 * torch.log10(1.0 / mse)


def region_means(images: torch.Tensor, labels: torch.Tensor, num_labels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean colour of each labelled region: images (B, 3, H, W), labels (B, H, W) in [0, num_labels)
    -> means (B, num_labels, 3) and pixel counts (B, num_labels)."""
    onehot = torch.nn.functional.one_hot(labels.long(), num_labels).to(images.dtype)  # (B, H, W, L)
    counts = onehot.sum(dim=(1, 2))
    sums = torch.einsum("bhwl,bchw->blc", onehot, images)
    return sums / counts.clamp_min(1).unsqueeze(-1), counts


def swap_transfer(swapped_a: torch.Tensor, recon_a: torch.Tensor, recon_b: torch.Tensor, labels_a: torch.Tensor,
                  labels_b: torch.Tensor, num_parts: int, min_distance: float = 0.02) -> tuple[float, int]:
    """The swap transfer over a batch of pairs (see the module docstring): (mean, regions counted)."""
    swap_m, count_a = region_means(swapped_a, labels_a, num_parts + 1)
    rec_a, _ = region_means(recon_a, labels_a, num_parts + 1)
    rec_b, count_b = region_means(recon_b, labels_b, num_parts + 1)
    fg = slice(0, num_parts)  # the background is never swapped
    gap = (rec_a - rec_b).norm(dim=-1)[:, fg]
    moved = (swap_m - rec_b).norm(dim=-1)[:, fg]
    valid = (count_a[:, fg] > 0) & (count_b[:, fg] > 0) & (gap > min_distance)
    if not valid.any():
        return float("nan"), 0
    score = 1.0 - moved[valid] / gap[valid]
    return float(score.mean()), int(valid.sum())


def swap_locality(changes: torch.Tensor, labels_a: torch.Tensor, num_parts: int, min_area: float = 0.02,
                  radius: int | None = None) -> tuple[float, int]:
    """Swap locality over a batch (see the module docstring): ``changes`` (B, K, H, W), the absolute
    change of A's image when part k alone is swapped (summed over RGB), ``labels_a`` (B, H, W) A's
    argmax labels in [0, K] (K: background) -> (mean share inside the dilated region, pairs counted)."""
    h, w = labels_a.shape[-2:]
    radius = round(3 * h / 128) if radius is None else radius
    regions = F.one_hot(labels_a.long(), num_parts + 1)[..., :num_parts].permute(0, 3, 1, 2).float()  # (B, K, H, W)
    area = regions.mean(dim=(2, 3))
    if radius > 0:
        regions = F.max_pool2d(regions, 2 * radius + 1, stride=1, padding=radius)
    total = changes.sum(dim=(2, 3))
    inside = (changes * regions).sum(dim=(2, 3))
    valid = (area >= min_area) & (total > 1e-6 * h * w)
    if not valid.any():
        return float("nan"), 0
    return float((inside[valid] / total[valid]).mean()), int(valid.sum())


@torch.no_grad()
def reconstruction_metrics(model, dataset: Dataset, batch_size: int = 32, num_images: int | None = None,
                           locality: bool = False) -> dict:
    """PSNR (dB), swap transfer and G cosine of ``model`` on the images of ``dataset`` (dicts with an
    ``image`` in [0, 1]); see the module docstring. Needs at least two images. ``locality`` adds
    ``swap_locality``, which decodes every image K more times (``evaluate.py --recon`` asks for it;
    the validations during training do not)."""
    was_training = model.training
    model.eval()
    try:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                            collate_fn=lambda items: torch.stack([it["image"] for it in items]))
        feats, parts, recons, labels, psnrs = [], [], [], [], []
        size = model.cfg.image_size
        for images in loader:
            if num_images is not None and sum(len(r) for r in recons) >= num_images:
                break
            batch = model._resize(images.to(model.device), model.cfg.input_size)
            f, g = model._encode_batch(batch, None)  # one encoder pass gives the maps and the images
            recon = model.render(f, g)
            psnrs.append(psnr(recon, model._resize(batch, size).clamp(0, 1)).cpu())
            maps = model.maps_from_encoding(f, g)
            if maps.shape[-1] != size:
                maps = F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)
            feats.append(f.cpu())
            parts.append(g.cpu())
            recons.append(recon.cpu())
            labels.append(maps.max(dim=1).indices.cpu())
        feats, parts = torch.cat(feats)[:num_images], torch.cat(parts)[:num_images]
        recons, labels = torch.cat(recons)[:num_images], torch.cat(labels)[:num_images]
        n = len(parts)
        if n < 2:
            raise ValueError("reconstruction metrics need at least two images")
        k = model.cfg.num_parts
        other = (torch.arange(n) + n // 2) % n
        swapped = parts.clone()
        swapped[:, :k] = parts[other, :k]
        scores, weights, local, local_n = [], [], [], []
        eye = torch.eye(k + 1, dtype=torch.bool)[:k].unsqueeze(-1)  # (K, K+1, 1): part k alone
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            swap_img = model.render(feats[sl].to(model.device), swapped[sl].to(model.device)).cpu()
            score, count = swap_transfer(swap_img, recons[sl], recons[other[sl]], labels[sl], labels[other[sl]], k)
            if count:
                scores.append(score * count)
                weights.append(count)
            if not locality:
                continue
            # one part at a time: (b, K, K+1, C) representations, rendered in chunks of batch_size
            one = torch.where(eye, parts[other[sl]].unsqueeze(1), parts[sl].unsqueeze(1)).flatten(0, 1)
            f_rep = feats[sl].repeat_interleave(k, dim=0)
            imgs = torch.cat([model.render(f_rep[i:i + batch_size].to(model.device),
                                           one[i:i + batch_size].to(model.device)).cpu()
                              for i in range(0, len(one), batch_size)])
            change = (imgs.view(-1, k, *imgs.shape[1:]) - recons[sl].unsqueeze(1)).abs().sum(dim=2)
            share, count = swap_locality(change, labels[sl], k)
            if count:
                local.append(share * count)
                local_n.append(count)
        unit = torch.nn.functional.normalize(parts[:, :k], dim=-1)
        cosine = (unit * unit[other]).sum(-1).mean(0)  # (K,)
    finally:
        model.train(was_training)
    transfer = sum(scores) / sum(weights) if weights else math.nan
    out = {"psnr": float(torch.cat(psnrs)[:n].mean()), "swap_transfer": transfer,
           "g_cosine": float(cosine.mean()), "g_cosine_max": float(cosine.max()), "num_recon": n}
    if locality:
        out["swap_locality"] = sum(local) / sum(local_n) if local_n else math.nan
    return out
