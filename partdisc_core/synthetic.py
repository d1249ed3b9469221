"""Procedural synthetic faces with exact part labels and 5 landmarks.

Every image is drawn from a handful of analytic shapes (ellipses, arcs, a
triangle) placed in the face's local frame and mapped to pixels with a random
pose (centre, scale, in-plane rotation, small yaw-like shift of the inner
features).  Parts are painted in z-order and the label map is written by the
same masks, so labels match exactly what was drawn.  Generation is vectorised
over the batch (torch ops on coordinate grids), fast enough to stream batches.

Pixel convention: pixel (row i, column j) has centre (x=j, y=i); landmarks are
(x, y) in those units, so ``round(landmark)`` indexes the nearest pixel.

Random parameters for a batch are one ``(B, P)`` uniform matrix (row i belongs
to sample i) plus a separately seeded noise tensor, so
``generate(n, s)`` equals the first n samples of ``generate(m, s)`` for m >= n.
"""
from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PART_NAMES: tuple[str, ...] = ("background", "hair", "skin", "left_eye", "right_eye",
                               "left_brow", "right_brow", "nose", "mouth", "clothes")
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")
BACKGROUND, HAIR, SKIN, LEFT_EYE, RIGHT_EYE, LEFT_BROW, RIGHT_BROW, NOSE, MOUTH, CLOTHES = range(10)
CSV_HEADER = ("image", "lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
              "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y")

_N_PARAMS = 128  # uniform numbers reserved per sample (only a prefix is used)
_NOISE_SALT = 0x5DEECE66D
_SKIN_TONES = torch.tensor([[0.97, 0.83, 0.72], [0.84, 0.62, 0.47], [0.55, 0.37, 0.25],
                            [0.34, 0.22, 0.15]])
_HAIR_COLOURS = torch.tensor([[0.07, 0.06, 0.05], [0.22, 0.13, 0.07], [0.42, 0.27, 0.13],
                              [0.86, 0.72, 0.42], [0.62, 0.26, 0.10], [0.72, 0.72, 0.74],
                              [0.30, 0.20, 0.15]])
# colour ids 10.. are sub-parts (iris, pupil, glint, lip line) mapped to part labels
_ID_TO_LABEL = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 4, 3, 4, 3, 4, 8])
_IRIS_COLOURS = torch.tensor([[0.30, 0.18, 0.08], [0.20, 0.40, 0.70], [0.25, 0.50, 0.30],
                              [0.10, 0.08, 0.06]])


@dataclass
class SyntheticBatch:
    """A batch of synthetic faces.

    images: (B, 3, H, W) float32 in [0, 1]; labels: (B, H, W) int64 ids into
    ``PART_NAMES``; landmarks: (B, 5, 2) float32 (x, y) pixels, ordered as
    ``LANDMARK_NAMES``.
    """
    images: torch.Tensor
    labels: torch.Tensor
    landmarks: torch.Tensor


class _Draws:
    """Hands out consecutive columns of a (B, P) uniform matrix, rescaled."""

    def __init__(self, u: torch.Tensor):
        self.u, self.i = u, 0

    def __call__(self, lo: float, hi: float, n: int | None = None) -> torch.Tensor:
        k = 1 if n is None else n
        if self.i + k > self.u.shape[1]:
            raise RuntimeError("synthetic generator ran out of reserved random parameters")
        out = lo + (hi - lo) * self.u[:, self.i:self.i + k]
        self.i += k
        return out.reshape(-1, 1, 1) if n is None else out

    def flag(self, prob: float) -> torch.Tensor:
        """A (B, 1, 1) float that is 1.0 with probability ``prob``, else 0.0."""
        return (self(0.0, 1.0) < prob).float()

    def pick(self, palette: torch.Tensor) -> torch.Tensor:
        """A (B, 3) colour chosen uniformly from a (K, 3) palette."""
        idx = (self(0.0, 1.0).flatten() * len(palette)).long().clamp_max(len(palette) - 1)
        return palette.to(self.u.device)[idx]


def _rho2(u, v, cu, cv, au, av):
    """Squared normalised ellipse radius (< 1 inside an axis-aligned ellipse)."""
    return (u - cu).div_(au).square_().add_((v - cv).div_(av).square_())


def _pos(x: torch.Tensor) -> torch.Tensor:
    """Float mask of ``x > 0`` (arithmetic: boolean ops / where are slow on CPU)."""
    return torch.sign(x).clamp_(min=0.0)


def _inside(rho2: torch.Tensor) -> torch.Tensor:
    """Float mask of ``rho2 < 1``."""
    return torch.sign(1.0 - rho2).clamp_(min=0.0)


