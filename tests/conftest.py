"""Shared fixtures: the tiny model (``partdisc_core.testing``: width 64, 2 blocks, K = 4, 64-px
inputs, a MobileNetV2 perceptual network) and checkpoints written under ``tmp_path``."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub

import pytest  # noqa: E402
import torch  # noqa: E402

from partdisc_core import PartDiscConfig, PartDiscModel, save_model  # noqa: E402
from partdisc_core.testing import TINY, tiny_config  # noqa: E402,F401  (tests import them from here)

# Tiny tensors: one thread avoids oversubscription on a shared small CPU.
torch.set_num_threads(1)


def tiny_model(seed: int = 0, **changes) -> PartDiscModel:
    torch.manual_seed(seed)
    return PartDiscModel(tiny_config(**changes))


def random_views(batch: int = 2, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (B, 3, size, size) image batches in [0, 1] (a smooth pattern plus noise)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, 3, size // 8, size // 8, generator=g)
    base = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    noise = torch.rand(batch, 3, size, size, generator=g) * 0.2
    v1 = (0.8 * base + noise).clamp(0, 1)
    return v1, v1.flip(-1)


@pytest.fixture(scope="session")
def tiny_cfg() -> PartDiscConfig:
    return tiny_config()


@pytest.fixture
def model(tiny_cfg) -> PartDiscModel:
    """A fresh tiny model in training mode (tests may change it)."""
    torch.manual_seed(0)
    return PartDiscModel(tiny_cfg)


@pytest.fixture(scope="session")
def eval_model(tiny_cfg) -> PartDiscModel:
    """A shared tiny model in eval mode; tests must not modify it."""
    torch.manual_seed(1)
    return PartDiscModel(tiny_cfg).eval()


@pytest.fixture
def checkpoint_dir(tmp_path, model):
    """(model, folder) with the model saved in float32 to ``tmp_path / "ckpt"``."""
    folder = save_model(model, tmp_path / "ckpt", dtype=None)
    return model, folder
