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
# Floors a little under the figures of faces-k16 (checkpoints/README.md), or at issue 10's targets where
# those are higher; the previous default faces-k8 fails them (NMI ~70 on celeba_dev, 65.5 and 0.69 x on MTFL).
PORTRAIT_MIN_PSNR, PORTRAIT_MIN_SWAP = 15.0, 0.5     # faces-k16: 20.5 / 15.6 dB, swap 0.62
DEV_MIN_NMI, DEV_MIN_ARI, DEV_MIN_PSNR, DEV_MIN_SWAP = 80.0, 78.0, 20.0, 0.5   # 85.1 / 83.1 / 20.9 / 0.54
MTFL_MAX_NME_RATIO, MTFL_MIN_NMI = 0.62, 80.0        # fit 500: 0.599 x and 84.2; the scratch model 0.85 x, 36.7


@pytest.fixture(scope="module")
def shipped():
    return load_model()


@pytest.fixture(scope="module")
def astronaut_face():
    pytest.importorskip("skimage.data")
    from partdisc_core.facecrop import crop_to_face
    from partdisc_core.inputs import portrait

    crop = crop_to_face(portrait("astronaut"))
    assert crop.found
    return crop.image


def test_shipped_checkpoint_is_small_fp16_safetensors_with_card():
    weights = DEFAULT_CHECKPOINT / "model.safetensors"
    assert weights.stat().st_size < 30e6
    cfg, state, meta = read_checkpoint(DEFAULT_CHECKPOINT)
    assert cfg.num_parts == 16 and cfg.encoder == "mobilenetv2" and cfg.image_size == 128
    # the cheap encoder input: the 128-px image itself, stride-4/8/16 taps (not 256 px, 4x the work)
    assert cfg.encoder_image_size == 128 and cfg.mobilenet_taps == (3, 6, 13)
    assert any(k.startswith("encoder.backbone.") for k in state)  # the frozen network travels with it
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float16}
    assert (DEFAULT_CHECKPOINT.parent / "README.md").is_file()