class SyntheticFaces:
    """Seeded generator of cartoon faces with part labels and landmarks.

    size: image side in pixels; scale_range: face width as a fraction of the
    image width; max_rotation: maximum in-plane rotation in degrees.
    """

    def __init__(self, size: int = 128, scale_range=(0.35, 0.65), max_rotation: float = 25.0,
                 device="cpu"):
        self.size = int(size)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.max_rotation = float(max_rotation)
        self.device = torch.device(device)

    def sample(self, index: int) -> SyntheticBatch:
        """One image, deterministic in ``index`` (same as ``generate(1, seed=index)``)."""
        return self.generate(1, seed=index)

    def generate(self, batch_size: int, seed: int) -> SyntheticBatch:
        """Draw ``batch_size`` faces; deterministic in (seed, settings)."""
        B, S, dev = int(batch_size), self.size, self.device
        g = torch.Generator().manual_seed(int(seed))
        p = _Draws(torch.rand(B, _N_PARAMS, generator=g).to(dev))
        gn = torch.Generator().manual_seed(int(seed) ^ _NOISE_SALT)
        noise = torch.rand(B, 1, S, S, generator=gn).to(dev) - 0.5   # luminance noise

        ys, xs = torch.meshgrid(torch.arange(S, dtype=torch.float32, device=dev),
                                torch.arange(S, dtype=torch.float32, device=dev), indexing="ij")
        # --- pose: local frame (u, v) in units of the face half-width `a` --------
        a = p(*self.scale_range) * S / 2
        r = p(1.15, 1.38)                                   # face height / width
        th = p(-1.0, 1.0) * math.radians(self.max_rotation)
        cx = S * (0.5 + p(-0.07, 0.07))
        cy = S * 0.5 - 0.12 * a * r + S * p(-0.05, 0.05)
        c, s = torch.cos(th), torch.sin(th)
        dx, dy = xs - cx, ys - cy
        u, v = (dx * c + dy * s) / a, (-dx * s + dy * c) / a  # (B, H, W)
        yaw = p(-0.12, 0.12)                                # inner-feature shift

        # Painting writes a float colour-id map and a shading map with arithmetic
        # blends (much faster than torch.where on CPU); colours are looked up last.
        ids = torch.zeros(B, S, S, device=dev)
        shade = torch.ones(B, S, S, device=dev)

        def paint(mask, cid, sh=None):  # lerp with a 0/1 weight is an exact overwrite
            ids.lerp_(torch.full((), float(cid), device=dev), mask)
            if sh is not None:
                shade.lerp_(sh, mask)

        # --- colours and lighting ------------------------------------------------
        t = p(0.0, 1.0).reshape(B) ** 1.3 * (len(_SKIN_TONES) - 1)   # lighter tones a bit likelier
        i0 = t.floor().long().clamp_max(len(_SKIN_TONES) - 2)
        tones, w = _SKIN_TONES.to(dev), (t - i0).reshape(B, 1)
        skin = (1 - w) * tones[i0] + w * tones[i0 + 1] + p(-0.03, 0.03, 3)          # (B, 3)
        hair = torch.where(p(0, 1, 1) < 0.1, p(0.05, 0.9, 3), p.pick(_HAIR_COLOURS))  # 10%: dyed
        hair = hair + p(-0.04, 0.04, 3)
        la = p(0.0, 2 * math.pi)
        light = 1.0 + p(0.04, 0.2) * (torch.cos(la) * u + torch.sin(la) * v / r)
        strands = 1.0 + 0.08 * torch.sin(p(18.0, 40.0) * (u + 0.3 * v) + p(0.0, 6.3))

        # --- long hair behind the head, neck, clothes ---------------------------------
        long_hair = (p.flag(0.4) * _inside(_rho2(u, v, 0, 0.1, p(1.2, 1.45), r + 0.55))
                     * _pos(p(0.6, 1.6) - v))
        paint(long_hair, 1, 0.8 * strands * light)
        paint(_pos(p(0.38, 0.55) - u.abs()) * _pos(v), 2, 0.8 * light)
        v_sh = r + p(0.08, 0.45)
        cloth = p(0.05, 0.95, 3)
        cloth_tex = 1.0 + p.flag(0.4) * 0.12 * torch.sin(p(8.0, 20.0) * v)
        clothes = (p.flag(0.9) * _pos(p(1.6, 2.4) - u.abs())
                   * _pos(v - v_sh - p(0.1, 0.3) * u ** 2 + 1e-6))
        paint(clothes, 9, cloth_tex * light)

        # --- ears, face, hair cap (volume ellipse above a fringe / side hairline) -------
        ey = p(-0.2, -0.05)
        ears = p.flag(0.75) * torch.maximum(_inside(_rho2(u, v, -0.98, ey + 0.12, 0.17, 0.28)),
                                            _inside(_rho2(u, v, 0.98, ey + 0.12, 0.17, 0.28)))
        paint(ears, 2, 0.9 * light)
        face_r2 = _rho2(u, v, 0.0, 0.0, 1.0, r)
        paint(_inside(face_r2), 2, light * (1 - 0.18 * face_r2 ** 2))
        vol = p(0.03, 0.22)
        sides = p(0.0, 12.0) * p.flag(0.5)
        hairline = (-p(0.72, 1.0) + sides * (u.abs() - 0.62).clamp_min(0) ** 2
                    + p(0.0, 0.08) * torch.sin(p(10.0, 25.0) * u).abs())
        cap = p.flag(0.92) * _inside(_rho2(u, v, 0.0, -vol, 1.04 + vol, r + vol)) * _pos(hairline - v)
        paint(cap, 1, strands * light)

        # --- eyes and brows (inner features shifted by yaw) -----------------------------
        ex, ew, eh = p(0.34, 0.46), p(0.16, 0.22), p(0.08, 0.11)
        by, bw, bt, arch = ey - p(0.2, 0.27), p(0.19, 0.26), p(0.04, 0.065), p(0.02, 0.08)
        btilt, gaze = p(-0.15, 0.15), p(-0.3, 0.3) * ew
        iris_r = eh * p(0.75, 0.95)
        lm_u, lm_v = [], []
        for k, sgn in enumerate((-1.0, 1.0)):               # k=0: image-left
            cu = sgn * ex + yaw
            ewi = ew * (1 - 1.5 * sgn * yaw)                # the far eye looks narrower
            tb = (u - cu) / bw
            centre = by - arch * (1 - tb ** 2) + btilt * sgn * (u - cu)
            paint(_pos(1 - tb.abs()) * _pos(bt * (1 - 0.5 * tb ** 2) - (v - centre).abs()), 5 + k)
            paint(_inside(_rho2(u, v, cu, ey, ewi, eh)), 3 + k)
            iu = cu + gaze
            ir2 = _rho2(u, v, iu, ey, iris_r, iris_r)
            paint(_inside(ir2), 10 + k)
            paint(_inside(ir2 / 0.3), 12 + k)
            paint(_inside(_rho2(u, v, iu + 0.35 * iris_r, ey - 0.35 * iris_r, 0.25 * iris_r,
                                0.25 * iris_r)), 14 + k)
            lm_u.append(iu)
            lm_v.append(ey)

        # --- nose (triangle + tip bulb) and mouth (bent ellipse) ---------------------------
        nu, n_top, n_tip, n_w = 1.3 * yaw, p(-0.12, 0.0), p(0.22, 0.34), p(0.09, 0.15)
        frac = (v - n_top) / (n_tip - n_top)
        tri = _pos(frac + 1e-6) * _pos(1 - frac + 1e-6) * _pos(n_w * frac - (u - nu).abs() + 1e-6)
        bulb = _inside(_rho2(u, v, nu, n_tip, 1.2 * n_w, 0.75 * n_w))
        paint(torch.maximum(tri, bulb), 7, (0.84 - 0.12 * _pos(-(u - nu) * torch.cos(la))) * light)
        mu, my = 0.9 * yaw, p(0.58, 0.72)
        mw, mh, curve = p(0.24, 0.38), p(0.07, 0.14), p(-0.08, 0.04)
        tm = (u - mu) / mw
        vm = v - my - curve * tm ** 2
        mouth = _inside(tm.abs() ** 3 + (vm / mh) ** 2)            # corners at tm = +-1
        paint(mouth, 8)
        paint(mouth * _pos(0.015 + 0.15 * mh * p.flag(0.3) - vm.abs()), 16)
        lm_u += [nu, mu - mw, mu + mw]
        lm_v += [n_tip, my + curve, my + curve]

        # --- colours by id, background, noise ------------------------------------------------
        lip = 0.7 * (torch.tensor([0.78, 0.28, 0.32], device=dev) + p(-0.06, 0.06, 3)) + 0.3 * skin
        ones = torch.ones_like(skin)
        sclera = 0.95 * ones + p(-0.04, 0.0, 1)
        iris = p.pick(_IRIS_COLOURS)
        brow = 0.55 * hair + 0.03
        pal = torch.stack([0 * ones, hair, skin, sclera, sclera, brow, brow,
                           skin * torch.tensor([1.0, 0.86, 0.82], device=dev), lip, cloth,
                           iris, iris, 0.03 * ones, 0.03 * ones, ones, ones, 0.3 * lip], 2)  # (B,3,K)
        idx = ids.round().long()
        fg = torch.gather(pal, 2, idx.view(B, 1, S * S).expand(B, 3, S * S)).view(B, 3, S, S)
        labels = torch.gather(_ID_TO_LABEL.to(dev).expand(B, -1), 1, idx.view(B, -1)).view(B, S, S)
        img = fg * shade[:, None] + self._background(p, B) * _pos(0.5 - ids)[:, None]
        img = (img + p(0.02, 0.07)[:, None] * noise).clamp_(0.0, 1.0)

        lu = torch.cat([torch.broadcast_to(q, (B, 1, 1)).reshape(B, 1) for q in lm_u], 1)
        lv = torch.cat([torch.broadcast_to(q, (B, 1, 1)).reshape(B, 1) for q in lm_v], 1)
        a2, c2, s2 = a.reshape(B, 1), c.reshape(B, 1), s.reshape(B, 1)
        lx = cx.reshape(B, 1) + a2 * (lu * c2 - lv * s2)
        ly = cy.reshape(B, 1) + a2 * (lu * s2 + lv * c2)
        return SyntheticBatch(img.contiguous(), labels, torch.stack([lx, ly], -1).float())

    def _background(self, p: "_Draws", B: int) -> torch.Tensor:
        """Smooth textured background (colour, gradient, stripes, blobs), (B, 3, S, S).

        Computed on a 4x coarser grid and upsampled bilinearly (it is low-frequency)
        as ``M @ img @ M.T`` with an interpolation matrix M (faster than interpolate).
        """
        S, dev = self.size, self.device
        n = max(S // 4, 2)
        g1 = (torch.arange(n, dtype=torch.float32, device=dev) + 0.5) / n - 0.5
        yn, xn = torch.meshgrid(g1, g1, indexing="ij")
        xn, yn = xn[None, None], yn[None, None]                                   # (1,1,n,n)
        grad = 1.0 + p(-0.5, 0.5)[:, None] * xn + p(-0.5, 0.5)[:, None] * yn
        img = p(0.05, 0.95, 3)[..., None, None] * grad
        sgn = torch.where(p(0, 1, 2) < 0.5, -1.0, 1.0)
        freq = (p(1.0, 6.0, 2) * 2 * math.pi * sgn)[..., None, None]
        ang, phase = p(0, math.pi, 2)[..., None, None], p(0, 6.3, 2)[..., None, None]
        waves = torch.sin(freq * (torch.cos(ang) * xn + torch.sin(ang) * yn) + phase)  # (B,2,n,n)
        img = img + torch.einsum("bkhw,bkc->bchw", waves, p(-0.08, 0.08, 6).reshape(B, 2, 3))
        bc, bs = p(-0.7, 0.7, 6).reshape(B, 3, 2), p(0.08, 0.3, 3)[..., None, None]
        blobs = torch.exp(-((xn - bc[..., 0, None, None]) ** 2 + (yn - bc[..., 1, None, None]) ** 2)
                          / (2 * bs ** 2))                                         # (B,3,n,n)
        img = img + torch.einsum("bkhw,bkc->bchw", blobs, p(-0.25, 0.25, 9).reshape(B, 3, 3))
        src = ((torch.arange(S, dtype=torch.float32, device=dev) + 0.5) * n / S - 0.5).clamp(0, n - 1)
        i0 = src.floor().long()
        m = torch.zeros(S, n, device=dev)
        rows = torch.arange(S, device=dev)
        m[rows, i0] += 1 - (src - i0)
        m[rows, (i0 + 1).clamp_max(n - 1)] += src - i0
        return m @ img @ m.T


def save_landmarks_folder(out_dir, count: int, size: int = 128, seed: int = 0, **kwargs) -> Path:
    """Write ``count`` faces as a landmarks folder; image i is ``generate(1, seed + i)``.

    Layout: ``000000.png`` ... RGB images, ``landmarks.csv`` (header
    ``CSV_HEADER``, image path relative to the folder, float pixel coords) and
    ``labels/000000.png`` uint8 part-id maps (mode "L").  Extra keyword
    arguments go to ``SyntheticFaces``.  Returns ``out_dir`` as a Path.
    """
    from PIL import Image

    out = Path(out_dir)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    gen = SyntheticFaces(size=size, **kwargs)
    with open(out / "landmarks.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        for i in range(int(count)):
            b = gen.generate(1, seed=seed + i)
            name = f"{i:06d}.png"
            rgb = (b.images[0].permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
            Image.fromarray(rgb, "RGB").save(out / name)
            Image.fromarray(b.labels[0].cpu().numpy().astype(np.uint8), "L").save(out / "labels" / name)
            writer.writerow([name] + [f"{x:.4f}" for x in b.landmarks[0].reshape(-1).tolist()])
    return out


def _main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Write a synthetic-face landmarks folder.")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(save_landmarks_folder(args.out, args.count, size=args.size, seed=args.seed))


if __name__ == "__main__":
    _main()
