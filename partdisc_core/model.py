"""The part discovery model: encoder F, PartFormer G, representation transfer (V, S), decoder.

Training (Fig. 2): two geometric views of one image each give F and G; the views exchange G, and
V^{2->1} = softmax_k(tau * G^(2) F^(1)) (eq. 2) weighs G^(2) into S^{2->1} = sum_k V_k G_k (eq. 3),
which the decoder turns back into view 1 (and symmetrically for view 2).

Test time (Fig. 3, §3.4): G acts as K + 1 detectors over F upsampled bilinearly to the image size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import PartDiscConfig
from .decoder import Decoder
from .encoders import build_encoder
from .inputs import to_image_tensors
from .layers import init_xavier
from .losses import ArcFace
from .partformer import PartFormer


CPU_BF16_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
"""PyTorch's (private) detectors of bf16 arithmetic in CPU hardware; absent in some torch versions."""


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 arithmetic in hardware (AVX512-BF16 or AMX), where bf16 autocast pays
    (training by default, inference on request); elsewhere bf16 is emulated and slow."""
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in CPU_BF16_PROBES)


def part_probabilities(parts: torch.Tensor, features: torch.Tensor, tau: float) -> torch.Tensor:
    """V (eq. 2): softmax over the K + 1 parts of tau * <G_k, F_ij>.  parts (B, K+1, C), features
    (B, C, H, W) -> (B, K+1, H, W), summing to 1 over parts at every pixel."""
    logits = torch.einsum("bkc,bchw->bkhw", parts, features)
    return torch.softmax(tau * logits.float(), dim=1).to(features.dtype)


def synthesize(probabilities: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """S (eq. 3): sum_k V_k G_k, a convex combination of the part representations at each pixel."""
    return torch.einsum("bkhw,bkc->bchw", probabilities, parts.to(probabilities.dtype))


def smooth_synthesis(synthetic: torch.Tensor, sigma: float) -> torch.Tensor:
    """S blurred by a Gaussian of ``sigma`` pixels (of S's own grid) before the decoder; sigma 0
    returns S unchanged. Not in the paper (``decoder_blur``): S = sum_k V_k G_k is linear in V, so
    this equals decoding the blurred maps, which leaves the decoder the parts' coarse layout only;
    the detail of each part's shape then has to come from G_k, and a swap of G_k carries it."""
    if sigma <= 0:
        return synthetic
    radius = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-radius, radius + 1, device=synthetic.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(synthetic.dtype)
    c = synthetic.shape[1]
    out = F.pad(synthetic, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@dataclass
class TrainOutput:
    """Everything the losses need from one training forward pass, per view (index 0 and 1)."""

    recon: tuple[torch.Tensor, ...]    # I'^(n): reconstructions, normalised like the input
    targets: tuple[torch.Tensor, ...]  # I^(n) at the PartFormer's size, normalised
    maps: tuple[torch.Tensor, ...]     # V used to reconstruct view n (V^{2->1}, V^{1->2})
    parts: tuple[torch.Tensor, ...]    # G^(n)
    swapped: torch.Tensor | None = None  # view 1 decoded with another image's foreground G (lambda_swap)
    donor: torch.Tensor | None = None    # for each image of the batch, the image that gave those G


@dataclass
class Prediction:
    """Output of :meth:`PartDiscModel.predict` for B images.

    masks: (B, K+1, H, W) soft part maps at the input images' size (last index = background);
    labels: (B, H, W) argmax part ids; attention: (B, K+1, h, w) each part token's attention to
    the image patches, averaged over heads and layers; parts: (B, K+1, C), G. When the images
    differ in size, ``masks`` and ``labels`` are lists of per-image tensors.
    """

    masks: Any
    labels: Any
    attention: torch.Tensor | None
    parts: torch.Tensor


@dataclass
class SwapResult:
    """Images (B, 3, S, S) in [0, 1]: both inputs reconstructed with the chosen parts exchanged,
    and their plain reconstructions."""

    swapped_a: torch.Tensor
    swapped_b: torch.Tensor
    recon_a: torch.Tensor
    recon_b: torch.Tensor


class PartDiscModel(nn.Module):
    """Feature-map encoder + PartFormer + decoder (+ the ArcFace vectors W of eq. 8)."""

    def __init__(self, cfg: PartDiscConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or PartDiscConfig()
        self.encoder = build_encoder(cfg)
        self.partformer = PartFormer(cfg)
        self.decoder = Decoder(cfg)
        self.arcface = ArcFace(cfg)
        init_xavier(self.partformer)
        init_xavier(self.decoder)
        nn.init.normal_(self.partformer.part_tokens, std=0.02)
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)
        self.landmarks = None
        """Landmarks from the parts (``keypoints.PartLandmarks``), when the checkpoint has them."""
        self.part_names = None
        """One fixed name per part (``partnames.PartNames``), when the checkpoint has them."""

    # --- helpers ---------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def num_parts(self) -> int:
        return self.cfg.num_parts

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() * self.std + self.mean).clamp(0.0, 1.0)

    @staticmethod
    def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
        if x.shape[-1] == size and x.shape[-2] == size:
            return x
        if x.dtype == torch.bfloat16 and x.device.type == "cpu":  # no bf16 antialias kernel on the CPU
            return F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False,
                                 antialias=True).to(x.dtype)
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)

    @staticmethod
    def _conv_layout(x: torch.Tensor) -> torch.Tensor:
        """Channels-last on the CPU, where oneDNN's convolutions and pooling run faster in NHWC (the
        same maths); on a GPU the layout is left to the caller (``model.to(memory_format=...)``)."""
        return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """F: pixel representations (B, C, h, w) of normalised images at any size."""
        return self.encoder(self._conv_layout(self._resize(images, self.cfg.encoder_image_size)))

    def part_representations(self, images: torch.Tensor, class_ids: torch.Tensor | None = None,
                             return_attention: bool = False):
        """G (B, K+1, C), and on request the attention maps, of normalised images."""
        return self.partformer(self._resize(images, self.cfg.image_size), class_ids, return_attention)

    def decode(self, synthetic: torch.Tensor) -> torch.Tensor:
        """The decoder applied to S (blurred first when ``decoder_blur`` > 0), at ``image_size``."""
        synthetic = smooth_synthesis(synthetic, self.cfg.decoder_blur)
        out = self.decoder(self._conv_layout(synthetic))
        return self._resize(out, self.cfg.image_size)

    # --- training --------------------------------------------------------------------------------
    def forward(self, view1: torch.Tensor, view2: torch.Tensor, class_ids: torch.Tensor | None = None,
                feature_views: tuple[torch.Tensor, torch.Tensor] | None = None) -> TrainOutput:
        """Two-stream training pass on two views in [0, 1], (B, 3, S, S) with S = cfg.input_size.

        ``feature_views``: optional appearance-changed copies of the two views for the encoder F
        alone (see :func:`partdisc_core.augment.appearance_jitter`); G and the targets use the views."""
        x = self.normalize(torch.cat([view1, view2]))
        ids = None if class_ids is None else torch.cat([class_ids, class_ids])
        fx = x if feature_views is None else self.normalize(torch.cat(list(feature_views)))
        feats = self.features(fx)                     # F^(1), F^(2) in one batch
        parts, _ = self.part_representations(x, ids)  # G^(1), G^(2)
        b = view1.shape[0]
        if self.cfg.exchange:
            parts_used = torch.cat([parts[b:], parts[:b]])  # view 1 gets G^(2), view 2 gets G^(1)
        else:
            parts_used = parts
        maps = part_probabilities(parts_used, feats, self.cfg.tau)
        recon = self.decode(synthesize(maps, parts_used))
        targets = self._resize(x, self.cfg.image_size)
        swapped, donor = self._swapped_view(feats[:b], parts_used[:b]) if self.cfg.lambda_swap > 0 else (None, None)
        return TrainOutput(recon=recon.split(b), targets=targets.split(b), maps=maps.split(b), parts=parts.split(b),
                           swapped=swapped, donor=donor)

    def _swapped_view(self, features: torch.Tensor, parts: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """View 1 of image i decoded with the foreground G of image i - 1 (its own background G), as a
        swap of every part does at test time (Fig. 11). F and V are detached; G is too unless
        ``swap_trains_parts`` (then it learns through S only). Returns (the decoded images, the donor
        index of each image)."""
        b, k = parts.shape[0], self.cfg.num_parts
        if b < 2:
            return None, None
        donor = torch.roll(torch.arange(b, device=parts.device), 1)
        own = parts if self.cfg.swap_trains_parts else parts.detach()
        mixed = torch.cat([own[donor, :k], own[:, k:]], dim=1)
        maps = part_probabilities(mixed.detach(), features.detach(), self.cfg.tau)
        return self.decode(synthesize(maps, mixed)), donor

    # --- inference -------------------------------------------------------------------------------
    def _prepare(self, images: Any) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        tensors = to_image_tensors(images)
        sizes = [tuple(t.shape[-2:]) for t in tensors]
        size = self.cfg.input_size
        batch = torch.stack([self._resize(t.unsqueeze(0), size)[0] for t in tensors])
        return batch.to(self.device), sizes

    inference_dtype: torch.dtype | None = None
    """Precision of predict, part_maps, encode, render, reconstruct and swap_parts: None (default) =
    bf16 autocast on CUDA, float32 elsewhere; or set torch.float32 / torch.bfloat16 / torch.float16.
    On a CPU with AVX512-BF16 or AMX, bf16 makes swaps and the DINO variant much faster for part maps
    that agree closely with float32 (figures in benchmarks/README.md); it stays opt-in on the CPU."""

    def _autocast(self):
        dtype = self.inference_dtype
        if dtype is None:
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"inference_dtype must be None, torch.float32, torch.bfloat16 or torch.float16, got {dtype}")
        enabled = dtype != torch.float32
        return torch.autocast(device_type=self.device.type, dtype=dtype if enabled else torch.bfloat16,
                              enabled=enabled)

    @torch.no_grad()
    def part_maps(self, x: torch.Tensor, class_ids: torch.Tensor | None = None,
                  return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The tensor path of :meth:`predict`: a normalised batch (B, 3, S, S) on the model's device ->
        V (B, K+1, s, s) in float32 at ``image_size`` (at F's own size when ``interpolate_features`` is
        off), the attention maps (B, K+1, h, w) or None, and G (B, K+1, C).

        Upsampling F bilinearly before the dot products <G_k, F_ij> (§3.4) equals upsampling the K+1
        logit maps after them (both steps are linear), so only K+1 channels are resized, not C.
        """
        with self._autocast():
            feats = self.features(x)
            parts, attn = self.part_representations(x, class_ids, return_attention)
        feats, parts = feats.float(), parts.float()
        return self.maps_from_encoding(feats, parts), (attn.float() if attn is not None else None), parts

    def maps_from_encoding(self, features: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        """V at test time (§3.4) from F (B, C, h, w) and G (B, K+1, C) already computed (float32):
        (B, K+1, s, s) at ``image_size`` (F's own size when ``interpolate_features`` is off)."""
        logits = torch.einsum("bkc,bchw->bkhw", parts, features)
        size = self.cfg.image_size
        if self.cfg.interpolate_features and tuple(logits.shape[-2:]) != (size, size):
            logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
        return torch.softmax(self.cfg.tau * logits, dim=1)

    @torch.no_grad()
    def predict(self, images: Any, class_ids: torch.Tensor | Sequence[int] | None = None,
                return_attention: bool = True, output_size: str | int | None = "input",
                batch_size: int = 32) -> Prediction:
        """Part maps of one or more images (paths, PIL images, uint8/float arrays or tensors; any
        size; RGB, grayscale or RGBA). ``output_size``: "input" (each image's own size), an int
        (square maps of that side) or None (the size the maps are computed at: ``image_size``, or F's
        own size when ``interpolate_features`` is off)."""
        if self.training:
            raise RuntimeError("call model.eval() before predict()")
        batch, sizes = self._prepare(images)
        if class_ids is not None:
            class_ids = torch.as_tensor(class_ids, device=self.device).reshape(-1)
        masks, attns, parts_all = [], [], []
        for start in range(0, batch.shape[0], batch_size):
            x = self.normalize(batch[start:start + batch_size])
            ids = None if class_ids is None else class_ids[start:start + batch_size]
            maps, attn, parts = self.part_maps(x, ids, return_attention)
            masks.append(maps)
            attns.append(attn)
            parts_all.append(parts)
        join = lambda chunks: chunks[0] if len(chunks) == 1 else torch.cat(chunks)  # noqa: E731
        maps = join(masks)
        attention = join(attns) if return_attention else None
        if output_size is None:
            out_sizes = [None] * len(sizes)
        elif output_size == "input":
            out_sizes = sizes
        else:
            out_sizes = [(int(output_size), int(output_size))] * len(sizes)
        parts = join(parts_all)
        # labels: max(...).indices picks the first maximum like argmax, and is several times faster
        # than argmax over the leading (parts) dimension on the CPU.
        if all(s is None or tuple(s) == tuple(maps.shape[-2:]) for s in out_sizes):
            return Prediction(maps, maps.max(dim=1).indices, attention, parts)
        per_image = [self._resize_maps(m, s) for m, s in zip(maps, out_sizes)]
        labels = [m.max(dim=0).indices for m in per_image]
        if len({tuple(m.shape) for m in per_image}) == 1:
            return Prediction(torch.stack(per_image), torch.stack(labels), attention, parts)
        return Prediction(per_image, labels, attention, parts)

    @staticmethod
    def _resize_maps(maps: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
        if size is None or tuple(maps.shape[-2:]) == tuple(size):
            return maps
        out = F.interpolate(maps.unsqueeze(0), size=size, mode="bilinear", align_corners=False)[0]
        return out / out.sum(dim=0, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def encode(self, images: Any, class_ids=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(F, G) of images given in any accepted form; F at the feature map's own size."""
        batch, _ = self._prepare(images)
        ids = None if class_ids is None else torch.as_tensor(class_ids, device=self.device).reshape(-1)
        return self._encode_batch(batch, ids)

    def _encode_batch(self, batch: torch.Tensor, ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.normalize(batch)
        with self._autocast():
            feats = self.features(x)
            parts, _ = self.part_representations(x, ids)
        return feats.float().contiguous(), parts.float()

    @torch.no_grad()
    def render(self, features: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        """Decode F and G into an image in [0, 1]: the decoder applied to S = sum_k V_k G_k."""
        with self._autocast():
            out = self.decode(synthesize(part_probabilities(parts, features, self.cfg.tau), parts))
        return self.denormalize(out).contiguous()

    @torch.no_grad()
    def reconstruct(self, images: Any, class_ids=None) -> torch.Tensor:
        """Plain reconstructions (B, 3, S, S) in [0, 1] from each image's own F and G."""
        feats, parts = self.encode(images, class_ids)
        return self.render(feats, parts)

    def _encode_pair(self, image_a: Any, image_b: Any, parts: Sequence[int] | None, class_ids=None):
        """F and G of both sides, and a (1, K+1, 1) mask of the chosen foreground parts (numbers
        1..K; None: all of them), for :meth:`swap_parts` and :meth:`morph_parts`."""
        k = self.cfg.num_parts
        chosen = list(range(1, k + 1)) if parts is None else [int(p) for p in parts]
        bad = [p for p in chosen if not 1 <= p <= k]
        if bad:
            raise ValueError(f"part numbers must be in 1..{k}, got {bad}")
        batch_a, _ = self._prepare(image_a)
        batch_b, _ = self._prepare(image_b)
        n = batch_a.shape[0]
        if batch_b.shape[0] != n:
            raise ValueError("image_a and image_b must hold as many images")
        ids = None if class_ids is None else torch.as_tensor(class_ids, device=self.device).reshape(-1)
        if self.training:  # BatchNorm uses batch statistics: encode each side on its own, as always
            (feats_a, parts_a), (feats_b, parts_b) = self._encode_batch(batch_a, ids), self._encode_batch(batch_b, ids)
        else:
            # a and b in one batch: one encoder and one PartFormer pass instead of two (in eval mode
            # every image is processed independently, so the result equals two passes).
            feats, parts_ab = self._encode_batch(torch.cat([batch_a, batch_b]), None if ids is None else ids.repeat(2))
            feats_a, feats_b = feats.split(n)
            parts_a, parts_b = parts_ab.split(n)
        mask = torch.zeros(k + 1, dtype=torch.bool, device=parts_a.device)
        mask[[p - 1 for p in chosen]] = True
        return feats_a, feats_b, parts_a, parts_b, mask.view(1, -1, 1)

    @torch.no_grad()
    def swap_parts(self, image_a: Any, image_b: Any, parts: Sequence[int] | None = None,
                   class_ids=None) -> SwapResult:
        """Reconstruct both images with the listed foreground parts' representations G_k taken from
        the other image (Fig. 11). ``parts`` are part numbers 1..K as shown in legends (None: all
        foreground parts); the background representation is never exchanged."""
        feats_a, feats_b, parts_a, parts_b, mask = self._encode_pair(image_a, image_b, parts, class_ids)
        swapped_a = torch.where(mask, parts_b, parts_a)
        swapped_b = torch.where(mask, parts_a, parts_b)
        both = self.render(torch.cat([feats_a, feats_b, feats_a, feats_b]),
                           torch.cat([swapped_a, swapped_b, parts_a, parts_b]))
        sa, sb, ra, rb = both.split(parts_a.shape[0])
        return SwapResult(sa, sb, ra, rb)

    @torch.no_grad()
    def morph_parts(self, image_a: Any, image_b: Any, parts: Sequence[int] | None = None,
                    t: float | Sequence[float] = 0.5, class_ids=None) -> torch.Tensor:
        """Reconstruct image A with the listed parts' representations moved from A's towards B's:
        G_k = (1 - t) G_k^A + t G_k^B for the chosen k (``torch.lerp``, exact at both ends), the
        other parts and F from A. t = 0 gives A's plain reconstruction, t = 1 exactly
        :meth:`swap_parts`' ``swapped_a``. ``t``: one value -> (B, 3, S, S); a sequence of T values
        -> (B, T, 3, S, S), all rendered in one decoder batch. Values outside [0, 1] extrapolate."""
        feats_a, _, parts_a, parts_b, mask = self._encode_pair(image_a, image_b, parts, class_ids)
        ts = torch.as_tensor(t, dtype=parts_a.dtype, device=parts_a.device)
        if ts.ndim > 1 or not torch.isfinite(ts).all():
            raise ValueError("t must be a finite number or a 1-D sequence of them")
        steps = ts.reshape(-1, 1, 1, 1)                               # (T, 1, 1, 1)
        weight = torch.where(mask, steps, torch.zeros_like(steps))    # (T, 1, K+1, 1): 0 on unchosen parts
        mixed = torch.lerp(parts_a.unsqueeze(0), parts_b.unsqueeze(0), weight)  # (T, B, K+1, C)
        n_t, n = mixed.shape[:2]
        feats = feats_a.unsqueeze(0).expand(n_t, *feats_a.shape).reshape(n_t * n, *feats_a.shape[1:])
        out = self.render(feats, mixed.reshape(n_t * n, *mixed.shape[2:]))
        out = out.view(n_t, n, *out.shape[1:]).transpose(0, 1)      # (B, T, 3, S, S)
        return out[:, 0] if ts.ndim == 0 else out


__all__ = ["PartDiscModel", "Prediction", "SwapResult", "TrainOutput", "cpu_has_native_bf16", "part_probabilities",
           "smooth_synthesis", "synthesize"]
