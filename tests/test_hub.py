"""Hub publishing (partdisc_core.hub) up to the network boundary, and loading a published model
back from a local hub cache offline.

The upload is tested with ``huggingface_hub.HfApi`` replaced by a recorder; the cache test builds
the layout huggingface_hub uses (``models--OWNER--NAME/{refs,blobs,snapshots}``) under a temporary
``HF_HOME`` and loads from it in a fresh process started in another folder.
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch

from conftest import tiny_model
from partdisc_core import DEFAULT_CHECKPOINT, CheckpointError, load_model, save_model
from partdisc_core import hub

ROOT = Path(__file__).resolve().parent.parent
needs_shipped = pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").is_file(),
                                   reason="shipped checkpoint absent")


class RecordingApi:
    """Stands in for huggingface_hub.HfApi: records the calls, uploads nothing."""

    calls: list = []
    fail: Exception | None = None

    def create_repo(self, repo_id, **kwargs):
        RecordingApi.calls.append(("create_repo", repo_id, kwargs))
        if RecordingApi.fail is not None:
            raise RecordingApi.fail
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        RecordingApi.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/abc"})()


@pytest.fixture
def api(monkeypatch):
    RecordingApi.calls = []
    RecordingApi.fail = None
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    return RecordingApi


@pytest.fixture
def run_dir(tmp_path):
    """A tiny training run: checkpoint, train_config (synthetic data), one evaluation."""
    run = tmp_path / "run"
    save_model(tiny_model(seed=5).eval(), run)
    (run / "train_config.json").write_text(json.dumps({"dataset": "synthetic", "data_root": []}))
    (run / "eval_synthetic.json").write_text(json.dumps(
        {"nme": 12.3456, "nmi": 41.5, "ari": 30.25, "num_fit": 100, "num_test": 50, "dataset": "synthetic"}))
    return run


@pytest.fixture
def figure(tmp_path):
    """A stand-in example figure (drawing the real one is tested once, in the upload test)."""
    from PIL import Image

    path = tmp_path / "figure.png"
    Image.new("RGB", (16, 12), (200, 10, 10)).save(path)
    return path


@needs_shipped
def test_dry_run_of_the_shipped_model_writes_the_repository_folder(tmp_path, api):
    out = tmp_path / "repo"
    hub.main(["push", str(DEFAULT_CHECKPOINT), "someone/faces-k16", "--dry-run", "--out", str(out)])
    assert api.calls == []  # nothing uploaded
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "README.md", "examples.png", "train_config.json",
            "landmarks.json", "part_names.json"} <= names
    assert (out / "model.safetensors").read_bytes() == (DEFAULT_CHECKPOINT / "model.safetensors").read_bytes()
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "license: other" in card.split("---")[1]
    assert 'load_model("someone/faces-k16")' in card and "K = 16" in card
    for terms in ("CelebA (Liu et al., ICCV 2015), CUHK MMLab: non-commercial research use only",
                  "MTFL (Zhang et al., ECCV 2014", "**research use only**"):
        assert terms in card
    evals = sorted(DEFAULT_CHECKPOINT.glob("eval_*.json"))
    assert evals, "the shipped checkpoint has evaluation JSONs"
    for path in evals:
        record = json.loads(path.read_text())
        row = next(line for line in card.splitlines() if line.startswith(f"| {path.stem[5:]} |"))
        assert f"{record['nmi']:.2f}" in row and f"{record['nme']:.2f}" in row
        assert path.name in names
    assert "![part maps" in card and "(examples.png)" in card
    # what was written loads as the same model
    a, b = load_model(out), load_model(DEFAULT_CHECKPOINT)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.landmarks is not None and (a.landmarks.regressor.weights == b.landmarks.regressor.weights).all()
    assert a.part_names is not None and a.part_names == b.part_names             # the names travel too


def test_push_uploads_exactly_the_written_files(tmp_path, run_dir, api, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    out = tmp_path / "repo"
    out.mkdir()
    (out / "notes.txt").write_text("not part of the model")
    hub.main(["push", str(run_dir), "me/tiny-parts", "--out", str(out), "--private"])
    (kind1, repo1, kw1), (kind2, repo2, kw2) = api.calls
    assert (kind1, repo1) == ("create_repo", "me/tiny-parts")
    assert kw1["private"] is True and kw1["exist_ok"] is True and kw1["repo_type"] == "model"
    assert (kind2, repo2) == ("upload_folder", "me/tiny-parts")
    assert Path(kw2["folder_path"]) == out
    assert set(kw2["allow_patterns"]) == {"model.safetensors", "config.json", "README.md", "examples.png",
                                          "train_config.json", "eval_synthetic.json"}
    from PIL import Image

    with Image.open(out / "examples.png") as im:  # drawn: the run had no figure
        assert im.width > 300 and im.height > 300
    card = (out / "README.md").read_text()
    assert "license: mit" in card and "synthetic faces generated by partdisc_core.synthetic" in card
    assert "| synthetic |" in card and "12.35" in card and "41.50" in card and "K = 4" in card


def test_upload_errors_are_reported(tmp_path, run_dir, api, monkeypatch, capsys, figure):
    fig = figure
    common = ["push", str(run_dir), "me/tiny", "--out", str(tmp_path / "repo"), "--figure", str(fig)]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as exc:
        hub.main(common)
    assert exc.value.code == 2 and "HF_HUB_OFFLINE" in capsys.readouterr().err and api.calls == []
    assert (tmp_path / "repo" / "examples.png").read_bytes() == fig.read_bytes()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    api.fail = PermissionError("401 Unauthorized")
    with pytest.raises(SystemExit) as exc:
        hub.main(common)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "401 Unauthorized" in err and "HF_TOKEN" in err


def test_training_data_without_known_terms_needs_data_terms(tmp_path, run_dir, api, capsys, figure):
    (run_dir / "train_config.json").write_text(json.dumps({"dataset": "folder", "data_root": ["my_photos"]}))
    args = ["push", str(run_dir), "me/mine", "--dry-run", "--out", str(tmp_path / "repo"),
            "--figure", str(figure)]
    with pytest.raises(SystemExit) as exc:
        hub.main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "my_photos" in err and "--data-terms" in err
    hub.main(args + ["--data-terms", "My photos: taken by the author, CC BY 4.0"])
    card = (tmp_path / "repo" / "README.md").read_text()
    assert "- My photos: taken by the author, CC BY 4.0" in card and "license: other" in card
    (run_dir / "train_config.json").unlink()
    with pytest.raises(SystemExit):
        hub.main(args)
    assert "train_config.json" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["not-a-repo-id"], "OWNER/NAME"),
    (["me/x", "--eval", "{missing}"], "not readable"),
])
def test_bad_arguments(tmp_path, run_dir, api, capsys, args, message):
    args = [a.replace("{missing}", str(tmp_path / "missing.json")) for a in args]
    with pytest.raises(SystemExit) as exc:
        hub.main(["push", str(run_dir), *args, "--dry-run", "--out", str(tmp_path / "repo")])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        hub.main(["push", str(tmp_path / "no-run"), "me/x", "--dry-run"])
    assert "does not exist" in capsys.readouterr().err


def _fake_hub_cache(cache: Path, repo_id: str, folder: Path) -> str:
    """The layout huggingface_hub keeps: blobs by hash, a snapshot of links, refs/main -> commit."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for path in folder.iterdir():
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / path.name).symlink_to(os.path.relpath(blob, snapshot))
    return commit