def test_shipped_model_finds_compact_parts_on_a_real_face(shipped, astronaut_face):
    out = shipped.predict(astronaut_face)
    labels = out.labels[0].numpy()
    h, w = labels.shape
    centre = labels[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
    present = {int(v) for v in np.unique(centre) if v < shipped.cfg.num_parts}
    assert len(present) >= 5, f"only parts {present} in the face region"
    # Parts are regions, not noise: most pixels share the label of their right-hand neighbour.
    assert (labels[:, 1:] == labels[:, :-1]).mean() > 0.9
    torch.testing.assert_close(out.masks.sum(1), torch.ones(1, h, w), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def hopper_face():
    from partdisc_core.facecrop import crop_to_face
    from partdisc_core.inputs import portrait

    crop = crop_to_face(portrait("grace_hopper"))
    assert crop.found
    return crop.image


def test_shipped_model_reconstructs_and_swaps_public_domain_faces(shipped, astronaut_face, hopper_face):
    """The two public-domain portraits: reconstructions look like the input (PSNR) and swapping
    all parts moves their colours most of the way to the other face (the old checkpoint: 10-11 dB
    and a swap transfer near 0)."""
    from partdisc_core.fidelity import psnr, swap_transfer

    swap = shipped.swap_parts([astronaut_face, hopper_face], [hopper_face, astronaut_face], parts=None)
    assert swap.swapped_a.shape == (2, 3, 128, 128)
    inputs = torch.stack([shipped._resize(torch.as_tensor(img).permute(2, 0, 1)[None].float() / 255, 128)[0]
                          for img in (astronaut_face, hopper_face)])
    quality = psnr(swap.recon_a, inputs)
    print(f"\n[shipped] portraits: PSNR {quality.tolist()}")
    assert (quality > PORTRAIT_MIN_PSNR).all(), quality
    labels = shipped.predict([astronaut_face, hopper_face], return_attention=False, output_size=128).labels
    moved, regions = swap_transfer(swap.swapped_a, swap.recon_a, swap.recon_b, labels, labels.flip(0),
                                   shipped.cfg.num_parts)
    print(f"[shipped] portraits: swap transfer {moved:.3f} over {regions} regions")
    assert regions >= 6 and moved > PORTRAIT_MIN_SWAP, (moved, regions)


@pytest.mark.skipif(not (FACES / "celeba_dev" / "landmarks.csv").is_file(), reason="no ../shared faces")
def test_shipped_model_beats_an_untrained_one_on_real_faces(shipped):
    from partdisc_core.data.landmarks import LandmarksDataset
    from partdisc_core.evaluation import evaluate_landmarks

    root = FACES / "celeba_dev"
    fit, test = LandmarksDataset(root, 128, indices=range(150)), LandmarksDataset(root, 128, indices=range(300, 400))
    trained = evaluate_landmarks(shipped, fit, test, batch_size=50)
    torch.manual_seed(0)
    untrained = evaluate_landmarks(PartDiscModel(shipped.cfg.replace(mobilenet_weights="random")).eval(), fit, test,
                                   batch_size=50)
    assert trained["nmi"] > untrained["nmi"] + 15
    assert trained["nme"] < untrained["nme"]
    # the figures the model card promises, with a margin (the old checkpoint: NMI 38, 10.6 dB, 0.05)
    print(f"\n[shipped] celeba_dev 150/100: {trained}")
    assert trained["nmi"] > DEV_MIN_NMI and trained["ari"] > DEV_MIN_ARI, trained
    from partdisc_core.fidelity import reconstruction_metrics

    fidelity = reconstruction_metrics(shipped, test, batch_size=50)
    print(f"[shipped] celeba_dev fidelity: {fidelity}")
    assert fidelity["psnr"] > DEV_MIN_PSNR and fidelity["swap_transfer"] > DEV_MIN_SWAP, fidelity


@pytest.mark.skipif(not (FACES / "mtfl_train" / "landmarks.csv").is_file(), reason="no ../shared faces")
def test_shipped_model_parts_give_landmarks_on_unseen_mtfl_faces(shipped):
    """The card's MTFL hold-out (never trained on), with a fit set of 500 training faces spread over
    both sub-collections: parts consistent at the landmarks and a landmark error well under the
    mean shape's."""
    from partdisc_core.data import build_dataset
    from partdisc_core.evaluation import evaluate_landmarks, limit_dataset

    root = FACES / "mtfl_train"
    fit = limit_dataset(build_dataset("landmarks", root, split="train", image_size=128, holdout_percent=5), 500)
    test = build_dataset("landmarks", root, split="holdout", image_size=128, holdout_percent=5)
    r = evaluate_landmarks(shipped, fit, test, batch_size=64)
    print(f"\n[shipped] MTFL hold-out, fit 500: {r}")
    assert r["nmi"] > MTFL_MIN_NMI, r
    assert r["nme"] < MTFL_MAX_NME_RATIO * r["nme_mean_shape"], r


def test_shipped_model_places_landmarks_from_its_parts(shipped, astronaut_face, hopper_face):
    """landmarks.json ships beside the weights: on both public-domain faces the predicted points are
    in a face's order (eyes above the nose above the mouth, left before right) and inside the face."""
    from partdisc_core.keypoints import predict_landmarks

    assert shipped.landmarks is not None and shipped.landmarks.names[0] == "left eye"
    maps = shipped.predict([astronaut_face, hopper_face], return_attention=False, output_size=128).masks
    for (le, re, nose, lm, rm) in predict_landmarks(shipped.landmarks, maps):
        assert le[0] < re[0] and lm[0] < rm[0]
        assert max(le[1], re[1]) < nose[1] < min(lm[1], rm[1])
        assert 20 < np.linalg.norm(le - re) < 70          # a face of the 128-px crop, not a collapse
