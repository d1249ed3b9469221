"""Fixed part names (partdisc_core/partnames.py, train/fit_part_names.py): the face regions of a
schematic 68-point face, names fitted on label maps where the answer is known, the file beside a
checkpoint, and the fit script on a folder of faces."""
import csv
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_model
from partdisc_core import load_model, save_model
from partdisc_core.partnames import (PART_NAMES_NAME, REGIONS, PartNameCounter, PartNames, face_regions,
                                     load_part_names, names_of, part_label, part_labels, qualify, save_part_names)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
import fit_part_names  # noqa: E402

S = 128


def schematic_face(cx: float = 64.0, cy: float = 70.0) -> np.ndarray:
    """68 iBUG-ordered points of a schematic face in a 128-px frame: a U-shaped jaw from (cx - 40,
    cy - 15) down to the chin (cx, cy + 45), flat brows at cy - 32, eyes as ellipses at (cx -+ 18,
    cy - 22) (36-41 the image-left one), the nose down from cy - 25 to cy + 3, the mouth an ellipse
    at (cx, cy + 20) from its left corner (48) over the top."""
    def ellipse(x, y, rx, ry, n):
        t = np.linspace(np.pi, -np.pi, n, endpoint=False)   # from the left, over the top (y down)
        return np.stack([x + rx * np.cos(t), y - ry * np.sin(t)], 1)

    t = np.linspace(np.pi, 0, 17)
    jaw = np.stack([cx + 40 * np.cos(t), cy - 15 + 60 * np.sin(t)], 1)
    brows = np.stack([np.r_[np.linspace(cx - 32, cx - 8, 5), np.linspace(cx + 8, cx + 32, 5)], np.full(10, cy - 32)], 1)
    bridge = np.stack([np.full(4, cx), np.linspace(cy - 25, cy, 4)], 1)
    nostrils = np.stack([np.linspace(cx - 8, cx + 8, 5), np.full(5, cy + 3)], 1)
    eyes = np.concatenate([ellipse(cx - 18, cy - 22, 7, 3, 6), ellipse(cx + 18, cy - 22, 7, 3, 6)])
    mouth = np.concatenate([ellipse(cx, cy + 20, 14, 6, 12), ellipse(cx, cy + 20, 9, 3, 8)])
    return np.concatenate([jaw, brows, bridge, nostrils, eyes, mouth])


def region_at(regions: np.ndarray, x: int, y: int) -> str:
    return REGIONS[regions[y, x]]


def test_face_regions_of_a_schematic_face():
    p = schematic_face()
    regions = face_regions(p, S)
    assert regions.shape == (S, S)
    expected = {(46, 48): "left eye", (82, 48): "right eye", (40, 38): "left brow", (88, 38): "right brow",
                (64, 70): "nose", (64, 90): "mouth", (40, 75): "left cheek", (88, 75): "right cheek",
                (64, 106): "chin", (64, 20): "forehead", (64, 1): "hair", (5, 20): "hair", (10, 44): "left temple",
                (118, 44): "right temple", (10, 80): "left side", (118, 80): "right side", (64, 122): "neck",
                (5, 125): "left shoulder", (122, 125): "right shoulder"}
    assert {xy: region_at(regions, *xy) for xy in expected} == expected
    assert set(np.unique(regions)) == set(range(len(REGIONS)))  # every region has pixels
    # "left" is the image's left: the eye at small x, whatever the person's own side
    assert np.argwhere(regions == REGIONS.index("left eye"))[:, 1].mean() < S / 2


def known_labels(p: np.ndarray, k: int, mouth: str = "halves") -> np.ndarray:
    """Label maps drawn from the points with plain shapes: part 1 a disc on the left eye, part 2 on
    the right eye, parts 3 and 4 the mouth's left and right halves (or its upper and lower halves),
    part 5 the top three rows, part 6 a block below the chin; part 7 nowhere; k = background."""
    ys, xs = np.mgrid[0:S, 0:S] + 0.5
    lab = np.full((S, S), k, np.int64)
    for part, eye in ((0, p[36:42]), (1, p[42:48])):
        cx, cy = eye.mean(0)
        lab[(xs - cx) ** 2 + (ys - cy) ** 2 <= 16] = part
    mx, my = p[48:60].mean(0)
    box = (np.abs(xs - mx) < 12) & (np.abs(ys - my) < 5)
    first = (xs < mx) if mouth == "halves" else (ys < my)
    lab[box & first], lab[box & ~first] = 2, 3
    lab[:3] = 4
    lab[(ys > p[8, 1] + 4) & (np.abs(xs - mx) < 14)] = 5
    return lab


def test_parts_are_named_after_the_region_they_overlap_best():
    k = 7
    faces = [schematic_face(64 + dx, 70 + dy) for dx, dy in ((0, 0), (-3, 2), (3, -2))]
    counter = PartNameCounter(k)
    counter.update(np.stack([known_labels(p, k) for p in faces]), np.stack(faces))
    names = counter.result(fitted_on="schematic")
    assert names.names == ("left eye", "right eye", "left mouth", "right mouth", "hair", "neck", "part 7")
    assert names.regions[:6] == ("left eye", "right eye", "mouth", "mouth", "hair", "neck")
    assert names.images == 3 and names.fitted_on == "schematic" and all(0 < d <= 1 for d in names.scores[:6])
    # one face at a time gives the same counts
    single = PartNameCounter(k)
    for p in faces:
        single.update(torch.from_numpy(known_labels(p, k)), torch.from_numpy(p))
    np.testing.assert_array_equal(single.counts, counter.counts)


