"""Reconstruction and swap measurements (partdisc_core/fidelity.py, ``train/evaluate.py --recon``)."""
import math

import pytest
import torch

from partdisc_core import PartDiscModel
from partdisc_core.fidelity import psnr, reconstruction_metrics, region_means, swap_locality, swap_transfer
from partdisc_core.synthetic import SyntheticFaces
from partdisc_core.testing import tiny_config


def test_psnr_values():
    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[1] += 0.1  # MSE 0.01 -> 20 dB
    out = psnr(b, a)
    assert out[1] == pytest.approx(20.0, abs=1e-4)
    assert out[0] > 90  # identical images: capped, not infinite
    assert psnr(torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))[0] == pytest.approx(0.0, abs=1e-6)


def test_region_means_per_label():
    img = torch.zeros(1, 3, 2, 2)
    img[0, 0, 0, :] = 1.0  # top row red
    labels = torch.tensor([[[0, 0], [1, 1]]])
    means, counts = region_means(img, labels, 3)
    assert torch.allclose(means[0, 0], torch.tensor([1.0, 0, 0]))
    assert torch.allclose(means[0, 1], torch.zeros(3))
    assert counts[0].tolist() == [2, 2, 0]


def _pair(colour_a, colour_b, swapped_colour, k=2):
    def img(c):
        return torch.tensor(c, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 4, 4).clone()
    labels = torch.zeros(1, 4, 4, dtype=torch.long)  # every pixel in part 1 (label 0)
    return img(swapped_colour), img(colour_a), img(colour_b), labels, labels, k


def test_swap_transfer_is_one_for_a_full_move_and_zero_for_none():
    full = swap_transfer(*_pair([0.2, 0.2, 0.2], [0.8, 0.6, 0.4], [0.8, 0.6, 0.4]))
    none = swap_transfer(*_pair([0.2, 0.2, 0.2], [0.8, 0.6, 0.4], [0.2, 0.2, 0.2]))
    half = swap_transfer(*_pair([0.2, 0.2, 0.2], [0.8, 0.8, 0.8], [0.5, 0.5, 0.5]))
    assert full[0] == pytest.approx(1.0) and none[0] == pytest.approx(0.0) and half[0] == pytest.approx(0.5)
    # regions whose reconstructions barely differ are not counted
    same = swap_transfer(*_pair([0.5, 0.5, 0.5], [0.505, 0.5, 0.5], [0.5, 0.5, 0.5]))
    assert same[1] == 0 and math.isnan(same[0])


def test_swap_locality_counts_the_change_inside_the_dilated_part():
    labels = torch.full((1, 32, 32), 2)  # K = 2: part 0 a 8x8 square, part 1 absent (background elsewhere)
    labels[0, 8:16, 8:16] = 0
    inside = torch.zeros(1, 2, 32, 32)
    inside[0, 0, 9:15, 9:15] = 1.0
    assert swap_locality(inside, labels, 2, radius=0) == (pytest.approx(1.0), 1)
    # a change one pixel outside the square counts only once the region is dilated
    ring = torch.zeros(1, 2, 32, 32)
    ring[0, 0, 7, 8:16] = 1.0
    ring[0, 0, 10, 10] = 1.0
    assert swap_locality(ring, labels, 2, radius=0)[0] == pytest.approx(1 / 9)
    assert swap_locality(ring, labels, 2, radius=1)[0] == pytest.approx(1.0)
    # a change spread evenly scores the (dilated) area fraction; a part under min_area is not counted
    even = torch.ones(1, 2, 32, 32)
    assert swap_locality(even, labels, 2, radius=0)[0] == pytest.approx(64 / 1024)
    share, counted = swap_locality(even, labels, 2, radius=0, min_area=0.1)
    assert math.isnan(share) and counted == 0
    # 3 px at 128 px by default: radius scales with the image
    assert swap_locality(even, labels, 2)[0] == pytest.approx(10 * 10 / 1024)


def test_reconstruction_metrics_on_a_model():
    torch.manual_seed(0)
    model = PartDiscModel(tiny_config(perceptual_weights="random")).eval()
    faces = SyntheticFaces(size=64).generate(6, seed=2).images
    dataset = [{"image": img} for img in faces]
    out = reconstruction_metrics(model, dataset, batch_size=4, locality=True)
    assert out["num_recon"] == 6
    assert 0 < out["psnr"] < 60
    assert -1.0 <= out["g_cosine"] <= out["g_cosine_max"] <= 1.0
    assert math.isnan(out["swap_transfer"]) or -5 < out["swap_transfer"] < 5
    assert math.isnan(out["swap_locality"]) or 0.0 <= out["swap_locality"] <= 1.0
    # a decoder that ignores S (constant output) cannot transfer anything: swap transfer 0 where counted
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.zero_()
    flat = reconstruction_metrics(model, dataset, batch_size=4, locality=True)
    assert flat["num_recon"] == 6 and (math.isnan(flat["swap_transfer"]) or flat["swap_transfer"] == 0.0)
    assert math.isnan(flat["swap_locality"])  # nothing changes: no part counted
    with pytest.raises(ValueError, match="two images"):
        reconstruction_metrics(model, dataset[:1])
