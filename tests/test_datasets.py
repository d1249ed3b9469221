"""Benchmark loaders on a few generated files in each official layout (docs/datasets.md)."""
import json

import numpy as np
import pytest
from PIL import Image

from partdisc_core.data import available_datasets, build_dataset
from partdisc_core.data.deepfashion import PART_COLORS, colors_to_ids

S = 32


def _img(path, h, w, seed=0, color=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 60, (h, w, 3), dtype=np.uint8) if color is None else np.full((h, w, 3), color, np.uint8)
    Image.fromarray(arr).save(path)
    return arr


def test_all_benchmarks_are_registered():
    assert {"celeba", "aflw", "cub", "deepfashion", "partimagenet"} <= set(available_datasets())


# --- CelebA + MAFL ----------------------------------------------------------------------------------
def _celeba(root, aligned=False):
    folder = root / "Img" / ("img_align_celeba" if aligned else "img_celeba")
    names = [f"{i:06d}.jpg" for i in range(1, 7)]
    sizes = [(60, 50), (80, 40), (50, 50), (64, 48), (40, 70), (90, 90)]   # (H, W)
    pts, boxes = [], []
    for i, (n, (h, w)) in enumerate(zip(names, sizes)):
        _img(folder / n, h, w, seed=i)
        pts.append([w * 0.3, h * 0.4, w * 0.7, h * 0.4, w * 0.5, h * 0.6, w * 0.35, h * 0.8, w * 0.65, h * 0.8])
        frac = 0.1 if i == 5 else 0.5          # image 000006 has a tiny face: filtered in the wild
        side = (frac * w * h) ** 0.5
        boxes.append([1, 1, side, side])
    anno = root / "Anno"
    anno.mkdir(parents=True, exist_ok=True)
    lm_name = "list_landmarks_align_celeba.txt" if aligned else "list_landmarks_celeba.txt"
    with open(anno / lm_name, "w") as f:
        f.write(f"{len(names)}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
                "rightmouth_x rightmouth_y\n")
        for n, p in zip(names, pts):
            f.write(n + " " + " ".join(f"{int(round(v))}" for v in p) + "\n")
    with open(anno / "list_bbox_celeba.txt", "w") as f:
        f.write(f"{len(names)}\nimage_id x_1 y_1 width height\n")
        for n, b in zip(names, boxes):
            f.write(n + " " + " ".join(f"{int(round(v))}" for v in b) + "\n")
    (root / "MAFL").mkdir(exist_ok=True)
    (root / "MAFL" / "training.txt").write_text("000002.jpg\n000003.jpg\n")
    (root / "MAFL" / "testing.txt").write_text("000004.jpg\n000006.jpg\n")
    return names, sizes, np.round(np.array(pts)).reshape(-1, 5, 2)


def test_celeba_in_the_wild_with_mafl_split(tmp_path):
    names, sizes, pts = _celeba(tmp_path)
    train = build_dataset("celeba", tmp_path, split="train", image_size=S)
    val = build_dataset("celeba", tmp_path, split="val", image_size=S)
    test = build_dataset("celeba", tmp_path, split="test", image_size=S)
    # MAFL test images never in train; the tiny-face image 000006 is filtered everywhere
    assert train.names == ["000001.jpg", "000002.jpg", "000003.jpg", "000005.jpg"]
    assert val.names == ["000002.jpg", "000003.jpg"]
    assert test.names == ["000004.jpg"]
    item = test[0]
    h, w = sizes[3]
    assert item["image"].shape == (3, S, S)
    assert item["orig_size"].tolist() == [h, w]
    np.testing.assert_allclose(item["orig_landmarks"].numpy(), pts[3])
    np.testing.assert_allclose(item["landmarks"].numpy(), pts[3] * [S / w, S / h], rtol=1e-6)
    unfiltered = build_dataset("celeba", tmp_path, split="test", image_size=S, min_face_fraction=0)
    assert unfiltered.names == ["000004.jpg", "000006.jpg"]


def test_celeba_aligned_is_picked_when_alone(tmp_path):
    _celeba(tmp_path, aligned=True)
    data = build_dataset("celeba", tmp_path, split="test", image_size=S)
    assert data.aligned and data.names == ["000004.jpg", "000006.jpg"]   # no face filter when aligned
    with pytest.raises(FileNotFoundError, match="img_celeba"):
        build_dataset("celeba", tmp_path, split="test", aligned=False)


