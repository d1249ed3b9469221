"""ONNX export (partdisc_core.onnx): onnxruntime on the CPU gives what PyTorch gives.

The shipped model is exported once per module and checked on two real photos (the public-domain
astronaut of scikit-image and Grace Hopper of matplotlib) against ``predict(..., output_size=None)``
to 1e-3; tiny random models cover another encoder (the frozen MobileNetV2) with a PartFormer input
smaller than the encoder's (an antialiased resize inside the graph) and class-conditional part tokens. The benchmark runs once, briefly.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from conftest import tiny_model
from partdisc_core import DEFAULT_CHECKPOINT, load_model, save_model
from partdisc_core import onnx as pd_onnx

ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-3



@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """(model, export result, the two photos as files)."""
    if not (DEFAULT_CHECKPOINT / "model.safetensors").is_file():
        pytest.skip("shipped checkpoint absent")
    tmp = tmp_path_factory.mktemp("onnx")
    model = load_model()
    result = pd_onnx.export_onnx(model, tmp / "faces.onnx")
    return model, result, pd_onnx.example_photos(tmp / "photos")


def test_module_name_does_not_shadow_onnx():
    import onnx

    assert pd_onnx.__name__ == "partdisc_core.onnx"
    assert Path(onnx.__file__).parent.name == "onnx" and hasattr(onnx, "load_model")


def test_graph_interface(shipped):
    import onnx

    model, result, _ = shipped
    cfg = model.cfg
    s, k1, size, grid = cfg.input_size, cfg.num_parts + 1, cfg.image_size, cfg.image_size // cfg.patch_size
    f_side = model.encode(torch.zeros(1, 3, s, s))[0].shape[-1]
    assert result.render == result.maps.with_name("faces.render.onnx") and result.render.is_file()
    proto = onnx.load(str(result.maps))
    shape = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert {v.name: shape(v) for v in proto.graph.input} == {"images": ["batch", 3, s, s]}
    outputs = {v.name: shape(v) for v in proto.graph.output}
    assert outputs["part_maps"] == ["batch", k1, size, size] and outputs["attention"] == ["batch", k1, grid, grid]
    assert outputs["parts"] == ["batch", k1, cfg.feature_dim]
    assert outputs["features"] == ["batch", cfg.feature_dim, f_side, f_side]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["partdisc_config"]) == json.loads(cfg.to_json()) and meta["input_size"] == str(s)
    assert not list(result.maps.parent.glob("*.data"))  # weights inside the .onnx files


def test_onnxruntime_matches_predict_on_photos(shipped):
    model, result, photos = shipped
    pred = model.predict(photos, output_size=None)
    images = pd_onnx.prepare(model, photos)
    s, k1, size = model.cfg.input_size, model.cfg.num_parts + 1, model.cfg.image_size
    assert images.shape == (2, 3, s, s) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    sess = pd_onnx.session(result.maps, threads=1)
    maps, attention, parts, features = sess.run(list(pd_onnx.MAP_OUTPUTS), {"images": images})
    ref = pred.masks.numpy()
    assert maps.shape == ref.shape == (2, k1, size, size)
    assert np.abs(maps - ref).max() <= TOL
    assert np.abs(attention - pred.attention.numpy()).max() <= TOL
    assert np.abs(parts - pred.parts.numpy()).max() <= TOL
    assert np.allclose(maps.sum(axis=1), 1.0, atol=1e-4)
    assert (maps.argmax(1) == pred.labels.numpy()).mean() >= 0.999
    # the photos give different maps: the comparison is not between two constant outputs
    assert np.abs(maps[0] - maps[1]).mean() > 0.01
    # dynamic batch: one image alone gives its row of the batch
    one = sess.run(["part_maps"], {"images": images[1:]})[0]
    assert one.shape == (1, k1, size, size) and np.abs(one[0] - maps[1]).max() <= TOL
    # F and G of the graph are what model.encode gives
    feats_ref, parts_ref = model.encode(photos)
    assert np.abs(features - feats_ref.numpy()).max() <= TOL


def test_render_graph_swaps_parts_like_swap_parts(shipped):
    model, result, photos = shipped
    maps_sess, render_sess = pd_onnx.session(result.maps, 1), pd_onnx.session(result.render, 1)
    _, _, parts, features = maps_sess.run(None, {"images": pd_onnx.prepare(model, photos)})
    swapped = parts.copy()
    swapped[0, :-1], swapped[1, :-1] = parts[1, :-1], parts[0, :-1]  # all foreground parts exchanged
    out = render_sess.run(["image"], {"features": np.concatenate([features, features]),
                                      "parts": np.concatenate([swapped, parts])})[0]
    ref = model.swap_parts(photos[0], photos[1], parts=None)
    assert out.shape == (4, 3, model.cfg.image_size, model.cfg.image_size)
    assert np.abs(out[0] - ref.swapped_a[0].numpy()).max() <= TOL
    assert np.abs(out[1] - ref.swapped_b[0].numpy()).max() <= TOL
    assert np.abs(out[2] - ref.recon_a[0].numpy()).max() <= TOL
    assert np.abs(out[0] - out[2]).max() > 10 * TOL  # the swap changes the picture beyond the tolerance


@pytest.mark.parametrize("changes", [
    # the frozen MobileNetV2 encoder at 128 px, the PartFormer at 64: an antialiased resize in the graph
    dict(encoder="mobilenetv2", encoder_image_size=128, mobilenet_weights="random", perceptual_weights="random",
         encoder_head_width=32),
    dict(num_classes=2),
], ids=["mobilenetv2-encoder-larger-input", "class-conditional"])
def test_tiny_models_export_and_match(tmp_path, changes):
    model = tiny_model(seed=3, **changes).eval()
    result = pd_onnx.export_onnx(model, tmp_path / "tiny.onnx", render=False)
    assert result.render is None and not (tmp_path / "tiny.render.onnx").exists()
    size = model.cfg.input_size
    images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    sess = pd_onnx.session(result.maps, threads=1)
    feed = {"images": images.numpy()}
    ids = None
    if model.cfg.num_classes > 1:
        ids = torch.tensor([0, 1, 1])
        feed["class_ids"] = ids.numpy()
    maps, attention, _, _ = sess.run(None, feed)
    pred = model.predict(images, class_ids=ids, output_size=None)
    assert maps.shape == (3, 5, model.cfg.image_size, model.cfg.image_size)
    assert np.abs(maps - pred.masks.numpy()).max() <= TOL
    assert np.abs(attention - pred.attention.numpy()).max() <= TOL


def test_cli_exports_and_refuses_bad_input(tmp_path, capsys):
    model = tiny_model(seed=1).eval()
    ckpt = save_model(model, tmp_path / "ckpt")
    summary = pd_onnx.main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx"),
                            "--render-out", str(tmp_path / "r.onnx")])
    assert summary == {"maps": str(tmp_path / "m.onnx"), "render": str(tmp_path / "r.onnx")}
    images = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    feats, parts = model.encode(torch.from_numpy(images))
    image = pd_onnx.session(tmp_path / "r.onnx").run(None, {"features": feats.numpy(), "parts": parts.numpy()})[0]
    assert np.abs(image - model.reconstruct(torch.from_numpy(images)).numpy()).max() <= TOL
    with pytest.raises(SystemExit) as exc:
        pd_onnx.main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "m.txt")])
    assert exc.value.code == 2 and ".onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        pd_onnx.main(["--checkpoint", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.onnx")])
    assert exc.value.code == 2 and "not found" in capsys.readouterr().err


def test_export_refuses_training_mode(tmp_path):
    with pytest.raises(RuntimeError, match="eval"):
        pd_onnx.export_onnx(tiny_model(), tmp_path / "x.onnx")


def test_latency_benchmark_reports_both_runtimes(tmp_path):
    ckpt = save_model(tiny_model(seed=2).eval(), tmp_path / "ckpt")
    out = tmp_path / "lat.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "onnx_latency.py"), "--checkpoint", str(ckpt),
                           "--batch", "1,2", "--repeats", "2", "--warmup", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    results = report["results"]
    for b in (1, 2):
        for row in ("maps", "render"):
            for runtime in ("torch", "onnxruntime"):
                fig = results[f"b{b}.{row}.{runtime}"]
                assert 0 < fig["min_ms"] <= fig["median_ms"] and fig["repeats"] == 2
        assert results[f"b{b}.maps.max_abs_diff"] <= TOL
    assert report["machine"]["onnxruntime"] == onnxruntime.__version__
    assert "speed-up" in proc.stdout