def test_load_model_reads_a_pushed_folder_from_the_local_hub_cache_offline(tmp_path, run_dir, api, figure):
    folder = tmp_path / "repo"
    hub.push(run_dir, "someone/tiny-parts", out=folder, dry_run=True, figure=figure)
    hf_home = tmp_path / "hf-home"
    _fake_hub_cache(hf_home / "hub", "someone/tiny-parts", folder)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    image = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    np.save(workdir / "image.npy", image)
    code = ("import json, numpy as np\n"
            "from partdisc_core import load_model\n"
            "m = load_model('someone/tiny-parts')\n"
            "p = m.predict(np.load('image.npy'), output_size=None)\n"
            "np.save('masks.npy', p.masks.numpy())\n"
            "try:\n"
            "    load_model('someone/not-cached')\n"
            "except Exception as exc:\n"
            "    print(json.dumps({'error': type(exc).__name__, 'text': str(exc)}))\n")
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hf_home / "hub"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("HF_TOKEN", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = load_model(run_dir).predict(image, output_size=None).masks.numpy()
    np.testing.assert_allclose(np.load(workdir / "masks.npy"), expected, atol=1e-6)
    missing = json.loads(proc.stdout.strip().splitlines()[-1])
    assert missing["error"] == CheckpointError.__name__ and "HF_HUB_OFFLINE" in missing["text"]