# --- AFLW (Thewlis / MTFL lists) ---------------------------------------------------------------------
def test_aflw_layout(tmp_path):
    crop_dir = tmp_path / "aflw_cropped"
    rows = ["image_file,set,crop_file,face_id," + ",".join(f"p{i}" for i in range(10))]
    for i in range(12):
        _img(crop_dir / "cropped" / f"{i}.jpg", 50, 50, seed=i)
        pt = [11 + i, 21, 31, 21, 26, 31, 16, 41, 36, 41]     # 1-based x1, y1, x2, y2, ...
        rows.append(f"orig{i}.jpg,{1 if i < 10 else 2},cropped/{i}.jpg,{i}," + ",".join(map(str, pt)))
    (crop_dir / "facedata_cropped.csv").write_text("\n".join(rows) + "\n")
    mtfl = tmp_path / "MTFL"
    _img(mtfl / "AFLW" / "a.jpg", 60, 40, seed=5)
    # MTFL format: x1..x5 y1..y5 then 4 attributes; Windows separators in the path
    (mtfl / "testing.txt").write_text("AFLW\\a.jpg 11 31 21 13 29 16 16 26 36 36 1 2 2 3\n")
    train = build_dataset("aflw", tmp_path, split="train", image_size=S)
    assert len(train) == 10                                       # set == 1 only
    assert len(build_dataset("aflw", tmp_path, split="val", image_size=S)) == 1
    np.testing.assert_allclose(train[3]["orig_landmarks"][0].numpy(), [13, 20])   # 1-based -> 0-based
    test = build_dataset("aflw", tmp_path, split="test", image_size=S)
    item = test[0]
    assert item["orig_size"].tolist() == [60, 40]
    np.testing.assert_allclose(item["orig_landmarks"].numpy(),
                               np.array([[11, 16], [31, 16], [21, 26], [13, 36], [29, 36]]) - 1.0)
    np.testing.assert_allclose(item["landmarks"][1].numpy(), [30 * S / 40, 15 * S / 60], rtol=1e-6)


