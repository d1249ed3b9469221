import numpy as np
import pytest
from PIL import Image

from partdisc_core import viz


def _onehot(labels, k1):
    return (np.arange(k1)[:, None, None] == labels[None]).astype(np.float32)


def _random_image(h=20, w=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- colours
def test_palette_distinct_and_background_separate():
    assert viz.PALETTE.shape == (16, 3) and viz.PALETTE.dtype == np.uint8
    assert len({tuple(c) for c in viz.PALETTE}) == 16
    assert tuple(viz.BACKGROUND_COLOR) not in {tuple(c) for c in viz.PALETTE}
    # no two colours nearly equal (min L1 distance in RGB)
    cols = np.concatenate([viz.PALETTE, viz.BACKGROUND_COLOR[None]]).astype(int)
    d = np.abs(cols[:, None] - cols[None]).sum(-1) + np.eye(len(cols), dtype=int) * 10**6
    assert d.min() > 40


def test_part_colors_order():
    c = viz.part_colors(4)
    assert c.shape == (5, 3) and c.dtype == np.uint8
    np.testing.assert_array_equal(c[:4], viz.PALETTE[:4])
    np.testing.assert_array_equal(c[4], viz.BACKGROUND_COLOR)
    big = viz.part_colors(20)
    assert big.shape == (21, 3)
    assert len({tuple(x) for x in big}) == 21


def test_label_to_rgb():
    labels = np.array([[0, 1], [2, 3]])
    rgb = viz.label_to_rgb(labels, 3)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], viz.PALETTE[0])
    np.testing.assert_array_equal(rgb[1, 0], viz.PALETTE[2])
    np.testing.assert_array_equal(rgb[1, 1], viz.BACKGROUND_COLOR)
    with pytest.raises(ValueError):
        viz.label_to_rgb(np.array([[0, 4]]), 3)


# ---------------------------------------------------------------- overlays
@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("show_background", [True, False])
def test_overlay_opacity_zero_is_identity(hard, show_background):
    img = _random_image()
    m = np.random.default_rng(1).random((5, 20, 24)).astype(np.float32)
    out = viz.overlay_masks(img, m, opacity=0.0, hard=hard, show_background=show_background)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, img)


def test_overlay_hard_opacity_one_gives_palette_colours():
    img = _random_image()
    labels = np.random.default_rng(2).integers(0, 4, (20, 24))  # 0..3, K=3 -> 3 is bg
    m = _onehot(labels, 4) * 0.7 + 0.1  # still argmax = labels
    out = viz.overlay_masks(img, m, opacity=1.0, hard=True, show_background=True)
    np.testing.assert_array_equal(out, viz.part_colors(3)[labels])
    out2 = viz.overlay_masks(img, m, opacity=1.0, hard=True, show_background=False)
    fg = labels < 3
    np.testing.assert_array_equal(out2[fg], viz.part_colors(3)[labels][fg])
    np.testing.assert_array_equal(out2[~fg], img[~fg])


def test_overlay_soft_background_mass_leaves_image():
    img = _random_image()
    m = np.zeros((5, 20, 24), np.float32)
    m[4] = 1.0
    out = viz.overlay_masks(img, m, opacity=0.8, hard=False, show_background=False)
    np.testing.assert_array_equal(out, img)
    out_bg = viz.overlay_masks(img, m, opacity=1.0, hard=False, show_background=True)
    assert (out_bg == viz.BACKGROUND_COLOR).all()


def test_overlay_soft_blend_values():
    img = np.zeros((4, 4, 3), np.uint8)
    m = np.zeros((3, 4, 4), np.float32)
    m[0, :, :2] = 1.0           # left half: all part 1
    m[0, :, 2:] = 0.5           # right half: half part 1, half background
    m[2, :, 2:] = 0.5
    out = viz.overlay_masks(img, m, opacity=1.0, hard=False).astype(int)
    c0 = viz.PALETTE[0].astype(int)
    np.testing.assert_array_equal(out[:, :2], np.broadcast_to(c0, (4, 2, 3)))
    # colour = part 1 colour (not tinted by the background), alpha = 0.5
    assert np.abs(out[:, 2:] - np.round(c0 * 0.5)).max() <= 1


def test_overlay_soft_onehot_matches_hard():
    img = _random_image()
    labels = np.random.default_rng(3).integers(0, 3, (20, 24))  # foreground only, K=3
    m = _onehot(labels, 4)
    a = viz.overlay_masks(img, m, opacity=0.4, hard=True)
    b = viz.overlay_masks(img, m, opacity=0.4, hard=False)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_overlay_resizes_low_res_masks():
    img = _random_image(32, 32)
    m = np.zeros((3, 8, 8), np.float32)
    m[0] = 1.0
    out = viz.overlay_masks(img, m, opacity=1.0)
    assert out.shape == img.shape
    assert (out == viz.PALETTE[0]).all()


def test_overlay_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    img = _random_image()
    m = torch.softmax(torch.randn(5, 20, 24), 0)
    out = viz.overlay_masks(torch.from_numpy(img), m, opacity=0.5, hard=True)
    ref = viz.overlay_masks(img, m.numpy(), opacity=0.5, hard=True)
    np.testing.assert_array_equal(out, ref)


# ---------------------------------------------------------------- legend / grid
def test_legend_image():
    leg = viz.legend_image(4, height=24)
    assert leg.ndim == 3 and leg.shape[0] == 24 and leg.shape[2] == 3 and leg.dtype == np.uint8
    assert (leg != 255).any()  # not blank
    flat = {tuple(p) for p in leg.reshape(-1, 3)}
    for c in viz.part_colors(4):
        assert tuple(c) in flat
    assert viz.legend_image(8).shape[1] > leg.shape[1]
    named = viz.legend_image(2, names=["eyes", "mouth"])
    assert named.shape[0] == 24
    with pytest.raises(ValueError):
        viz.legend_image(3, names=["a"])


