"""Checkpoints: bit-exact safetensors round trips, atomic writes, clear load errors, no pickle,
the default checkpoint and the Hugging Face hub path (served from a fake local cache offline)."""
import json
import pickle
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import random_views, tiny_config, tiny_model
import partdisc_core.checkpoint as ckpt
from partdisc_core import CheckpointError, PartDiscConfig, load_model, read_checkpoint, save_model


def _trained_a_little(model):
    """Change batch-norm running statistics so that buffers are not at their defaults."""
    model.train()
    with torch.no_grad():
        model(*random_views(seed=9))
    return model


def _file_tensors(path):
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}


def _rewrite(src, dst, config=None, drop=()):
    """Copy a weight file with a replaced embedded config and/or tensors left out."""
    meta, tensors = _file_tensors(src)
    if config is not None:
        meta["config"] = json.dumps(config)
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v for k, v in tensors.items() if k not in drop}, str(dst), metadata=meta)
    return dst


# ---------------------------------------------------------------- round trips
def test_float32_round_trip_is_bit_exact(tmp_path, model):
    _trained_a_little(model).eval()
    folder = save_model(model, tmp_path / "ckpt", dtype=None)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    torch.manual_seed(123)  # a different random init underneath
    loaded = load_model(folder)
    assert not loaded.training and loaded.cfg == model.cfg
    assert PartDiscConfig.from_json(folder / "config.json") == model.cfg
    own, back = model.state_dict(), loaded.state_dict()
    assert own.keys() == back.keys()
    for k in own:
        assert own[k].dtype == back[k].dtype and torch.equal(own[k], back[k]), k
    x = random_views()[0]
    a, b = model.predict(x), loaded.predict(x)
    assert torch.equal(a.masks, b.masks) and torch.equal(a.attention, b.attention)


def test_float16_save_loads_close(tmp_path, model):
    model.eval()
    f32 = save_model(model, tmp_path / "f32", dtype=None) / "model.safetensors"
    f16 = save_model(model, tmp_path / "f16", dtype=torch.float16) / "model.safetensors"
    _, tensors = _file_tensors(f16)
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
    assert f16.stat().st_size < 0.6 * f32.stat().st_size
    loaded = load_model(f16.parent)
    for k, v in model.state_dict().items():
        w = loaded.state_dict()[k]
        assert w.dtype == v.dtype, k  # loaded back at the model's own precision
        torch.testing.assert_close(w, v, atol=1e-3, rtol=1e-3)
    x = random_views()[0]
    torch.testing.assert_close(loaded.predict(x).masks, model.predict(x).masks, atol=2e-2, rtol=0)


def test_single_file_checkpoint_carries_its_config(tmp_path, model):
    path = save_model(model, tmp_path / "one.safetensors", dtype=None)
    assert path == tmp_path / "one.safetensors" and (tmp_path / "one.json").is_file()
    (tmp_path / "one.json").unlink()  # the config is embedded in the metadata as well
    loaded = load_model(path)
    assert loaded.cfg == model.cfg
    assert torch.equal(loaded.partformer.part_tokens, model.partformer.part_tokens)


def test_default_checkpoint_and_overrides(tmp_path, monkeypatch, checkpoint_dir):
    model, folder = checkpoint_dir
    monkeypatch.setattr(ckpt, "DEFAULT_CHECKPOINT", folder)
    loaded = load_model()
    assert torch.equal(loaded.decoder.net[0][0].weight, model.decoder.net[0][0].weight)
    changed = load_model(folder, interpolate_features=False)
    assert changed.cfg.interpolate_features is False and changed.cfg.num_parts == model.cfg.num_parts
    monkeypatch.setattr(ckpt, "DEFAULT_CHECKPOINT", tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="not found"):
        load_model()


def test_expect_guards_the_architecture(checkpoint_dir):
    model, folder = checkpoint_dir
    assert load_model(folder, expect=model.cfg).cfg == model.cfg
    with pytest.raises(CheckpointError, match="num_parts"):
        load_model(folder, expect=model.cfg.replace(num_parts=8))


# ---------------------------------------------------------------- atomic writes, no pickle
def test_saving_is_atomic(tmp_path, monkeypatch, checkpoint_dir):
    model, folder = checkpoint_dir
    save_model(model, folder, dtype=None)  # overwriting in place works and leaves no temp files
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]

    import safetensors.torch

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    before = (folder / "model.safetensors").read_bytes()
    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    torch.nn.init.zeros_(model.decoder.net[0][0].weight)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, folder, dtype=None)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert (folder / "model.safetensors").read_bytes() == before  # the old checkpoint is intact
    monkeypatch.undo()
    assert load_model(folder).decoder.net[0][0].weight.abs().sum() > 0


