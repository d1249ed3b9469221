"""Video and animation files: decode clips under limits, encode MP4s that browsers play, write GIFs.

Decoding and encoding go through PyAV (FFmpeg's libraries, shipped in the ``av`` wheel with libx264
and libvpx), never a hand-written codec:

* :class:`VideoReader` opens an MP4 / WebM / MOV / MKV / GIF clip, checks it against limits (file
  size, duration, frame count) before and while decoding, applies the rotation a phone stores in
  the file, and yields RGB frames downscaled to a working size. Every refusal is a
  :class:`MediaInputError` whose text can be shown to the person who sent the file.
* :class:`Mp4Writer` encodes RGB frames as H.264 (yuv420p, ``+faststart``) in an MP4 container,
  the one combination every Chromium, Firefox and Safari plays inline.
* :func:`write_gif` writes an animated GIF (Pillow), for short strips that should loop anywhere.

Frames are streamed: a reader and a writer hold one frame at a time, so a 20-second clip never
sits in memory as a whole.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".gif")
"""Containers the video tab accepts (all decoded by FFmpeg through PyAV)."""
MAX_VIDEO_BYTES = 50 * 1024 * 1024
MAX_VIDEO_SECONDS = 20.0
MAX_VIDEO_FRAMES = 600
"""20 s at 30 frames/s; also stops clips whose container does not state a duration."""
VIDEO_WORK_SIDE = 640
"""Decoded frames are downscaled to this longest side right away (FFmpeg's swscale)."""
DEFAULT_FPS = 10.0
"""Frame rate assumed when a file states none (some GIFs)."""


class MediaInputError(ValueError):
    """A media file that cannot be used; the message is meant for the person who sent it."""


@dataclass(frozen=True)
class VideoInfo:
    """What a clip says about itself. ``width`` x ``height`` are the displayed size (after the
    stored rotation), ``frames`` is the container's count (None when it states none)."""

    width: int
    height: int
    fps: float
    duration_s: float | None
    frames: int | None
    codec: str
    container: str


def even_size(width: int, height: int, max_side: int | None = None) -> tuple[int, int]:
    """(width, height) scaled to at most ``max_side`` on the longer side, rounded down to even
    numbers (yuv420p, the pixel format browsers play, stores colour at half resolution)."""
    s = 1.0 if max_side is None or max(width, height) <= max_side else max_side / max(width, height)
    w, h = max(2, int(width * s)), max(2, int(height * s))
    return w - w % 2, h - h % 2


class VideoReader:
    """Decode a clip frame by frame under limits::

        with VideoReader("clip.mp4") as video:
            print(video.info.fps, video.size)
            for frame in video:          # (H, W, 3) uint8 RGB at video.size
                ...

    Opening checks the file size, that there is a video track, the stated duration and frame count,
    and decodes the first frame (its display matrix says how a phone clip is rotated). Iterating
    stops with a :class:`MediaInputError` as soon as more than ``max_frames`` frames or
    ``max_seconds`` of video have been decoded (containers may state no duration, or a wrong one)
    or a packet cannot be decoded."""

    def __init__(self, path: Any, max_seconds: float = MAX_VIDEO_SECONDS, max_frames: int = MAX_VIDEO_FRAMES,
                 max_bytes: int = MAX_VIDEO_BYTES, max_side: int | None = VIDEO_WORK_SIDE):
        import av

        if path is None or (isinstance(path, str) and not path.strip()):
            raise MediaInputError("Please upload a video first.")
        self.path = Path(os.fspath(path))
        if not self.path.is_file():
            raise MediaInputError("The uploaded video did not reach the server; please upload it again.")
        size = self.path.stat().st_size
        if size == 0:
            raise MediaInputError("The uploaded video is empty.")
        if size > max_bytes:
            raise MediaInputError(f"The video is {size / 2**20:.0f} MB; the limit is {max_bytes // 2**20} MB.")
        self.max_seconds, self.max_frames = float(max_seconds), int(max_frames)
        self.frames_read = 0
        try:
            self._container = av.open(str(self.path), mode="r")
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise MediaInputError("This file is not a video that can be read (MP4, WebM, MOV, MKV or GIF are "
                                  f"fine): {_reason(exc)}.") from exc
        try:
            self._stream = self._check_header()
            self._decoded = self._container.decode(self._stream)
            self._first = self._next_frame()
            if self._first is None:
                raise MediaInputError("The video contains no frames that can be decoded.")
            self.rotation = int(getattr(self._first, "rotation", 0) or 0) % 360
            w, h = self._stream.codec_context.width, self._stream.codec_context.height
            if self.rotation % 180:
                w, h = h, w
            self.info = VideoInfo(int(w), int(h), self._fps, self._duration, self._frames,
                                  self._stream.codec_context.name, self._container.format.name)
            self.size = even_size(self.info.width, self.info.height, max_side)
        except BaseException:
            self._container.close()
            raise

    def _check_header(self):
        """The first video stream; refuses clips whose header states a duration or frame count
        over the limits. Sets the frame rate, duration and frame count it states (or derives)."""
        container = self._container
        if container.format.name == "image2" or container.format.name.endswith("_pipe"):
            raise MediaInputError("This is a still image, not a video; the Discover tab takes pictures.")
        if not container.streams.video:
            raise MediaInputError("This file has no video track.")
        stream = container.streams.video[0]
        if not stream.codec_context.width or not stream.codec_context.height:
            raise MediaInputError("This file is not a video that can be read: its frame size is unknown "
                                  "(the file may be corrupt).")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate and 0 < float(rate) <= 240 else None
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        if duration is None and container.duration:
            duration = container.duration / 1_000_000  # AV_TIME_BASE: microseconds
        frames = int(stream.frames) or None
        if fps is None:
            fps = frames / duration if frames and duration else DEFAULT_FPS
        if duration is None and frames:
            duration = frames / fps
        if duration is not None and duration > self.max_seconds + 0.05:
            raise MediaInputError(f"The clip is {duration:.1f} s long; the limit is {self.max_seconds:.0f} s. "
                                  "Please trim it.")
        if frames is not None and frames > self.max_frames:
            raise MediaInputError(f"The clip has {frames} frames; the limit is {self.max_frames}. Please trim it "
                                  "or lower its frame rate.")
        self._fps, self._duration, self._frames = float(fps), duration, frames
        return stream

    def _next_frame(self):
        """The next decoded frame (None at the end), with decoding errors as MediaInputError."""
        import av

        try:
            return next(self._decoded, None)
        except (av.FFmpegError, OSError, ValueError, MemoryError) as exc:
            where = f"after {self.frames_read} frames" if self.frames_read else "at the first frame"
            raise MediaInputError(f"The video could not be decoded {where}; the file may be corrupt or "
                                  f"truncated ({_reason(exc)}).") from exc

    def _rgb(self, frame) -> np.ndarray:
        """The frame as upright RGB at ``self.size`` (scaled by swscale, turned as its display
        matrix says: ``rotation`` is counter-clockwise, as np.rot90 with positive k)."""
        w, h = self.size
        if self.rotation % 180:
            w, h = h, w
        rgb = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
        if self.rotation:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=self.rotation // 90))
        return rgb

    def __iter__(self) -> Iterator[np.ndarray]:
        frame, start = self._first, self._first.time or 0.0
        while frame is not None:
            if self.frames_read >= self.max_frames:
                raise MediaInputError(f"The clip has more than {self.max_frames} frames; the limit is "
                                      f"{self.max_frames}. Please trim it.")
            if frame.time is not None and frame.time - start > self.max_seconds + 0.05:
                raise MediaInputError(f"The clip is longer than {self.max_seconds:.0f} s; please trim it.")
            rgb = self._rgb(frame)
            self.frames_read += 1
            yield rgb
            frame = self._next_frame()

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    """FFmpeg's own words for an error, without the server-side file name."""
    return (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).strip().rstrip(".")


class Mp4Writer:
    """Encode RGB frames of one size to an H.264 MP4 that browsers play inline::

        with Mp4Writer("out.mp4", fps=25, size=(384, 384)) as out:
            for frame in frames:
                out.write(frame)        # (H, W, 3) uint8 RGB, H = 384, W = 384

    yuv420p needs even sides: :func:`even_size` picks them, and frames one pixel larger are
    trimmed. ``+faststart`` puts the index first so playback starts before the download ends.
    The file appears under its name only when the writer closes without an error."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], crf: int = 23,
                 preset: str = "veryfast", threads: int = 0):
        import av

        self.path = Path(path)
        w, h = int(size[0]), int(size[1])
        if w < 2 or h < 2 or w % 2 or h % 2:
            raise ValueError(f"MP4 frames need even sides of at least 2 pixels, got {w}x{h} (use even_size)")
        self.size = (w, h)
        self._tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.{id(self)}.part.mp4")
        self._container = av.open(str(self._tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        rate = Fraction(float(fps)).limit_denominator(1001) if fps and fps > 0 else Fraction(int(DEFAULT_FPS))
        stream = self._container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": preset}
        stream.codec_context.thread_count = int(threads)
        self._stream = stream
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        import av

        arr = np.asarray(frame)
        w, h = self.size
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 frame, got {arr.shape} {arr.dtype}")
        if arr.shape[0] not in (h, h + 1) or arr.shape[1] not in (w, w + 1):
            raise ValueError(f"frame is {arr.shape[1]}x{arr.shape[0]}, the video is {w}x{h}")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr[:h, :w]), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self, keep: bool = True) -> Path:
        if self._container is None:
            return self.path
        try:
            if keep:
                for packet in self._stream.encode():  # flush the encoder's delayed frames
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None
        if keep and self.frames_written:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)
        return self.path

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(keep=exc_type is None)


def write_mp4(frames: Iterable[np.ndarray], path: str | Path, fps: float, **kwargs) -> Path:
    """Encode an iterable of equally sized RGB frames with :class:`Mp4Writer` (size from the first
    frame, rounded down to even sides)."""
    it = iter(frames)
    first = np.asarray(next(it))
    size = even_size(first.shape[1], first.shape[0])
    with Mp4Writer(path, fps, size, **kwargs) as out:
        out.write(first)
        for frame in it:
            out.write(np.asarray(frame))
    return Path(path)


def write_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 8.0, loop: int = 0) -> Path:
    """An animated GIF of RGB frames, ``loop = 0`` repeating forever; written atomically.

    One 256-colour palette for all frames (median cut over every frame, subsampled 4x), each frame
    mapped to it without dithering: 7x faster than Pillow's palette per frame (83 against 591 ms
    for 16 frames of 192 x 576), a smaller file, and no colour flicker between frames."""
    from PIL import Image

    if not len(frames):
        raise ValueError("no frames")
    arrays = [np.ascontiguousarray(f, dtype=np.uint8) for f in frames]
    if any(a.ndim != 3 or a.shape[2] != 3 for a in arrays):
        raise ValueError("frames must be (H, W, 3) RGB")
    mosaic = Image.fromarray(np.concatenate([a[::4, ::4] for a in arrays], axis=0))
    palette = mosaic.quantize(256, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(a).quantize(palette=palette, dither=Image.Dither.NONE) for a in arrays]
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{id(images)}.part.gif")
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], loop=int(loop),
                   duration=max(20, int(round(1000.0 / fps))), disposal=1)
    os.replace(tmp, path)
    return path


__all__ = ["DEFAULT_FPS", "MAX_VIDEO_BYTES", "MAX_VIDEO_FRAMES", "MAX_VIDEO_SECONDS", "MediaInputError", "Mp4Writer",
           "VIDEO_EXTENSIONS", "VIDEO_WORK_SIDE", "VideoInfo", "VideoReader", "even_size", "write_gif", "write_mp4"]
