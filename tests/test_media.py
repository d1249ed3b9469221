"""partdisc_core.media: MP4 / WebM / GIF clips decoded under limits, H.264 MP4s that browsers play,
animated GIFs; every bad file gets a MediaInputError with a message a person can act on."""
from __future__ import annotations

import numpy as np
import pytest

av = pytest.importorskip("av")

from partdisc_core.media import (MediaInputError, Mp4Writer, VideoReader, even_size, write_gif,  # noqa: E402
                                 write_mp4)


def moving_square(n: int = 12, w: int = 96, h: int = 64) -> list[np.ndarray]:
    """Frames with a red square moving right over a two-tone background (easy to compare after a
    lossy codec)."""
    frames = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[h // 2:, :, 2] = 180
        f[10:34, 4 * i:4 * i + 24] = (230, 30, 30)
        frames.append(f)
    return frames


def encode(path, frames, codec: str, fps: int = 10, rotation: int | None = None, fmt: str | None = None):
    """Write a clip with PyAV directly (the test's own writer, independent of Mp4Writer)."""
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = frames[0].shape[1], frames[0].shape[0]
        s.pix_fmt = "yuv420p"
        if rotation is not None:
            s.set_display_rotation(rotation)
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_mp4_round_trip_is_browser_playable_h264(tmp_path):
    frames = moving_square()
    path = write_mp4(frames, tmp_path / "out.mp4", fps=10)
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: playback starts before the download ends
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        assert s.codec_context.profile in ("High", "Main", "Constrained Baseline", "Baseline")
    with VideoReader(path) as video:
        assert (video.info.width, video.info.height, video.info.fps) == (96, 64, 10.0)
        assert video.info.frames == 12 and video.info.duration_s == pytest.approx(1.2)
        decoded = list(video)
    assert len(decoded) == 12
    for a, b in zip(frames, decoded):
        assert np.abs(a.astype(int) - b).mean() < 4  # lossy, but the same pictures, in order
    assert not list(tmp_path.glob(".*part*"))       # the temporary file was renamed into place


def test_writer_refuses_odd_sizes_and_wrong_frames(tmp_path):
    with pytest.raises(ValueError, match="even"):
        Mp4Writer(tmp_path / "x.mp4", 10, (95, 64))
    assert even_size(95, 63) == (94, 62)
    assert even_size(1280, 720, max_side=640) == (640, 360)
    with Mp4Writer(tmp_path / "x.mp4", 10, (96, 64)) as out:
        with pytest.raises(ValueError, match="frame is 32x32"):
            out.write(np.zeros((32, 32, 3), np.uint8))
        out.write(np.zeros((65, 97, 3), np.uint8))   # one pixel more: trimmed (odd source sizes)
    assert (tmp_path / "x.mp4").is_file()


def test_failed_writer_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError):
        with Mp4Writer(tmp_path / "y.mp4", 10, (64, 64)) as out:
            out.write(np.zeros((64, 64, 3), np.uint8))
            raise RuntimeError("the job failed half-way")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["webm", "gif"])
def test_reads_webm_and_gif(tmp_path, kind):
    frames = moving_square(8)
    if kind == "webm":
        path = tmp_path / "clip.webm"
        encode(path, frames, "libvpx-vp9", fps=8)
    else:
        path = write_gif(frames, tmp_path / "clip.gif", fps=8)
    with VideoReader(path) as video:
        assert video.size == (96, 64)
        assert video.info.fps == pytest.approx(8.0, rel=0.05)
        decoded = list(video)
    assert len(decoded) == 8
    assert np.abs(decoded[3].astype(int) - frames[3]).mean() < 6


def test_rotated_phone_clip_is_turned_upright(tmp_path):
    frames = moving_square(4)
    encode(tmp_path / "rot.mp4", frames, "libx264", rotation=90)   # 90 degrees counter-clockwise
    with VideoReader(tmp_path / "rot.mp4") as video:
        assert (video.info.width, video.info.height) == (64, 96)
        first = next(iter(video))
    upright = np.rot90(frames[0], 1)
    assert first.shape == upright.shape
    assert np.abs(first.astype(int) - upright).mean() < 4
    assert np.abs(first.astype(int) - np.rot90(frames[0], -1)).mean() > 20


