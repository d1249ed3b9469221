"""Visualisation helpers for part maps and attention maps, and the demo's picture layouts.

Everything here works on numpy arrays (torch tensors are accepted and
converted with ``.detach().cpu().numpy()``); torch is never imported. Images
are converted by :func:`partdisc_core.inputs.to_rgb` (values clipped) and
resized by :func:`partdisc_core.inputs.resize`.

Index convention (matches the model): channels ``0..K-1`` are the K
foreground parts and channel ``K`` is the background.  ``part_colors(K)``
returns colours in that same order, so ``part_colors(K)[labels]`` colours a
hard label map directly.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .inputs import resize, resize_maps, to_rgb

__all__ = [
    "PALETTE",
    "BACKGROUND_COLOR",
    "part_colors",
    "part_names",
    "label_to_rgb",
    "overlay_masks",
    "legend_image",
    "map_grid",
    "side_by_side",
    "stack_rows",
    "titled_grid",
    "fit_text",
    "with_legend",
    "draw_points",
    "pad_top",
    "save_png",
    "to_numpy",
]


def _hex(h: str) -> tuple:
    return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))


# Okabe-Ito colours first (safe for the usual K <= 7), then colours picked
# greedily from Paul Tol's / other qualitative palettes to maximise the
# minimum CIELAB distance to everything already chosen (min deltaE ~ 26).
PALETTE: np.ndarray = np.array(
    [
        _hex(h)
        for h in (
            "E69F00",  # orange
            "56B4E9",  # sky blue
            "009E73",  # bluish green
            "F0E442",  # yellow
            "0072B2",  # blue
            "D55E00",  # vermillion
            "CC79A7",  # reddish purple
            "332288",  # indigo
            "EE3377",  # magenta
            "B2DF8A",  # light green
            "BBBBBB",  # light grey
            "8B4513",  # brown
            "EE8866",  # salmon
            "999933",  # olive
            "9C755F",  # taupe
            "882255",  # wine
        )
    ],
    dtype=np.uint8,
)
PALETTE.setflags(write=False)

BACKGROUND_COLOR: np.ndarray = np.array([64, 64, 64], dtype=np.uint8)
BACKGROUND_COLOR.setflags(write=False)


# --------------------------------------------------------------------------
# small utilities
# --------------------------------------------------------------------------
def to_numpy(x) -> np.ndarray:
    """Convert a torch tensor (or anything array-like) to a numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_image_uint8(image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from any image form (see :func:`partdisc_core.inputs.to_rgb`); float
    inputs are taken to be in [0, 1] and clipped."""
    return to_rgb(image if isinstance(image, Image.Image) else to_numpy(image), "uint8", clip=True)


def _font(size: int):
    size = max(6, int(size))
    try:  # Pillow >= 10.1 can give a scalable default font
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - old Pillow
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple:
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    return x1 - x0, y1 - y0, x0, y0


def fit_text(draw: ImageDraw.ImageDraw, text: str, width: int, size: int, min_size: int = 8) -> tuple:
    """``text`` made to fit ``width`` pixels: the font shrunk from ``size`` down to ``min_size``
    first, then the text cut short with an ellipsis. Returns (text, font, (w, h, x0, y0)) with the
    drawn text's size and offset as :func:`_text_size` gives them."""
    size, min_size = max(6, int(size)), max(6, min(int(min_size), int(size)))
    font = _font(size)
    box = _text_size(draw, text, font)
    while box[0] > width and size > min_size:
        size -= 1
        font = _font(size)
        box = _text_size(draw, text, font)
    cut = text
    while box[0] > width and cut:
        cut = cut[:-1].rstrip(" ,.;:(")
        text = cut + "\u2026"
        box = _text_size(draw, text, font)
    return text, font, box


# --------------------------------------------------------------------------
# colours and labels
# --------------------------------------------------------------------------
def part_colors(num_parts: int) -> np.ndarray:
    """(num_parts + 1, 3) uint8: K foreground colours, then the background."""
    num_parts = int(num_parts)
    if num_parts < 0:
        raise ValueError("num_parts must be >= 0")
    if num_parts <= len(PALETTE):
        fg = PALETTE[:num_parts]
    else:  # more parts than palette entries: extend with a colormap
        import matplotlib

        extra = num_parts - len(PALETTE)
        cm = matplotlib.colormaps["hsv"]
        more = cm(np.linspace(0.0, 1.0, extra, endpoint=False))[:, :3]
        fg = np.concatenate([PALETTE, (more * 255 + 0.5).astype(np.uint8)], 0)
    return np.concatenate([fg, BACKGROUND_COLOR[None]], 0).astype(np.uint8)


def part_names(num_parts: int, names: Optional[Sequence[str]] = None) -> list:
    """Default names "part 1".."part K", "background" (or validated `names`)."""
    if names is None:
        return [f"part {i + 1}" for i in range(num_parts)] + ["background"]
    names = list(names)
    if len(names) == num_parts:
        names = names + ["background"]
    if len(names) != num_parts + 1:
        raise ValueError(f"expected {num_parts} or {num_parts + 1} names, got {len(names)}")
    return names


def label_to_rgb(labels, num_parts: int) -> np.ndarray:
    """Colour a hard label map (H, W) with values in 0..K (K = background)."""
    lab = to_numpy(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be (H, W), got {lab.shape}")
    lab = lab.astype(np.int64)
    if lab.size and (lab.min() < 0 or lab.max() > num_parts):
        raise ValueError(f"labels must lie in [0, {num_parts}], got [{lab.min()}, {lab.max()}]")
    return part_colors(num_parts)[lab]


# --------------------------------------------------------------------------
# overlays
# --------------------------------------------------------------------------
def overlay_masks(
    image,
    masks,
    opacity: float = 0.5,
    hard: bool = True,
    show_background: bool = False,
) -> np.ndarray:
    """Blend part colours over an image.

    image: (H, W, 3) uint8 (other layouts accepted, see `_as_image_uint8`).
    masks: (K+1, H, W) soft part maps, background last.  Maps with another
        spatial size are resized bilinearly to the image size.
    hard: colour each pixel with its argmax part, blended at `opacity`.
        Otherwise colour = sum_k masks_k * colour_k and alpha =
        opacity * (1 - masks_background).
    show_background: if False (default) background pixels are left untouched
        (hard mode) / the background mass only lowers the alpha and does not
        tint the colour (soft mode).  If True the background colour is drawn
        too, with alpha = opacity everywhere.
    """
    img = _as_image_uint8(image)
    m = to_numpy(masks).astype(np.float32)
    if m.ndim != 3:
        raise ValueError(f"masks must be (K+1, H, W), got {m.shape}")
    H, W = img.shape[:2]
    m = resize_maps(m, (W, H))
    K = m.shape[0] - 1
    colors = part_colors(K).astype(np.float32)  # (K+1, 3)
    imgf = img.astype(np.float32)
    opacity = float(np.clip(opacity, 0.0, 1.0))

    if hard:
        labels = m.argmax(0)  # fast on resize_maps' pixel-major layout
        color = colors[labels]  # (H, W, 3)
        alpha = np.full((H, W), opacity, np.float32)
        if not show_background:
            alpha[labels == K] = 0.0
    else:
        m = np.clip(m, 0.0, None)
        total = m.sum(0)
        m = m / np.maximum(total, 1e-8)[None]  # renormalise (no-op for softmax)
        if show_background:
            color = np.einsum("khw,kc->hwc", m, colors)
            alpha = np.full((H, W), opacity, np.float32)
        else:
            fg = m[:K]
            fg_mass = fg.sum(0)
            # colour of the foreground mixture alone (avoid grey tint)
            color = np.einsum("khw,kc->hwc", fg, colors[:K]) / np.maximum(fg_mass, 1e-8)[..., None]
            alpha = opacity * np.clip(1.0 - m[K], 0.0, 1.0)
            alpha = np.where(total > 0, alpha, 0.0).astype(np.float32)
        alpha = alpha.astype(np.float32)

    a = alpha[..., None]
    out = imgf * (1.0 - a) + color * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------
# legend and grids
# --------------------------------------------------------------------------
def legend_image(
    num_parts: int,
    names: Optional[Sequence[str]] = None,
    height: int = 24,
    background=(255, 255, 255),
    text_color=(0, 0, 0),
    max_width: Optional[int] = None,
) -> np.ndarray:
    """A strip of ``[swatch] part 1  [swatch] part 2 ... [swatch] background``, ``height`` pixels a
    line. ``max_width``: wrap onto further lines instead of growing wider than this (an entry wider
    than it gets a line of its own); None keeps one line."""
    labels = part_names(num_parts, names)
    colors = part_colors(num_parts)
    height = max(8, int(height))
    font = _font(round(height * 0.55))
    sw = max(4, height - 8)  # swatch side
    gap, inner = max(4, height // 3), max(3, height // 6)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [sw + inner + _text_size(scratch, t, font)[0] + gap for t in labels]
    lines, x = [[]], gap  # greedy wrap: (entry index, x) per line
    for i, w in enumerate(widths):
        if max_width is not None and lines[-1] and x + w > max_width:
            lines.append([])
            x = gap
        lines[-1].append((i, x))
        x += w
    total_w = max(x0 + widths[i] for line in lines for i, x0 in line)
    canvas = Image.new("RGB", (int(total_w), height * len(lines)), tuple(background))
    draw = ImageDraw.Draw(canvas)
    y_sw = (height - sw) // 2
    for row, line in enumerate(lines):
        top = row * height
        for i, x0 in line:
            draw.rectangle([x0, top + y_sw, x0 + sw - 1, top + y_sw + sw - 1],
                           fill=tuple(int(c) for c in colors[i]), outline=(0, 0, 0))
            tw, th, ox, oy = _text_size(draw, labels[i], font)
            draw.text((x0 + sw + inner - ox, top + (height - th) // 2 - oy), labels[i], fill=tuple(text_color),
                      font=font)
    return np.asarray(canvas)


def map_grid(
    maps,
    size: int = 96,
    cmap: str = "viridis",
    titles: Optional[Sequence[str]] = None,
    columns: Optional[int] = None,
    normalize: Optional[str] = "each",
    colors=None,
    has_background: bool = True,
    border: int = 4,
    pad: int = 2,
    title_height: int = 14,
) -> np.ndarray:
    """Tile N maps (N, h, w) into one RGB image.

    Each tile is the map resized (bilinear) to size x size and passed through
    the matplotlib colormap `cmap`, with a `border`-pixel strip of the part
    colour on top and a small title above it.  By default the maps are taken
    to be K foreground maps followed by a background map (N = K + 1), which is
    what both the soft part maps and the per-part attention maps look like;
    pass `has_background=False` when there is no background map, or `colors`
    ((N, 3) uint8) to choose the strip colours yourself.

    normalize: "each" (per-map min-max), "all" (shared min-max) or
        None / "none" (values are clipped to [0, 1]).
    """
    import matplotlib

    a = to_numpy(maps).astype(np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"maps must be (N, h, w), got {a.shape}")
    N = a.shape[0]
    if N == 0:
        raise ValueError("no maps to draw")
    a = np.nan_to_num(a)

    if normalize == "each":
        lo = a.min(axis=(1, 2), keepdims=True)
        hi = a.max(axis=(1, 2), keepdims=True)
        a = (a - lo) / np.maximum(hi - lo, 1e-12)
    elif normalize == "all":
        lo, hi = a.min(), a.max()
        a = (a - lo) / max(hi - lo, 1e-12)
    elif normalize in (None, "none"):
        pass
    else:
        raise ValueError(f"unknown normalize={normalize!r}")
    a = np.clip(a, 0.0, 1.0)

    if colors is None:
        colors = part_colors(N - 1) if has_background else part_colors(N)[:N]
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    if len(colors) < N:
        raise ValueError("need one colour per map")
    if titles is None:
        titles = part_names(N - 1) if has_background else [f"part {i + 1}" for i in range(N)]
    titles = list(titles)
    if len(titles) != N:
        raise ValueError(f"expected {N} titles, got {len(titles)}")

    if columns is None:
        columns = N if N <= 9 else int(math.ceil(math.sqrt(N)))
    columns = max(1, min(int(columns), N))
    rows = int(math.ceil(N / columns))

    lut = (matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255 + 0.5).astype(np.uint8)
    th = int(title_height) if title_height else 0
    cell_w, cell_h = size, th + border + size
    W = pad + columns * (cell_w + pad)
    H = pad + rows * (cell_h + pad)
    canvas = np.full((H, W, 3), 255, np.uint8)
    tiles = lut[np.clip(resize_maps(a, (size, size)) * 255.0 + 0.5, 0, 255).astype(np.uint8)]  # (N, s, s, 3)
    for i in range(N):  # placing the tiles; the maps were resized and coloured above, all at once
        r, c = divmod(i, columns)
        x0 = pad + c * (cell_w + pad)
        y0 = pad + r * (cell_h + pad)
        canvas[y0 + th + border:y0 + cell_h, x0:x0 + cell_w] = tiles[i]
        canvas[y0 + th:y0 + th + border, x0:x0 + cell_w] = colors[i]

    if th:
        pil = Image.fromarray(canvas)
        draw = ImageDraw.Draw(pil)
        for i, text in enumerate(titles):
            r, c = divmod(i, columns)
            x0 = pad + c * (cell_w + pad)
            y0 = pad + r * (cell_h + pad)
            text, f, (tw, tth, ox, oy) = fit_text(draw, str(text), cell_w, th - 3, min_size=7)
            draw.text((x0 + (cell_w - tw) // 2 - ox, y0 + (th - tth) // 2 - oy), text,
                      fill=(0, 0, 0), font=f)
        canvas = np.asarray(pil)
    return canvas


def side_by_side(images, pad: int = 4, height: Optional[int] = None, pad_value: int = 255) -> np.ndarray:
    """Concatenate images horizontally, resized to a common height.

    The common height is `height` if given, else the tallest image; widths
    are scaled to keep aspect ratios.  `pad` pixels of `pad_value` separate
    the images (and surround the result).
    """
    imgs = [_as_image_uint8(im) for im in images]
    if not imgs:
        raise ValueError("no images")
    Ht = int(height) if height else max(im.shape[0] for im in imgs)
    resized = []
    for im in imgs:
        h, w = im.shape[:2]
        new_w = max(1, int(round(w * Ht / h)))
        resized.append(resize(im, (new_w, Ht), "bilinear"))
    W = pad + sum(im.shape[1] + pad for im in resized)
    out = np.full((Ht + 2 * pad, W, 3), pad_value, np.uint8)
    x = pad
    for im in resized:
        out[pad:pad + Ht, x:x + im.shape[1]] = im
        x += im.shape[1] + pad
    return out


def stack_rows(rows, pad: int = 6, pad_value: int = 255) -> np.ndarray:
    """Stack images vertically, left-aligned, without resizing: narrower rows are padded on the
    right, and `pad` rows of `pad_value` follow each image."""
    imgs = [_as_image_uint8(r) for r in rows]
    if not imgs:
        raise ValueError("no images")
    width = max(im.shape[1] for im in imgs)
    out = np.full((sum(im.shape[0] + pad for im in imgs), width, 3), pad_value, np.uint8)
    y = 0
    for im in imgs:
        out[y:y + im.shape[0], :im.shape[1]] = im
        y += im.shape[0] + pad
    return out


def with_legend(image, num_parts: int, height: int = 24, gap: int = 4,
                names: Optional[Sequence[str]] = None) -> np.ndarray:
    """Stack the colour legend under ``image`` (both centred), wrapped onto as many lines as it needs
    to fit the image's width (at least 320 px: a narrow image widens the canvas rather than give one
    entry a line). ``names``: as in :func:`legend_image`."""
    image = _as_image_uint8(image)
    legend = legend_image(num_parts, names=names, height=height, max_width=max(image.shape[1], 320))
    w = max(image.shape[1], legend.shape[1])
    out = np.full((image.shape[0] + legend.shape[0] + gap, w, 3), 255, np.uint8)
    x = (w - image.shape[1]) // 2
    out[:image.shape[0], x:x + image.shape[1]] = image
    x = (w - legend.shape[1]) // 2
    out[image.shape[0] + gap:, x:x + legend.shape[1]] = legend
    return out


def draw_points(image, points, radius: int = 4, fill=(255, 255, 255), outline=(20, 20, 20)) -> np.ndarray:
    """Dots at ``points`` (L, 2) in pixel (x, y) of ``image`` (H, W, 3): a light disc with a dark
    ring, visible on any part colour. Returns a new uint8 image."""
    canvas = Image.fromarray(_as_image_uint8(image))
    draw = ImageDraw.Draw(canvas)
    r = max(1, int(radius))
    for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2):
        if np.isfinite(x) and np.isfinite(y):
            draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(fill), outline=tuple(outline), width=max(1, r // 3))
    return np.asarray(canvas)


def pad_top(image, pad: int = 28, pad_value: int = 255) -> np.ndarray:
    """``pad`` rows of ``pad_value`` above an image (room for an image viewer's buttons, which
    would otherwise hide the first row of titles)."""
    image = _as_image_uint8(image)
    return np.concatenate([np.full((pad,) + image.shape[1:], pad_value, np.uint8), image], 0)


def titled_grid(rows, titles, cell: int = 192, pad: int = 6, title_height: int = 20) -> np.ndarray:
    """Tile images in rows, each resized to ``cell`` x ``cell`` with its title centred above it;
    ``titles`` has the shape of ``rows``. A title wider than its cell is set smaller, then cut
    short with an ellipsis (:func:`fit_text`): it never runs into its neighbours."""
    ncols = max(len(r) for r in rows)
    canvas = Image.new("RGB", (pad + ncols * (cell + pad), pad + len(rows) * (title_height + cell + pad)),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (images, names) in enumerate(zip(rows, titles)):
        y = pad + r * (title_height + cell + pad)
        for c, (img, name) in enumerate(zip(images, names)):
            x = pad + c * (cell + pad)
            name, font, (tw, th, ox, oy) = fit_text(draw, str(name), cell, title_height - 6,
                                                    min_size=title_height * 2 // 3 - 3)
            draw.text((x + (cell - tw) // 2 - ox, y + (title_height - th) // 2 - oy), name, fill=(0, 0, 0), font=font)
            canvas.paste(Image.fromarray(resize(_as_image_uint8(img), (cell, cell))), (x, y + title_height))
    return np.asarray(canvas)


def save_png(array, path) -> str:
    """Save an image array (uint8 or float in [0, 1]; gray or RGB) as PNG."""
    a = to_numpy(array)
    if a.ndim == 2 and a.dtype == np.uint8:
        im = Image.fromarray(a)
    else:
        im = Image.fromarray(_as_image_uint8(a))
    path = os.fspath(path)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    im.save(path, format="PNG")
    return path
