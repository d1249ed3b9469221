"""The Gradio demo through its API (gradio_client) against `python app.py` (the session's server, conftest.py):
/discover and /swap on public-domain photos, every kind of bad input, and 16 concurrent calls."""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app_server import K, noisy_copies, portrait_files  # noqa: E402
from partdisc_core.demo import DISPLAY_SIDE, GRID_COLUMNS, GRID_TOP_PAD, SWAP_CELL, TILE  # noqa: E402


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return portrait_files(tmp_path_factory.mktemp("photos"))


def discover(client, path, crop=True, hard=True, opacity=0.5):
    overlay, maps, attention, status = client.predict(handle_file(str(path)), crop, hard, opacity,
                                                      api_name="/discover")
    return np.asarray(Image.open(overlay).convert("RGB")), np.asarray(Image.open(maps).convert("RGB")), \
        np.asarray(Image.open(attention).convert("RGB")), status


def swap(client, a, b, parts, crop=True):
    grid, status = client.predict(handle_file(str(a)), handle_file(str(b)), parts, crop, api_name="/swap")
    return np.asarray(Image.open(grid).convert("RGB")), status


def swap_cells(grid: np.ndarray) -> list[list[np.ndarray]]:
    """The 2 x 3 cells of the swap grid (the viewer's margin GRID_TOP_PAD, pad 6, title 20, cell SWAP_CELL)."""
    pad, title = 6, 20
    top = GRID_TOP_PAD + pad
    return [[grid[top + r * (title + SWAP_CELL + pad) + title:][:SWAP_CELL, pad + c * (SWAP_CELL + pad):][:, :SWAP_CELL]
             for c in range(3)] for r in range(2)]


def test_api_names(client):
    info = client.view_api(print_info=False, return_format="dict")
    assert {"/discover", "/swap"} <= set(info["named_endpoints"])


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_discover_on_photos(client, photos, name):
    overlay, maps, attention, status = discover(client, photos[name])
    assert "Face found" in status and f"K = {K}" in status
    # the overlay is the square face crop with the legend under it
    assert overlay.shape[0] > DISPLAY_SIDE and overlay.shape[1] >= DISPLAY_SIDE
    # one tile per part plus the background, side by side
    assert maps.shape[1] == 2 + min(K + 1, GRID_COLUMNS) * (TILE + 2)
    assert attention.shape == maps.shape
    assert maps.std() > 1 and attention.std() > 1


def test_discover_options_change_the_overlay(client, photos):
    plain, _, _, _ = discover(client, photos["astronaut"], opacity=0.0)
    hard, _, _, _ = discover(client, photos["astronaut"], opacity=1.0, hard=True)
    soft, _, _, _ = discover(client, photos["astronaut"], opacity=1.0, hard=False)
    top = slice(0, DISPLAY_SIDE)
    assert np.abs(plain[top].astype(int) - hard[top]).mean() > 5
    assert np.abs(hard[top].astype(int) - soft[top]).mean() > 1
    # hard masks at full opacity paint each pixel in one of the K part colours (or leave background)
    from partdisc_core.viz import part_colors

    colours = part_colors(K)[:K].astype(int)
    pixels = hard[top].reshape(-1, 3).astype(int)
    dist = np.abs(pixels[:, None, :] - colours[None]).sum(-1).min(1)
    plain_px = plain[top].reshape(-1, 3).astype(int)
    unchanged = np.abs(pixels - plain_px).sum(-1) <= 3
    assert ((dist <= 6) | unchanged).mean() > 0.97


def test_discover_without_crop_keeps_the_aspect(client, photos):
    overlay, _, _, status = discover(client, photos["grace_hopper"], crop=False, opacity=0.0)
    assert "not cropped" in status
    # the whole 512x600 portrait, scaled to 328x384 (the canvas may be wider, for the legend)
    cols = np.where(overlay[:DISPLAY_SIDE].min(axis=(0, 2)) < 250)[0]
    assert cols[-1] - cols[0] + 1 == pytest.approx(512 * DISPLAY_SIDE / 600, abs=2)


