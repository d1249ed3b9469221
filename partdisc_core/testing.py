"""The tiny model configuration shared by the test suite, the app's test server and the quick mode
of the benchmarks: the maths under test does not depend on the sizes, and tiny models keep those
runs quick on a small CPU."""
from __future__ import annotations

from typing import Any

from .config import PartDiscConfig

TINY: dict[str, Any] = dict(width=64, depth=2, heads=2, mlp_dim=128, num_parts=4, decoder_channels=16,
                            perceptual_net="mobilenetv2", image_size=64, encoder_image_size=64)
"""64-px inputs: a 4x4 patch grid in the PartFormer and a 16x16 feature map F from the ResNet stem."""


def tiny_config(**changes: Any) -> PartDiscConfig:
    """The tiny configuration with ``changes`` applied (any :class:`PartDiscConfig` field)."""
    return PartDiscConfig(**{**TINY, **changes})
