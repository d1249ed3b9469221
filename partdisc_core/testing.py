"""The tiny model configuration shared by the test suite, the app's test server and the quick mode
of the benchmarks: the maths under test does not depend on the sizes, and tiny models keep those
runs quick on a small CPU. Also a stand-in webcam (:func:`moving_face_frames`) for the Live tab's
tests and benchmark."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import PartDiscConfig

if TYPE_CHECKING:
    import numpy as np

TINY: dict[str, Any] = dict(width=64, depth=2, heads=2, mlp_dim=128, num_parts=4, decoder_channels=16,
                            perceptual_net="mobilenetv2", image_size=64, encoder_image_size=64)
"""64-px inputs: a 4x4 patch grid in the PartFormer and a 16x16 feature map F from the ResNet stem."""


def tiny_config(**changes: Any) -> PartDiscConfig:
    """The tiny configuration with ``changes`` applied (any :class:`PartDiscConfig` field)."""
    return PartDiscConfig(**{**TINY, **changes})


def app_harness(root: str | Path):
    """The checkout ``root``'s ``tests/app_server.py`` (the app in a subprocess, the browser's flags,
    the load runner) as a module, for scripts and benchmarks outside the test suite; loaded by path,
    since tests/ is no package (and is not installed with partdisc_core)."""
    import importlib.util
    import sys

    path = Path(root) / "tests" / "app_server.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the app harness needs a source checkout of partdisc")
    name = "partdisc_app_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def moving_face_frames(count: int, size: tuple[int, int] = (640, 480), face_side: int = 360,
                       period: int = 20) -> np.ndarray:
    """``count`` webcam-like frames (count, H, W, 3) uint8 of a face moving smoothly: the head and
    shoulders of the public-domain astronaut portrait (``inputs.portrait``), ``face_side`` px
    (large enough for the Live tab's face detector), swaying left and right on a grey background
    once every ``period`` frames. The camera of the Live tab's browser test and benchmark."""
    import numpy as np

    from .inputs import portrait, resize

    w, h = size
    face = resize(portrait("astronaut")[0:320, 96:416], (face_side, face_side))
    phase = 2 * np.pi * np.arange(count) / period
    xs = ((w - face_side) * (0.5 + 0.4 * np.sin(phase))).astype(int)
    ys = ((h - face_side) // 2 + 0.1 * (h - face_side) * np.cos(phase)).astype(int)
    frames = np.full((count, h, w, 3), 90, np.uint8)
    for frame, x, y in zip(frames, xs, ys):
        frame[y:y + face_side, x:x + face_side] = face
    return frames
