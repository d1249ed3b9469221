"""Input handling: every accepted image form becomes a (3, H, W) float tensor in [0, 1]; unusable
input raises ImageInputError; predict works on grayscale and RGBA images at their own size."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from partdisc_core import ImageInputError, read_image, to_image_tensors, to_uint8


def _one(x):
    out = to_image_tensors(x)
    assert isinstance(out, list) and len(out) == 1
    t = out[0]
    assert t.dtype == torch.float32 and t.ndim == 3 and t.shape[0] == 3
    assert t.min() >= 0 and t.max() <= 1
    return t


def _rgb(h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- PIL modes
def test_pil_rgb_and_gray():
    arr = _rgb()
    t = _one(Image.fromarray(arr))
    assert t.shape == (3, 20, 30)
    torch.testing.assert_close(t, torch.from_numpy(arr).permute(2, 0, 1).float() / 255)
    gray = arr[..., 0]
    g = _one(Image.fromarray(gray, mode="L"))
    for c in range(3):
        torch.testing.assert_close(g[c], torch.from_numpy(gray).float() / 255)


def test_pil_alpha_is_composited_on_white():
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 0] = 200                       # red-ish colour
    rgba[:, :4, 3] = 0                       # transparent -> white
    rgba[:, 4:8, 3] = 255                    # opaque -> the colour
    rgba[:, 8:, 3] = 128                     # half -> blend
    t = _one(Image.fromarray(rgba, mode="RGBA"))
    torch.testing.assert_close(t[:, 0, 0], torch.ones(3))
    torch.testing.assert_close(t[:, 0, 5], torch.tensor([200 / 255, 0.0, 0.0]))
    half = 128 / 255
    torch.testing.assert_close(t[:, 0, 10], torch.tensor([200 / 255 * half + 1 - half, 1 - half, 1 - half]),
                               atol=2 / 255, rtol=0)
    la = np.stack([np.full((10, 12), 50, np.uint8), np.zeros((10, 12), np.uint8)], -1)
    la[:, 6:, 1] = 255
    t = _one(Image.fromarray(la, mode="LA"))
    torch.testing.assert_close(t[:, 0, 0], torch.ones(3))
    torch.testing.assert_close(t[:, 0, 8], torch.full((3,), 50 / 255))


def test_pil_palette_cmyk_and_16_bit():
    arr = _rgb(16, 16)
    p = Image.fromarray(arr).quantize(colors=8)
    t = _one(p)
    torch.testing.assert_close(t, torch.from_numpy(np.array(p.convert("RGB"))).permute(2, 0, 1).float() / 255)
    pt = p.copy()
    pt.info["transparency"] = int(np.asarray(p)[0, 0])
    assert torch.allclose(_one(pt)[:, 0, 0], torch.ones(3))  # the transparent index turns white

    cmyk = Image.new("CMYK", (12, 10), (0, 0, 0, 0))      # no ink: white
    torch.testing.assert_close(_one(cmyk), torch.ones(3, 10, 12))
    cyan = Image.new("CMYK", (12, 10), (255, 0, 0, 0))
    c = _one(cyan)[:, 0, 0]
    assert c[0] < 0.1 and c[1] > 0.9 and c[2] > 0.9

    deep = np.linspace(0, 65535, 20 * 10).reshape(10, 20).astype(np.uint16)
    img16 = Image.fromarray(deep)
    assert img16.mode.startswith("I")
    t = _one(img16)
    torch.testing.assert_close(t[0], torch.from_numpy(deep.astype(np.float32) / 65535), atol=1e-4, rtol=0)
    assert float(t.max()) == pytest.approx(1.0) and float(t.min()) == 0.0


# ---------------------------------------------------------------- numpy arrays
def test_numpy_gray_shapes_and_rgba():
    gray = _rgb()[..., 0]
    a = _one(gray)
    b = _one(gray[..., None])
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[1], torch.from_numpy(gray).float() / 255)
    rgba = np.concatenate([_rgb(), np.zeros((20, 30, 1), np.uint8)], -1)
    torch.testing.assert_close(_one(rgba), torch.ones(3, 20, 30))  # fully transparent -> white
    rgba[..., 3] = 255
    torch.testing.assert_close(_one(rgba), _one(rgba[..., :3]))


def test_numpy_dtypes():
    u16 = np.full((10, 10, 3), 65535, np.uint16)
    u16[0, 0] = 0
    t = _one(u16)
    assert float(t[0, 0, 0]) == 0.0 and float(t[0, 5, 5]) == 1.0
    f = np.random.default_rng(0).random((10, 12, 3)).astype(np.float64)
    torch.testing.assert_close(_one(f), torch.from_numpy(f).float().permute(2, 0, 1))
    ints = np.full((10, 10, 3), 255, np.int64)
    assert float(_one(ints).min()) == 1.0
    chw = np.zeros((3, 10, 14), np.uint8)  # channels-first arrays are accepted too
    assert _one(chw).shape == (3, 10, 14)


@pytest.mark.parametrize("bad, match", [
    (np.full((10, 10, 3), 2.0, np.float32), r"\[0, 1\]"),
    (np.full((10, 10, 3), -0.5, np.float32), r"\[0, 1\]"),
    (np.where(np.eye(10, dtype=bool)[..., None], np.nan, 0.5).repeat(3, -1), "NaN"),
    (np.full((10, 10, 3), np.inf), "NaN or infinite"),
    (np.full((10, 10, 3), 300, np.int32), "uint8"),
    (np.zeros((10, 10, 2), np.uint8), "channels"),
    (np.zeros((10,), np.uint8), "shape"),
    (np.zeros((4, 4, 3), np.uint8), "at least"),
    (np.zeros((2, 40, 3), np.uint8), "at least"),
    (np.zeros((10, 10, 3), np.complex64), "dtype"),
])
def test_bad_arrays_raise(bad, match):
    with pytest.raises(ImageInputError, match=match):
        to_image_tensors(bad)


# ---------------------------------------------------------------- tensors
def test_tensors():
    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (3, 12, 16), dtype=torch.uint8, generator=g)
    torch.testing.assert_close(_one(u8), u8.float() / 255)
    gray = torch.rand(1, 12, 16, generator=g)
    t = _one(gray)
    torch.testing.assert_close(t, gray.expand(3, -1, -1))
    batch = torch.rand(4, 3, 10, 11, generator=g)
    out = to_image_tensors(batch)
    assert len(out) == 4 and all(o.shape == (3, 10, 11) for o in out)
    torch.testing.assert_close(out[2], batch[2])
    ubatch = (batch * 255).to(torch.uint8)
    assert len(to_image_tensors(ubatch)) == 4
    rgba = torch.cat([torch.rand(3, 10, 10, generator=g), torch.zeros(1, 10, 10)])
    torch.testing.assert_close(_one(rgba), torch.ones(3, 10, 10))
    twod = torch.rand(10, 12, generator=g)
    torch.testing.assert_close(_one(twod)[2], twod)
    if torch.cuda.is_available():
        torch.testing.assert_close(_one(u8.cuda()), u8.float() / 255)


@pytest.mark.parametrize("bad", [
    torch.full((3, 10, 10), 1.5), torch.full((3, 10, 10), float("nan")), torch.zeros(3, 10, 10, dtype=torch.int64),
    torch.zeros(10, 10, 3), torch.zeros(3, 4, 4), torch.zeros(2, 2, 3, 10, 10),
])
def test_bad_tensors_raise(bad):
    with pytest.raises(ImageInputError):
        to_image_tensors(bad)


def test_other_bad_inputs():
    for bad in ([], 42, {"image": 1}, None):
        with pytest.raises(ImageInputError):
            to_image_tensors(bad)
    with pytest.raises(ImageInputError, match="at least"):
        to_image_tensors(Image.new("RGB", (4, 4)))


def test_lists_mix_forms():
    out = to_image_tensors([_rgb(), Image.fromarray(_rgb(8, 9)), torch.rand(3, 12, 12)])
    assert [tuple(o.shape) for o in out] == [(3, 20, 30), (3, 8, 9), (3, 12, 12)]


def test_to_uint8_round_trip():
    arr = _rgb()
    t = _one(arr)
    assert np.array_equal(to_uint8(t), arr)
    batch = to_uint8(t.unsqueeze(0))
    assert batch.shape == (1, 20, 30, 3) and batch.dtype == np.uint8


# ---------------------------------------------------------------- files
def test_files(tmp_path):
    arr = _rgb()
    png = tmp_path / "x.png"
    Image.fromarray(arr).save(png)
    assert np.array_equal(read_image(png), arr)
    torch.testing.assert_close(_one(str(png)), _one(arr))
    torch.testing.assert_close(_one(png), _one(arr))

    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ImageInputError, match="notes.jpg"):
        to_image_tensors(text)
    with pytest.raises(ImageInputError, match="no such"):
        to_image_tensors(tmp_path / "missing.png")

    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, format="JPEG", quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageInputError, match="cut.jpg"):
        read_image(cut)


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)  # stored 40 wide, 20 high: red left half, blue right half
    arr[:, :20, 0] = 255
    arr[:, 20:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    t = _one(path)
    assert t.shape == (3, 40, 20)  # displayed upright: 20 wide, 40 high
    top, bottom = t[:, :15].mean(dim=(1, 2)), t[:, 25:].mean(dim=(1, 2))
    assert top[0] > 0.8 and top[2] < 0.2      # the stored left (red) is now on top
    assert bottom[2] > 0.8 and bottom[0] < 0.2
    # the same for a PIL image handed over directly
    with Image.open(path) as img:
        assert _one(img).shape == (3, 40, 20)


# ---------------------------------------------------------------- predict on odd inputs
def test_predict_on_gray_and_rgba_images(eval_model):
    k1 = eval_model.cfg.num_parts + 1
    gray = Image.fromarray(_rgb(45, 70)[..., 0], mode="L")
    rgba = Image.fromarray(np.concatenate([_rgb(33, 50), np.full((33, 50, 1), 200, np.uint8)], -1), mode="RGBA")
    for img in (gray, rgba):
        pred = eval_model.predict(img)
        h, w = img.size[1], img.size[0]
        assert pred.masks.shape == (1, k1, h, w) and pred.labels.shape == (1, h, w)
        torch.testing.assert_close(pred.masks.sum(1), torch.ones(1, h, w))
    both = eval_model.predict([gray, rgba])
    assert isinstance(both.masks, list)
    assert both.masks[0].shape == (k1, 45, 70) and both.masks[1].shape == (k1, 33, 50)
    with pytest.raises(ImageInputError):
        eval_model.predict(np.zeros((5, 5, 3), np.uint8))


def test_resize_maps_matches_resize_map_by_map_in_one_call():
    """The overlay's vectorised resize of all K+1 maps gives what resizing each map alone gives
    (bilinear, both directions), stored pixel-major so that an argmax over the maps reads contiguous
    memory; maps already at the size come back as they are."""
    from partdisc_core.inputs import resize, resize_maps

    maps = np.random.default_rng(0).random((17, 40, 32)).astype(np.float32)
    for size in ((80, 100), (20, 16)):
        one_call = resize_maps(maps, size)
        each = np.stack([resize(m, size, "bilinear") for m in maps])
        assert one_call.shape == (17, size[1], size[0]) and one_call.dtype == np.float32
        np.testing.assert_allclose(one_call, each, atol=1e-4)
        assert np.moveaxis(one_call, 0, -1).flags["C_CONTIGUOUS"]
    assert resize_maps(maps, (32, 40)) is maps