def test_swap(client, photos):
    a, b = photos["astronaut"], photos["grace_hopper"]
    grid, status = swap(client, a, b, [1, 2])
    assert "Exchanged parts 1, 2" in status
    cells = swap_cells(grid)
    assert grid.shape[0] == GRID_TOP_PAD + 6 + 2 * (20 + SWAP_CELL + 6)
    # the swapped reconstruction differs from the plain one
    assert np.abs(cells[0][1].astype(int) - cells[0][2]).mean() > 0.5
    assert np.abs(cells[1][1].astype(int) - cells[1][2]).mean() > 0.5
    # no parts: the swapped images equal the plain reconstructions
    grid0, status0 = swap(client, a, b, [])
    cells0 = swap_cells(grid0)
    assert "No parts chosen" in status0
    assert np.abs(cells0[0][1].astype(int) - cells0[0][2]).max() <= 2
    assert np.abs(cells0[0][1].astype(int) - cells[0][1]).mean() < 2  # same plain reconstruction
    # part numbers as strings work too; all parts by default in the UI
    _, status_s = swap(client, a, b, ["3"])
    assert "Exchanged part 3" in status_s


def test_swap_rejects_bad_part_numbers(client, photos):
    with pytest.raises(AppError, match=rf"1\.\.{K}"):
        swap(client, photos["astronaut"], photos["grace_hopper"], [K + 5])


# --- bad input ---------------------------------------------------------------------------------
def _gradient(w: int, h: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w).astype(np.uint8)[None, :]
    img[..., 1] = np.linspace(0, 255, h).astype(np.uint8)[:, None]
    img[..., 2] = 128
    return img


