"""The demo's answer files (``partdisc_core.result_files``), in-process: every picture becomes a
file of its own request, written once and whole, never shared with another request; folders
expire by age and total size; empty folders left in gradio's upload cache are swept."""
from __future__ import annotations

import inspect
import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from partdisc_core.result_files import ResultFiles, remove_empty_dirs


def picture(seed: int = 0, h: int = 24, w: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def read(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture
def results(tmp_path):
    files = ResultFiles(tmp_path / "results", max_age_s=3600)
    yield files
    files.close()


def test_publish_writes_each_picture_once_into_a_new_folder(results):
    img = picture()
    first = results.publish((img, img[..., 0], "a status", None), names=("overlay", "maps", "status", "extra"))
    second = results.publish((img, img[..., 0], "a status", None), names=("overlay", "maps", "status", "extra"))
    assert first[2:] == ("a status", None) and second[2:] == ("a status", None)  # not pictures: unchanged
    for a, b in zip(first[:2], second[:2]):
        assert a != b and Path(a).parent != Path(b).parent  # equal pictures, separate files
        assert Path(a).parent.parent == results.home
    assert Path(first[0]).name == "overlay.png" and Path(first[1]).name == "maps.png"
    np.testing.assert_array_equal(read(first[0]), img)
    np.testing.assert_array_equal(read(first[1]), np.repeat(img[..., :1], 3, axis=-1))
    mode = os.stat(first[0]).st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)  # read-only: written once
    assert results.folder_count == 2 and results.total_bytes == sum(os.path.getsize(p) for p in first[:2] + second[:2])


def test_publish_handles_galleries_single_values_and_no_pictures(results):
    img = picture(1)
    gallery = results.publish([[img, picture(2)], [(img, "caption")]], names=("grid", "pairs"))
    assert isinstance(gallery, list) and len(gallery[0]) == 2
    assert Path(gallery[0][0]).name == "grid_0.png" and Path(gallery[0][1]).name == "grid_1.png"
    path, caption = gallery[1][0]
    assert caption == "caption" and Path(path).name == "pairs_0_0.png"
    assert Path(results.publish(img, "one")).name == "one.png"
    float_map = np.linspace(0, 1.2, 100, dtype=np.float32).reshape(10, 10)  # overshoot is clipped
    assert read(results.publish(float_map, "map")).max() == 255
    before = results.folder_count
    assert results.publish(("text", {"__type__": "update"}), names=("a", "b")) == ("text", {"__type__": "update"})
    assert results.folder_count == before  # no picture, no folder


def test_concurrent_identical_answers_get_whole_files_of_their_own(results):
    img = picture(3, 200, 300)
    paths, errors = [], []

    def work():
        try:
            paths.append(results.publish((img,), names=("overlay",))[0])
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(set(paths)) == 16
    for p in paths:
        np.testing.assert_array_equal(read(p), img)


def test_staged_files_appear_whole_or_not_at_all(results):
    folder = results.request()
    with folder.staged("clip.mp4") as tmp:
        assert tmp.parent == folder.path and tmp.name.startswith(".")
        tmp.write_bytes(b"frames")
    assert (folder.path / "clip.mp4").read_bytes() == b"frames"
    with pytest.raises(RuntimeError), folder.staged("broken.mp4") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("encoder failed")
    assert sorted(p.name for p in folder.path.iterdir()) == ["clip.mp4"]  # no partial file left
    assert Path(folder.write("tracks.csv", b"a,b\n")).read_bytes() == b"a,b\n"
    with pytest.raises(FileExistsError):
        folder.write("tracks.csv", b"again")
    for bad in ("", "../x.png", "a/b.png", ".hidden"):
        with pytest.raises(ValueError):
            folder.write(bad, b"x")


def test_folders_expire_by_age_and_by_total_size(tmp_path):
    files = ResultFiles(tmp_path / "r", max_age_s=0.3, max_bytes=10**9)
    old = Path(files.publish(picture(), "a"))
    time.sleep(0.4)
    new = Path(files.publish(picture(), "b"))  # a new request prunes what has expired
    assert not old.parent.exists() and new.exists()
    files.close()
    assert not files.home.exists()

    one = len(Image.fromarray(picture()).tobytes())  # a PNG of noise is about this big
    small = ResultFiles(tmp_path / "s", max_age_s=3600, max_bytes=int(2.5 * one))
    paths = [Path(small.publish(picture(i), "p")) for i in range(4)]
    small.prune()
    assert [p.exists() for p in paths] == [False, False, True, True]  # oldest first, under the limit
    assert small.total_bytes <= small.max_bytes
    small.close()


def test_stale_folders_of_earlier_runs_are_removed_at_start(tmp_path):
    root = tmp_path / "r"
    stale, recent = root / "123-dead", root / "456-recent"
    (stale / "0001").mkdir(parents=True)
    recent.mkdir()
    past = time.time() - 7200
    os.utime(stale, (past, past))
    files = ResultFiles(root, max_age_s=3600)
    assert not stale.exists() and recent.exists() and files.home.exists()
    files.close()


def test_empty_folders_are_swept(tmp_path):
    upload = tmp_path / "gradio"
    empty_old, empty_new, full_old, kept = (upload / n for n in ("aaa", "bbb", "ccc", "results"))
    for d in (empty_old, empty_new, full_old, kept):
        d.mkdir(parents=True)
    (full_old / "face.png").write_bytes(b"x")
    past = time.time() - 100
    for d in (empty_old, full_old, kept):
        os.utime(d, (past, past))
    assert remove_empty_dirs(upload, 50, keep=[kept]) == 1
    assert not empty_old.exists() and empty_new.exists() and full_old.exists() and kept.exists()

    files = ResultFiles(upload / "results", max_age_s=50, sweep_roots=[upload], check_every_s=0)
    os.utime(empty_new, (past, past))
    files.publish(picture(), "x")  # requests run the sweep
    assert not empty_new.exists() and full_old.exists() and (upload / "results").exists()
    files.close()


def test_wrap_keeps_the_signature_and_streams(results):
    def discover(image, crop=True, opacity: float = 0.5):
        """doc"""
        return picture(), f"crop={crop}"

    wrapped = results.wrap(discover, ("overlay", "status"))
    assert inspect.signature(wrapped) == inspect.signature(discover) and wrapped.__doc__ == "doc"
    path, status = wrapped("x", crop=False)
    assert status == "crop=False" and Path(path).name == "overlay.png"

    def frames(n):
        for i in range(n):
            yield picture(i), i

    stream = results.wrap(frames, ("frame", "index"))
    assert inspect.isgeneratorfunction(stream)
    out = list(stream(3))
    assert [i for _, i in out] == [0, 1, 2] and len({p for p, _ in out}) == 3


def test_gradio_keeps_deleting_while_requests_add_files(eval_model, tmp_path):
    """Gradio's delete_cache pass walks the temp-file sets while requests add to them; the app's
    sets allow that (with plain sets every pass raised and the deletion schedule ended)."""
    import importlib.util

    from gradio.route_utils import delete_files_created_by_app

    spec = importlib.util.spec_from_file_location("partdisc_app", Path(__file__).resolve().parents[1] / "app.py")
    app_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app_module)
    results = ResultFiles(tmp_path / "results")
    blocks = app_module.build_demo(eval_model, {}, results=results)
    outputs = [b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "discover-overlay"][0]
    assert outputs.temp_files in blocks.temp_file_sets and blocks.upload_file_set in blocks.temp_file_sets
    files = outputs.temp_files
    for i in range(5000):
        files.add(f"{tmp_path}/gone/{i}.png")
    stop = threading.Event()

    def requests_add_files():
        for i in range(10**6):
            if stop.is_set():
                break
            files.add(f"{tmp_path}/gone/new{i}.png")
            blocks.upload_file_set.add(f"{tmp_path}/gone/up{i}.png")

    adder = threading.Thread(target=requests_add_files)
    adder.start()
    try:
        for _ in range(5):
            delete_files_created_by_app(blocks, age=10**9)  # raised "Set changed size during iteration"
    finally:
        stop.set()
        adder.join(timeout=60)
        results.close()
    real = tmp_path / "old.png"
    real.write_bytes(b"x")
    files.add(str(real))
    delete_files_created_by_app(blocks, age=None)  # and it still deletes
    assert not real.exists() and str(real) not in files
