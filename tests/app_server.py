"""A demo server on a tiny random checkpoint, shared by the API and browser tests."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from partdisc_core import PartDiscConfig, PartDiscModel, save_model
from partdisc_core.demo import AppProcess

K = 4


@contextmanager
def tiny_app_server(tmp: Path):
    """Start ``app.py`` on a free port with a tiny random K = 4 model saved under ``tmp``."""
    torch.manual_seed(0)
    model = PartDiscModel(PartDiscConfig(width=64, depth=2, heads=2, mlp_dim=128, num_parts=K)).eval()
    save_model(model, tmp / "tiny")
    proc = AppProcess(tmp / "tiny", log_path=tmp / "app.log",
                      env={"PARTDISC_THREADS": "1", "GRADIO_TEMP_DIR": str(tmp / "gradio"),
                           "PARTDISC_EXAMPLES_DIR": str(tmp / "examples")})
    with proc:
        yield proc