def make_inputs(folder: Path, photo: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    face = Image.open(photo).convert("RGB")
    files = {}

    def path(name):
        files[name.split(".")[0]] = folder / name
        return folder / name

    path("not_an_image.png").write_text("this is text, not a picture\n")
    raw = (folder / "full.jpg")
    face.save(raw, quality=90)
    data = raw.read_bytes()
    path("truncated.jpg").write_bytes(data[: len(data) // 3])
    path("garbage.jpg").write_bytes(data[:20] + bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8)))
    Image.new("1", (12000, 12000)).save(path("bomb.png"))  # 144 MP in 20 kB on disk
    Image.new("RGB", (4, 4), (200, 150, 120)).save(path("tiny.png"))
    face.resize((24, 24)).save(path("small.png"))
    face.convert("L").save(path("gray.png"))
    rgba = face.convert("RGBA")
    rgba.putalpha(Image.fromarray(_gradient(rgba.width, rgba.height)[..., 0]))
    rgba.save(path("rgba.png"))
    face.convert("CMYK").save(path("cmyk.jpg"), quality=90)
    g16 = np.asarray(face.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(g16).save(path("gray16.png"))
    Image.fromarray(_gradient(6000, 4000)).save(path("large.jpg"), quality=70)
    face.convert("P").save(path("palette.gif"))
    # EXIF-rotated: upright it is red on top and blue below; stored rotated 90 degrees with
    # orientation 6 ("rotate 90 clockwise to view")
    upright = np.zeros((300, 200, 3), np.uint8)
    upright[:150] = (220, 30, 30)
    upright[150:] = (30, 30, 220)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(path("exif_rotated.jpg"), exif=exif.tobytes())
    return files


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, photos):
    return make_inputs(tmp_path_factory.mktemp("inputs"), photos["grace_hopper"])


@pytest.mark.parametrize("name, message", [
    ("not_an_image", "not an image"),
    ("truncated", "corrupt or truncated"),
    ("garbage", "not an image|corrupt"),
    ("bomb", "too large|limit"),
    ("tiny", "4x4"),
])
def test_bad_files_give_clear_messages(client, inputs, photos, name, message):
    with pytest.raises(AppError, match=message):
        discover(client, inputs[name])
    with pytest.raises(AppError, match=f"Image B: .*({message})"):
        swap(client, photos["astronaut"], inputs[name], [1])
    # and the next request works
    _, _, _, status = discover(client, photos["astronaut"])
    assert "Face found" in status


@pytest.mark.parametrize("name, note", [
    ("small", "small image"),
    ("gray", ""),
    ("rgba", ""),
    ("cmyk", "CMYK"),
    ("gray16", "16-bit"),
    ("large", "downscaled from 6000x4000"),
    ("palette", ""),
])
def test_unusual_images_work(client, inputs, name, note):
    overlay, maps, _, status = discover(client, inputs[name])
    assert note.lower() in status.lower()
    assert overlay.shape[0] > DISPLAY_SIDE and maps.shape[1] == 2 + min(K + 1, GRID_COLUMNS) * (TILE + 2)


def test_exif_rotation_is_applied(client, inputs):
    overlay, _, _, status = discover(client, inputs["exif_rotated"], crop=False, opacity=0.0)
    assert "EXIF" in status
    view = overlay[:DISPLAY_SIDE]
    cols = np.where(view.min(axis=(0, 2)) < 250)[0]  # columns of the picture (margins are white)
    mid = (cols[0] + cols[-1]) // 2
    assert cols[-1] - cols[0] + 1 == pytest.approx(DISPLAY_SIDE * 200 / 300, abs=3)  # portrait
    top, bottom = view[40, mid].astype(int), view[DISPLAY_SIDE - 40, mid].astype(int)
    assert top[0] > 150 and top[2] < 100, top          # red on top
    assert bottom[2] > 150 and bottom[0] < 100, bottom  # blue below


def test_missing_image_is_an_error(client, photos):
    with pytest.raises(AppError):
        client.predict(None, True, True, 0.5, api_name="/discover")


# --- load --------------------------------------------------------------------------------------
def test_sixteen_concurrent_calls(server, client, photos, tmp_path):
    files = noisy_copies(photos["astronaut"], tmp_path, 16, seed=1)  # distinct files: no cached result
    rss_before = server.rss_mb()

    def call(i):
        if i % 4 == 3:
            return client.submit(handle_file(str(files[i])), handle_file(str(photos["grace_hopper"])), [1, 2],
                                 True, api_name="/swap")
        return client.submit(handle_file(str(files[i])), True, True, 0.5, api_name="/discover")

    with ThreadPoolExecutor(16) as pool:
        jobs = list(pool.map(call, range(16)))
    results = [job.result(timeout=120) for job in jobs]
    assert len(results) == 16
    for i, r in enumerate(results):
        assert Path(r[0]).is_file()
        assert ("Exchanged" if i % 4 == 3 else "Face found") in r[-1]
    rss_after = server.rss_mb()
    print(f"server RSS: {rss_before} MiB before, {rss_after} MiB after 16 concurrent calls")
    if rss_before is not None and rss_after is not None:
        assert rss_after - rss_before < 1024, "memory grew by more than 1 GiB under 16 calls"


# --- start-up ----------------------------------------------------------------------------------
def test_missing_checkpoint_gives_a_clear_message(monkeypatch, capsys, tmp_path):
    import partdisc_core.checkpoint as checkpoint
    from partdisc_core.demo import load_model_or_exit

    with pytest.raises(SystemExit) as exc:
        load_model_or_exit(str(tmp_path / "no-such-run"))
    assert exc.value.code == 2
    assert "Could not load the checkpoint" in capsys.readouterr().err
    # the shipped checkpoint absent: say so and say what to do
    monkeypatch.setattr(checkpoint, "DEFAULT_CHECKPOINT", tmp_path / "faces-k16")
    with pytest.raises(SystemExit):
        load_model_or_exit(None)
    err = capsys.readouterr().err
    assert "shipped checkpoint" in err and "--checkpoint" in err and "PARTDISC_CHECKPOINT" in err