def test_parts_sharing_a_region_up_and_down_are_the_lips():
    k = 7
    p = schematic_face()
    counter = PartNameCounter(k)
    counter.update(known_labels(p, k, mouth="upper and lower"), p)
    assert counter.result().names[2:4] == ("upper lip", "lower lip")


def test_qualify_and_labels():
    assert qualify("forehead", [(0.0, -0.2), (0.3, -0.1)]) == ["forehead", "right forehead"]
    assert qualify("left side", [(-0.6, 0.9), (-0.6, 0.1)]) == ["lower left side", "upper left side"]
    assert qualify("hair", [(0.0, -0.9), (0.01, -0.5), (0.0, -0.1)]) == ["hair 1", "hair 2", "hair 3"]
    assert part_label(3, ["a", "b", "nose"]) == "3 · nose" and part_label(3) == "part 3"
    assert part_labels(2, ["left eye", "nose"]) == ["1 · left eye", "2 · nose"]
    assert part_labels(2) == ["part 1", "part 2"]


def test_bad_inputs_are_refused():
    counter = PartNameCounter(4)
    with pytest.raises(ValueError, match="no annotated faces"):
        counter.result()
    with pytest.raises(ValueError, match="0..4"):
        counter.update(np.full((1, 8, 8), 5), schematic_face()[None])
    with pytest.raises(ValueError, match="68, 2"):
        counter.update(np.zeros((1, 8, 8), int), np.zeros((1, 5, 2)))
    with pytest.raises(ValueError, match="unique"):
        PartNames(("nose", "nose"), 2)
    with pytest.raises(ValueError, match="3 names for 2 parts"):
        PartNames(("a", "b", "c"), 2)


def test_file_round_trip_and_refusals(tmp_path):
    names = PartNames(("left eye", "nose", "hair"), 3, ("left eye", "nose", "hair"), (0.7, 0.5, 0.3), "here", 12)
    save_part_names(names, tmp_path)
    back = load_part_names(tmp_path, 3)
    assert back == names
    record = json.loads((tmp_path / PART_NAMES_NAME).read_text())
    assert "image's left" in record["note"]
    assert load_part_names(tmp_path / "none", 3) is None
    with pytest.raises(ValueError, match="names 3 parts, the model has 4"):
        load_part_names(tmp_path, 4)
    (tmp_path / PART_NAMES_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="not a part-names file"):
        load_part_names(tmp_path, 3)


def test_checkpoints_carry_the_names_and_a_damaged_file_is_left_out(tmp_path):
    model = tiny_model().eval()
    k = model.cfg.num_parts
    assert names_of(model) is None
    model.part_names = PartNames(tuple(f"region {i}" for i in range(k)), k)
    save_model(model, tmp_path / "ck")
    loaded = load_model(tmp_path / "ck")
    assert names_of(loaded) == model.part_names.names
    save_model(loaded, tmp_path / "copy", dtype=torch.float16)       # a re-save keeps them
    assert load_part_names(tmp_path / "copy", k).names == model.part_names.names
    (tmp_path / "ck" / PART_NAMES_NAME).write_text("[]")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_model(tmp_path / "ck").part_names is None
    assert any("part names left out" in str(w.message) for w in caught)


def faces68_folder(folder: Path, n: int = 6) -> Path:
    """``n`` grey 128-px faces with the schematic points in a landmarks68.csv."""
    folder.mkdir(parents=True)
    with open(folder / "landmarks68.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image"] + [f"p{i}_{c}" for i in range(68) for c in "xy"])
        for i in range(n):
            p = schematic_face(64 + i - n / 2, 70)
            image = np.full((S, S, 3), 90 + 10 * i, np.uint8)
            image[known_labels(p, 6) < 6] = 200
            Image.fromarray(image).save(folder / f"face{i}.png")
            writer.writerow([f"face{i}.png"] + [f"{v:.2f}" for v in p.reshape(-1)])
    return folder


def test_fit_script_writes_names_that_load_model_attaches(tmp_path, capsys):
    model = tiny_model().eval()
    save_model(model, tmp_path / "ck")
    data = faces68_folder(tmp_path / "faces")
    names = fit_part_names.main(["--checkpoint", str(tmp_path / "ck"), "--data", str(data), "--batch-size", "4"])
    k = model.cfg.num_parts
    assert len(names.names) == k and len(set(names.names)) == k and names.images == 6
    assert "faces (6 faces" in names.fitted_on and "wrote" in capsys.readouterr().out
    assert names_of(load_model(tmp_path / "ck")) == names.names
    (tmp_path / "ck" / PART_NAMES_NAME).unlink()
    fit_part_names.main(["--checkpoint", str(tmp_path / "ck"), "--data", str(data), "--limit", "2", "--dry-run"])
    assert not (tmp_path / "ck" / PART_NAMES_NAME).exists()
