"""The shipped checkpoint: it loads by default, finds several parts on a real face, swaps, and
beats an untrained model of the same architecture on real faces when ../shared is present."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from partdisc_core import DEFAULT_CHECKPOINT, PartDiscModel, load_model, read_checkpoint

pytestmark = pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").is_file(),
                                reason="no shipped checkpoint")
FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"


@pytest.fixture(scope="module")
def shipped():
    return load_model()


@pytest.fixture(scope="module")
def astronaut_face():
    skimage = pytest.importorskip("skimage.data")
    from partdisc_core.facecrop import crop_to_face

    crop = crop_to_face(skimage.astronaut())
    assert crop.found
    return crop.image


def test_shipped_checkpoint_is_small_fp16_safetensors_with_card():
    weights = DEFAULT_CHECKPOINT / "model.safetensors"
    assert weights.stat().st_size < 50e6
    cfg, state, meta = read_checkpoint(DEFAULT_CHECKPOINT)
    assert cfg.num_parts == 8 and cfg.encoder == "resnet" and cfg.image_size == 128
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float16}
    assert (DEFAULT_CHECKPOINT.parent / "README.md").is_file()


def test_shipped_model_finds_compact_parts_on_a_real_face(shipped, astronaut_face):
    out = shipped.predict(astronaut_face)
    labels = out.labels[0].numpy()
    h, w = labels.shape
    centre = labels[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
    present = {int(v) for v in np.unique(centre) if v < 8}
    assert len(present) >= 5, f"only parts {present} in the face region"
    # Parts are regions, not noise: most pixels share the label of their right-hand neighbour.
    assert (labels[:, 1:] == labels[:, :-1]).mean() > 0.9
    torch.testing.assert_close(out.masks.sum(1), torch.ones(1, h, w), atol=1e-4, rtol=0)


def test_shipped_model_swaps_parts(shipped, astronaut_face):
    flipped = np.ascontiguousarray(astronaut_face[:, ::-1])
    swap = shipped.swap_parts(astronaut_face, flipped, parts=None)
    assert swap.swapped_a.shape == (1, 3, 128, 128)
    assert not torch.allclose(swap.swapped_a, swap.recon_a, atol=1e-3)


@pytest.mark.skipif(not (FACES / "celeba_dev" / "landmarks.csv").is_file(), reason="no ../shared faces")
def test_shipped_model_beats_an_untrained_one_on_real_faces(shipped):
    from partdisc_core.data.landmarks import LandmarksDataset
    from partdisc_core.evaluation import evaluate_landmarks

    root = FACES / "celeba_dev"
    fit, test = LandmarksDataset(root, 128, indices=range(150)), LandmarksDataset(root, 128, indices=range(300, 400))
    trained = evaluate_landmarks(shipped, fit, test, batch_size=50)
    torch.manual_seed(0)
    untrained = evaluate_landmarks(PartDiscModel(shipped.cfg).eval(), fit, test, batch_size=50)
    assert trained["nmi"] > untrained["nmi"] + 15
    assert trained["nme"] < untrained["nme"]