def test_legend_wraps_to_the_image_width_and_keeps_every_entry():
    """K = 16: one line would be ~1,000 px under a 384-px overlay; wrapped, every swatch colour is
    still drawn, on several lines no wider than the image."""
    one_line = viz.legend_image(16, height=24)
    wrapped = viz.legend_image(16, height=24, max_width=384)
    assert one_line.shape[0] == 24 and one_line.shape[1] > 384
    assert wrapped.shape[1] <= 384 and wrapped.shape[0] % 24 == 0 and wrapped.shape[0] >= 48
    flat = {tuple(p) for p in wrapped.reshape(-1, 3)}
    assert all(tuple(c) in flat for c in viz.part_colors(16))
    assert viz.legend_image(4, max_width=2000).shape == viz.legend_image(4).shape   # fits: one line
    assert viz.legend_image(3, max_width=10).shape[0] == 4 * 24                    # an entry per line
    framed = viz.with_legend(np.zeros((400, 384, 3), np.uint8), 16)
    assert framed.shape[1] == 384 and framed.shape[0] == 400 + 4 + wrapped.shape[0]


def test_map_grid_shape_and_strips():
    rng = np.random.default_rng(0)
    maps = rng.random((5, 7, 9))
    size, pad, th, border = 32, 2, 14, 4
    g = viz.map_grid(maps, size=size)
    assert g.dtype == np.uint8
    assert g.shape == (pad + th + border + size + pad, pad + 5 * (size + pad), 3)
    colors = viz.part_colors(4)
    for i in range(5):
        x0 = pad + i * (size + pad)
        strip = g[pad + th:pad + th + border, x0:x0 + size]
        assert (strip == colors[i]).all()
    g2 = viz.map_grid(maps, size=size, columns=2, titles=list("abcde"))
    assert g2.shape == (pad + 3 * (th + border + size + pad), pad + 2 * (size + pad), 3)


def test_map_grid_normalisation_and_cmap():
    import matplotlib

    lut = (matplotlib.colormaps["viridis"]([0.0, 1.0])[:, :3] * 255 + 0.5).astype(np.uint8)
    maps = np.stack([np.zeros((4, 4)), np.ones((4, 4)), np.full((4, 4), 3.0)])
    g = viz.map_grid(maps, size=8, normalize=None, title_height=0, border=0, pad=0)
    assert g.shape == (8, 24, 3)
    assert (g[:, :8] == lut[0]).all()
    assert (g[:, 8:16] == lut[1]).all()
    assert (g[:, 16:] == lut[1]).all()  # clipped
    # constant maps must not blow up with per-map normalisation
    g3 = viz.map_grid(maps, size=8, normalize="each")
    assert np.isfinite(g3).all()
    # "all": shared range -> the middle map is between the two ends
    ramp = np.stack([np.zeros((2, 2)), np.full((2, 2), 0.5), np.ones((2, 2))])
    ga = viz.map_grid(ramp, size=4, normalize="all", title_height=0, border=0, pad=0)
    assert not (ga[:, 4:8] == lut[0]).all() and not (ga[:, 4:8] == lut[1]).all()
    with pytest.raises(ValueError):
        viz.map_grid(maps, normalize="bogus")


def test_side_by_side_and_save(tmp_path):
    a = _random_image(20, 10)
    b = _random_image(40, 40)
    out = viz.side_by_side([a, b], pad=4)
    assert out.shape == (40 + 8, 4 + 20 + 4 + 40 + 4, 3)
    np.testing.assert_array_equal(out[4:44, 28:68], b)
    p = viz.save_png(out, tmp_path / "sub" / "x.png")
    back = np.asarray(Image.open(p))
    np.testing.assert_array_equal(back, out)


def test_titled_grid_keeps_every_title_inside_its_cell():
    """Morph's default title ("A, parts 1, 2, ..., 16 at t = 1.00") once ran into its neighbours' titles;
    a long title is set smaller, then cut short with an ellipsis."""
    pad, cell, th = 6, 192, 20
    long = "A + parts 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 at t = 1.00"
    img = np.full((8, 8, 3), 255, np.uint8)                     # white pictures: only titles are dark
    grid = viz.titled_grid([[img, img, img]], [["", long, ""]], cell=cell, pad=pad, title_height=th)
    dark = (grid[pad:pad + th] < 128).any(axis=(0, 2))           # columns with ink in the title row
    cols = np.flatnonzero(dark)
    assert cols.size and cols.min() >= pad + cell + pad and cols.max() < pad + 2 * (cell + pad) - pad
    assert cols.max() - cols.min() > cell * 0.8                # shrunk and cut to the cell, not to nothing
    short = viz.titled_grid([[img]], [["A (model input)"]], cell=cell, pad=pad, title_height=th)
    ink = np.flatnonzero((short[pad:pad + th] < 128).any(axis=(0, 2)))
    assert ink.max() - ink.min() < cell / 2                     # a title that fits keeps its size


def test_fit_text_shrinks_then_ellipsizes():
    from PIL import ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text, font, (w, _, _, _) = viz.fit_text(draw, "a short title", 300, 14)
    assert text == "a short title" and font.size == 14
    text, font, (w, _, _, _) = viz.fit_text(draw, "x" * 200, 100, 14, min_size=9)
    assert w <= 100 and text.endswith("\u2026") and font.size == 9