# --- CUB-200-2011 ------------------------------------------------------------------------------------
def _cub(root):
    base = root / "CUB_200_2011"
    lines = {k: [] for k in ("images", "split", "boxes", "labels", "parts")}
    for i in range(1, 7):
        cls = 1 if i <= 4 else 2
        rel = f"{cls:03d}.Bird/bird_{i}.jpg"
        h, w = 60, 80
        arr = np.zeros((h, w, 3), np.uint8)
        arr[30, 50] = (255, 0, 0)                       # a red dot where keypoint 3 is
        (base / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(base / "images" / rel.replace(".jpg", ".png"))
        rel = rel.replace(".jpg", ".png")
        lines["images"].append(f"{i} {rel}")
        lines["split"].append(f"{i} {1 if i % 2 else 0}")
        lines["boxes"].append(f"{i} 20.0 10.0 40.0 40.0")   # x, y, w, h
        lines["labels"].append(f"{i} {cls}")
        for p in range(1, 16):
            vis = 1 if p in (1, 3) else 0
            x, y = (50.0, 30.0) if p == 3 else ((30.0, 20.0) if p == 1 else (0.0, 0.0))
            lines["parts"].append(f"{i} {p} {x} {y} {vis}")
    names = {"images": "images.txt", "split": "train_test_split.txt", "boxes": "bounding_boxes.txt",
             "labels": "image_class_labels.txt", "parts": "parts/part_locs.txt"}
    for key, name in names.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text("\n".join(lines[key]) + "\n")
    return base


def test_cub_crop_keypoints_and_subsets(tmp_path):
    _cub(tmp_path)
    train = build_dataset("cub", tmp_path, split="train", image_size=S)       # parent folder works too
    test = build_dataset("cub", tmp_path / "CUB_200_2011", split="test", image_size=S)
    assert len(train) == 3 and len(test) == 3
    assert len(build_dataset("cub", tmp_path, split="train", image_size=S, classes="1")) == 2   # CUB-1
    assert len(build_dataset("cub", tmp_path, split="val", image_size=S)) == 1
    item = train[0]
    assert item["image"].shape == (3, S, S) and item["class_id"] == 0
    assert item["visible"].tolist() == [p in (0, 2) for p in range(15)]
    assert float(item["nme_norm"]) == S
    # keypoint 3 at (50, 30) in a box starting at (20, 10) of size 40 -> (30, 20) * S / 40
    kp = item["landmarks"][2]
    np.testing.assert_allclose(kp.numpy(), [30 * S / 40, 20 * S / 40], rtol=1e-6)
    red = item["image"][0] - item["image"][1]
    y, x = divmod(int(red.argmax()), S)
    assert abs(x - kp[0]) <= 1 and abs(y - kp[1]) <= 1     # the dot lands where the keypoint says
    assert item["landmarks"][5].abs().sum() == 0            # unannotated points are zeroed


@pytest.mark.filterwarnings("ignore:only 3 fit images")
def test_cub_evaluates_with_visibility(tmp_path):
    from conftest import tiny_model
    from partdisc_core.evaluation import evaluate_landmarks

    _cub(tmp_path)
    model = tiny_model(seed=0).eval()
    fit = build_dataset("cub", tmp_path, split="train", image_size=64)
    test = build_dataset("cub", tmp_path, split="test", image_size=64)
    with pytest.warns(UserWarning, match="never annotated"):   # only keypoints 1 and 3 are annotated
        r = evaluate_landmarks(model, fit, test, batch_size=8)
    assert r["num_test"] == 3 and np.isfinite(r["nme"]) and np.isfinite(r["nmi"])


# --- DeepFashion in-shop ------------------------------------------------------------------------------
def test_deepfashion_layout(tmp_path):
    bench = tmp_path / "DeepFashion" / "In-shop Clothes Retrieval Benchmark"
    seg = bench / "Anno" / "segmentation"
    split_names = {"train": ["img/MEN/a/01_front.jpg", "img/MEN/a/02_side.jpg"], "query": ["img/WOMEN/b/01_front.jpg"],
                   "gallery": ["img/WOMEN/b/02_back.jpg"]}
    for split, names in split_names.items():
        seg.mkdir(parents=True, exist_ok=True)
        (seg / f"DeepFashion_segmentation_{split}.json").write_text(json.dumps(
            {"images": [{"file_name": n, "id": i} for i, n in enumerate(names)]}))
        for n in names:
            _img(seg / n, 40, 20, seed=1)
            mask = np.zeros((40, 20, 3), np.uint8)
            mask[:20] = PART_COLORS[11]          # top half: colour 11 (hair)
            mask[20:, :10] = PART_COLORS[7]      # bottom-left: colour 7
            mask[39, 19] = (1, 2, 3)             # a colour outside the palette
            Image.fromarray(mask).save(seg / n.replace(".jpg", "_segment.png"))
    train = build_dataset("deepfashion", tmp_path, split="train", image_size=S)
    test = build_dataset("deepfashion", tmp_path, split="test", image_size=S)
    assert len(train) == 2 and len(test) == 2
    item = test[0]
    m = item["mask"]
    assert item["image"].shape == (3, S, S) and m.shape == (S, S)
    # 40 x 20 letterboxed to 32 x 16 centred: columns 0..7 and 24..31 are padding (background, white)
    assert (m[:, :8] == 0).all() and (m[:, 24:] == 0).all()
    assert (item["image"][:, :, :8] == 1.0).all()
    assert m[5, 12] == 11 and m[25, 10] == 7 and m[25, 20] == 0
    assert set(np.unique(colors_to_ids(np.array([[[1, 2, 3]]], np.uint8)))) == {255}


# --- PartImageNet -----------------------------------------------------------------------------------
def _coco(images, anns):
    return {"images": images, "annotations": anns,
            "categories": [{"id": 3, "name": "Fish Tail"}, {"id": 0, "name": "Quadruped Head"}]}


def test_partimagenet_pdisconet_split(tmp_path):
    images, anns, rows = [], [], []
    for i, (wnid, label, is_test) in enumerate([("n01", 0, 0), ("n01", 0, 1), ("n02", 1, 0)]):
        name = f"{wnid}_{i}.JPEG"
        _img(tmp_path / "train" / wnid / name, 40, 40, seed=i)
        images.append({"id": 10 + i, "file_name": name, "height": 40, "width": 40})
        # category 3 (-> part 2) on the left half, category 0 (-> part 1) drawn later over the top-left
        anns.append({"image_id": 10 + i, "category_id": 3, "segmentation": [[0, 0, 19, 0, 19, 39, 0, 39]]})
        anns.append({"image_id": 10 + i, "category_id": 0, "segmentation": [[0, 0, 9, 0, 9, 9, 0, 9]]})
        rows.append(f"{10 + i}\t{is_test}\t{label}\t{wnid}\t{name}")
    (tmp_path / "train.json").write_text(json.dumps(_coco(images, anns)))
    (tmp_path / "newdset.txt").write_text("\n".join(rows) + "\n")
    train = build_dataset("partimagenet", tmp_path, split="train", image_size=S)
    test = build_dataset("partimagenet", tmp_path, split="test", image_size=S)
    assert len(train) == 2 and len(test) == 1
    assert [train[i]["class_id"] for i in range(2)] == [0, 1]
    m = test[0]["mask"]
    assert m.shape == (S, S)
    assert m[2, 2] == 1 and m[20, 4] == 2 and m[20, 28] == 0


def test_partimagenet_official_layout(tmp_path):
    images, anns = [], []
    for i, wnid in enumerate(["n05", "n03"]):
        name = f"{wnid}_{i}.JPEG"
        _img(tmp_path / "images" / "val" / wnid / name, 30, 40, seed=i)
        images.append({"id": i, "file_name": name, "height": 30, "width": 40})
        anns.append({"image_id": i, "category_id": 0, "segmentation": [[20, 0, 39, 0, 39, 29, 20, 29]]})
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "val.json").write_text(json.dumps(_coco(images, anns)))
    val = build_dataset("partimagenet", tmp_path, split="val", image_size=S)
    assert [val[i]["class_id"] for i in range(2)] == [1, 0]     # wnids sorted: n03 -> 0, n05 -> 1
    m = val[0]["mask"]
    assert (m[:, 20:] == 1).all() and (m[:, :12] == 0).all()
    with pytest.raises(FileNotFoundError, match="newdset.txt"):
        build_dataset("partimagenet", tmp_path, split="test")