def test_downscales_to_the_working_size(tmp_path):
    frames = [np.full((360, 640, 3), 90, np.uint8)] * 3
    write_mp4(frames, tmp_path / "big.mp4", fps=5)
    with VideoReader(tmp_path / "big.mp4", max_side=320) as video:
        assert video.size == (320, 180)
        assert next(iter(video)).shape == (180, 320, 3)


def test_too_long_clips_are_refused_with_the_limit(tmp_path):
    write_mp4(moving_square(12), tmp_path / "long.mp4", fps=2)          # 6 s
    with pytest.raises(MediaInputError, match=r"6\.0 s long; the limit is 5 s"):
        VideoReader(tmp_path / "long.mp4", max_seconds=5)
    with pytest.raises(MediaInputError, match="12 frames; the limit is 10"):
        VideoReader(tmp_path / "long.mp4", max_frames=10)


def test_frame_limit_holds_while_decoding(tmp_path, monkeypatch):
    """A container may state no frame count; decoding stops at the limit anyway."""
    write_mp4(moving_square(12), tmp_path / "c.mp4", fps=10)
    video = VideoReader(tmp_path / "c.mp4")
    video.max_frames = 5  # as if the header had said nothing
    with pytest.raises(MediaInputError, match="more than 5 frames"):
        list(video)
    video.close()


def test_bad_files_get_clear_messages(tmp_path):
    cases = {
        "text.mp4": b"this is not a video at all\n" * 20,
        "empty.webm": b"",
        "header_only.mp4": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64,
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(MediaInputError, match="empty"):
        VideoReader(tmp_path / "empty.webm")
    for name in ("text.mp4", "header_only.mp4"):
        with pytest.raises(MediaInputError, match="not a video|no video track|could not be decoded|no frames"):
            VideoReader(tmp_path / name)
    with pytest.raises(MediaInputError, match="did not reach the server"):
        VideoReader(tmp_path / "missing.mp4")
    with pytest.raises(MediaInputError, match="upload a video"):
        VideoReader(None)
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\x00" * 2048)
    with pytest.raises(MediaInputError, match="the limit is 0 MB"):
        VideoReader(big, max_bytes=1024)


def test_truncated_clip_stops_with_a_message_or_fewer_frames(tmp_path):
    write_mp4(moving_square(12), tmp_path / "full.mp4", fps=10)
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])   # moov first (faststart): the frames are cut
    try:
        with VideoReader(tmp_path / "cut.mp4") as video:
            n = len(list(video))
        assert n < 12
    except MediaInputError as exc:
        assert "corrupt" in str(exc) or "decoded" in str(exc) or "not a video" in str(exc)


def test_gif_writer_loops_with_the_given_rate(tmp_path):
    from PIL import Image

    path = write_gif(moving_square(5), tmp_path / "s.gif", fps=5)
    with Image.open(path) as im:
        assert im.n_frames == 5 and im.info["loop"] == 0 and im.info["duration"] == 200
    with pytest.raises(ValueError):
        write_gif([], tmp_path / "none.gif")


def test_gif_frames_keep_their_colours_with_one_shared_palette(tmp_path):
    """Frames of a morph-like strip (a gradient fading into another picture) come back close to
    their colours, each frame decoded from the one palette."""
    from PIL import Image

    ramp = np.linspace(0, 255, 96, dtype=np.float32)
    a = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], np.full((96, 96), 60.0)), -1)
    b = a[::-1, ::-1, [2, 0, 1]]
    frames = [(a * (1 - t) + b * t).astype(np.uint8) for t in np.linspace(0, 1, 6)]
    path = write_gif(frames, tmp_path / "fade.gif", fps=8)
    with Image.open(path) as im:
        assert im.n_frames == 6
        decoded = []
        for i in range(6):
            im.seek(i)
            decoded.append(np.asarray(im.convert("RGB")).astype(np.int16))
    errors = [np.abs(d - f).mean() for d, f in zip(decoded, frames)]
    assert max(errors) < 10, errors               # 256 colours for ~50,000: a few levels off
    assert np.abs(decoded[0] - frames[-1]).mean() > 5 * errors[0]   # and each frame is its own
    with pytest.raises(ValueError, match="RGB"):
        write_gif([np.zeros((8, 8), np.uint8)], tmp_path / "gray.gif")