def test_checkpoint_is_safetensors_and_nothing_is_unpickled(monkeypatch, checkpoint_dir):
    model, folder = checkpoint_dir
    raw = (folder / "model.safetensors").read_bytes()
    assert not raw.startswith(b"PK") and raw[:1] != b"\x80"  # neither a torch zip nor a raw pickle
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"]["format"] == "partdisc/1"
    assert PartDiscConfig.from_json(header["__metadata__"]["config"]) == model.cfg

    def forbidden(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    cfg, state, meta = read_checkpoint(folder)
    assert cfg == model.cfg and meta["format"] == "partdisc/1"
    assert load_model(folder).cfg == model.cfg


# ---------------------------------------------------------------- load errors
def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "no" / "such" / "checkpoint")


def test_folder_without_weights(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(tmp_path / "empty")


def test_corrupt_and_truncated_files(tmp_path, checkpoint_dir):
    _, folder = checkpoint_dir
    raw = (folder / "model.safetensors").read_bytes()
    cases = {"garbage": b"this is not a checkpoint at all" * 10, "truncated": raw[: len(raw) // 2],
             "header_only": raw[:12], "empty": b""}
    for name, data in cases.items():
        bad = tmp_path / name / "model.safetensors"
        bad.parent.mkdir()
        bad.write_bytes(data)
        with pytest.raises(CheckpointError, match="not a readable safetensors"):
            load_model(bad.parent)


def test_weights_of_another_config(tmp_path, checkpoint_dir):
    model, folder = checkpoint_dir
    k8 = model.cfg.replace(num_parts=8).to_dict()
    bad = _rewrite(folder / "model.safetensors", tmp_path / "k8" / "model.safetensors", config=k8)
    with pytest.raises(CheckpointError, match="shape") as err:
        load_model(bad.parent)
    assert "part_tokens" in str(err.value) or "arcface" in str(err.value)


def test_missing_tensors(tmp_path, checkpoint_dir):
    _, folder = checkpoint_dir
    bad = _rewrite(folder / "model.safetensors", tmp_path / "cut" / "model.safetensors",
                   drop=("partformer.part_tokens",))
    with pytest.raises(CheckpointError, match="missing 1 tensors.*part_tokens"):
        load_model(bad.parent)


def test_unknown_config_key(tmp_path, checkpoint_dir):
    model, folder = checkpoint_dir
    cfg = {**model.cfg.to_dict(), "frobnication": 3}
    bad = _rewrite(folder / "model.safetensors", tmp_path / "odd" / "model.safetensors", config=cfg)
    with pytest.raises(CheckpointError, match="frobnication"):
        load_model(bad.parent)


def test_config_from_a_sibling_json_or_none(tmp_path, checkpoint_dir):
    model, folder = checkpoint_dir
    _, tensors = _file_tensors(folder / "model.safetensors")
    plain = tmp_path / "plain" / "model.safetensors"
    plain.parent.mkdir()
    save_file(tensors, str(plain))  # no metadata
    with pytest.raises(CheckpointError, match="no embedded config"):
        load_model(plain.parent)
    model.cfg.to_json(plain.parent / "config.json")
    assert load_model(plain.parent).cfg == model.cfg


# ---------------------------------------------------------------- the Hugging Face hub
@pytest.fixture
def fake_hub_cache(tmp_path, monkeypatch):
    """An offline Hugging Face cache under tmp_path: models--owner--name/{refs/main, snapshots/<commit>}."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read once at import time
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_load_from_the_hub_cache_offline(fake_hub_cache):
    from partdisc_core.partnames import PartNames

    model = tiny_model(seed=5).eval()
    model.part_names = PartNames(("nose", "mouth", "left eye", "right eye"), model.cfg.num_parts)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = fake_hub_cache / "models--owner--name"
    save_model(model, repo / "snapshots" / commit, dtype=None)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    loaded = load_model("owner/name")
    assert loaded.cfg == model.cfg and loaded.part_names == model.part_names  # part_names.json comes along
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_unknown_hub_repo_is_a_clear_error(fake_hub_cache):
    with pytest.raises(CheckpointError, match="hub repo 'nobody/nothing-here'"):
        load_model("nobody/nothing-here")


def test_a_missing_relative_folder_is_reported_as_such(fake_hub_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "runs/my-run" looks like a hub id as well as a local folder
    with pytest.raises(CheckpointError, match="'runs/my-run' is no local folder or file"):
        load_model("runs/my-run")
