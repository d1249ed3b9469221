"""Packaging: ``pip install .`` gives a working library with the shipped weights, torch.hub loads
the shipped model from a clone, and the scripts find ``partdisc_core`` without editing sys.path.

The install test builds and installs the package into a new venv (no pip of its own, no
site-packages of the system) whose only view of the dependencies is a ``.pth`` line to this test
environment's site-packages: ``pip install --no-deps --no-build-isolation`` then runs offline in
seconds. Path lines in a ``.pth`` file do not run the ``.pth`` files they point to, so the editable
install of this checkout stays invisible there; the test checks that the installed copy is the one used.
The full check (a fresh venv, ``pip install .`` with dependencies) is in the README.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from partdisc_core import DEFAULT_CHECKPOINT, PartDiscModel, load_model

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = sorted([*ROOT.glob("train/*.py"), *ROOT.glob("benchmarks/*.py"), ROOT / "app.py", ROOT / "hubconf.py"])
SOURCES = ["pyproject.toml", "LICENSE", "README.md", "partdisc_core", "checkpoints"]

needs_shipped = pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").is_file(),
                                   reason="shipped checkpoint absent")


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **extra}


def test_pyproject_lists_every_subpackage():
    from setuptools import find_packages

    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = set(find_packages(str(ROOT), include=["partdisc_core", "partdisc_core.*"]))
    assert found - listed == set(), "add the new subpackages to [tool.setuptools] packages"
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"partdisc_core.weights": "checkpoints"}
    names = {dep.split(">")[0].split("=")[0].strip().lower() for dep in PYPROJECT["project"]["dependencies"]}
    assert {"torch", "timm", "safetensors", "numpy", "pillow", "huggingface_hub"} <= names


def test_no_script_edits_sys_path():
    edit = re.compile(r"sys\.path\s*(\.(insert|append|extend)\b|\[|\+=|=[^=])")
    offenders = [str(p.relative_to(ROOT)) for p in SCRIPTS if edit.search(p.read_text())]
    assert offenders == [], f"these scripts edit sys.path: {offenders}"


@pytest.mark.parametrize("script", ["train/main.py", "train/evaluate.py", "benchmarks/bench.py"])
def test_scripts_run_from_another_folder(tmp_path, script):
    """They import partdisc_core as installed (scripts/setup_env.sh: pip install -e .) and their
    own folder's modules; no PYTHONPATH, not started from the repository."""
    proc = subprocess.run([sys.executable, str(ROOT / script), "--help"], cwd=tmp_path, env=_clean_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "usage:" in proc.stdout


@needs_shipped
def test_torch_hub_loads_the_shipped_model_from_a_clone():
    import importlib.util

    spec = importlib.util.spec_from_file_location("partdisc_hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    assert {"torch", "timm", "safetensors", "PIL"} <= set(hubconf.dependencies)
    assert all(importlib.util.find_spec(name) for name in hubconf.dependencies)
    model = torch.hub.load(str(ROOT), "faces_k16", source="local")
    assert isinstance(model, PartDiscModel) and not model.training and model.cfg.num_parts == 16
    image = np.random.default_rng(1).integers(0, 256, (96, 80, 3), dtype=np.uint8)
    out = model.predict(image)
    assert out.masks.shape == (1, 17, 96, 80)
    assert torch.allclose(out.masks, load_model().predict(image).masks)
    previous = torch.hub.load(str(ROOT), "faces_k8", source="local")   # the previous default, kept
    assert previous.cfg.num_parts == 8 and previous.predict(image).masks.shape == (1, 9, 96, 80)
    untrained = torch.hub.load(str(ROOT), "faces_k16", source="local", pretrained=False)
    assert untrained.cfg == model.cfg
    assert not torch.equal(untrained.partformer.part_tokens, model.partformer.part_tokens)
    same = torch.hub.load(str(ROOT), "partdisc", source="local", checkpoint=str(DEFAULT_CHECKPOINT))
    assert torch.equal(same.partformer.part_tokens, model.partformer.part_tokens)


@needs_shipped
def test_pip_install_gives_the_library_and_the_shipped_weights(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib, "test-deps.pth").write_text("\n".join(sorted(here)) + "\n")
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                              "--ignore-installed", "--no-index", "--disable-pip-version-check", str(src)],
                             cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    code = ("import json, numpy as np, partdisc_core\n"
            "from partdisc_core import DEFAULT_CHECKPOINT, load_model\n"
            "out = load_model().predict(np.full((50, 60, 3), 127, np.uint8))\n"
            "import partdisc_core.onnx, partdisc_core.hub\n"
            "print(json.dumps({'file': partdisc_core.__file__, 'weights': str(DEFAULT_CHECKPOINT),\n"
            "                  'shape': list(out.masks.shape), 'sum': float(out.masks.sum(1).mean()),\n"
            "                  'card': (DEFAULT_CHECKPOINT.parent / 'README.md').is_file(),\n"
            "                  'landmarks': load_model().landmarks is not None,\n"
            "                  'part_names': load_model().part_names is not None}))\n")
    proc = subprocess.run([str(python), "-c", code], cwd=workdir, env=_clean_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(info["file"]).is_relative_to(Path(purelib))           # the installed copy, not this checkout
    assert Path(info["weights"]) == Path(purelib) / "partdisc_core" / "weights" / "faces-k16"
    assert info["shape"] == [1, 17, 50, 60] and abs(info["sum"] - 1.0) < 1e-5 and info["card"]
    assert info["landmarks"]                                          # landmarks.json travels with the weights
    assert info["part_names"]                                         # and part_names.json
    assert not (Path(purelib) / "train").exists() and not (Path(purelib) / "tests").exists()
    for script in ("partdisc-onnx", "partdisc-hub", "partdisc-visualize"):
        assert (venv / "bin" / script).is_file()
    cli = subprocess.run([str(venv / "bin" / "partdisc-hub"), "push", "--help"], cwd=workdir, env=_clean_env(),
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and "--dry-run" in cli.stdout, cli.stderr[-2000:]


def test_mobilenet_checkpoints_load_without_the_imagenet_file(tmp_path, monkeypatch):
    """A plain install has no offline ImageNet MobileNetV2 file (and no network): loading a
    checkpoint whose config says mobilenet_weights="imagenet" must take the frozen backbone from the
    checkpoint itself, never ask for the ImageNet weights."""
    from partdisc_core import perceptual, save_model
    from partdisc_core.testing import tiny_config

    torch.manual_seed(0)
    model = PartDiscModel(tiny_config(encoder="mobilenetv2", encoder_image_size=128, mobilenet_weights="random",
                                      perceptual_weights="random", encoder_head_width=32)).eval()
    model.cfg = model.cfg.replace(mobilenet_weights="imagenet")  # as a model trained on ImageNet features says
    folder = save_model(model, tmp_path / "ckpt", dtype=None)
    real = perceptual.mobilenetv2_features

    def no_imagenet(weights):
        if weights == "imagenet":
            raise AssertionError("load_model asked for the ImageNet MobileNetV2 weights")
        return real(weights)

    monkeypatch.setattr(perceptual, "mobilenetv2_features", no_imagenet)
    loaded = load_model(folder)
    assert loaded.cfg.mobilenet_weights == "imagenet"
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
