"""Checkpoints: safetensors weights + a JSON config. Nothing is ever unpickled.

A checkpoint is a folder holding ``model.safetensors`` and ``config.json`` (the config is also
embedded in the safetensors metadata, so the weight file alone is enough). ``load_model`` takes
such a folder, the weight file itself, or a Hugging Face hub repo id (through huggingface_hub,
which also serves it from the local cache when ``HF_HUB_OFFLINE=1``).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from .config import PartDiscConfig
from .model import PartDiscModel

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "partdisc/1"


DEFAULT_NAME = "faces-k16"
"""The shipped face model that ``load_model()`` and the demo use; the other folders of ``checkpoints/``
(``faces-k8``, the previous default; ``faces-k8-scratch``, the from-scratch encoder) ship beside it
and load by :func:`shipped_checkpoint`."""


def shipped_checkpoint(name: str = DEFAULT_NAME) -> Path:
    """A shipped checkpoint folder: ``partdisc_core/weights/NAME`` in an installed wheel (pyproject.toml
    packages ``checkpoints/`` there), else ``checkpoints/NAME`` of the source tree (a clone, an
    editable install)."""
    here = Path(__file__).resolve().parent
    packaged = here / "weights" / name
    return packaged if packaged.is_dir() else here.parent / "checkpoints" / name


DEFAULT_CHECKPOINT = shipped_checkpoint()
SIDE_FILES = ("landmarks.json", "part_names.json")
"""Optional files beside the weights: the landmarks-from-parts map (keypoints.py) and the part names
(partnames.py); a hub download fetches them too."""
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded: missing, corrupt, or made for another config."""


def _frozen_prefixes(model: PartDiscModel) -> tuple[str, ...]:
    return ("encoder.backbone.",) if model.cfg.encoder == "dino" else ()


def _includes_frozen(meta: dict[str, str]) -> bool:
    """Whether a checkpoint's metadata says its frozen backbone weights were saved with it."""
    return meta.get("includes_frozen", "False") == "True"


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_side_file(folder: str | Path, name: str, record: dict) -> Path:
    """Write a checkpoint folder's JSON side file (``landmarks.json``, ``part_names.json``) atomically."""
    path = Path(folder) / name
    _atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n"))
    return path


def load_side_file(folder: str | Path, name: str, fmt: str, what: str, parse):
    """A checkpoint folder's JSON side file ``name`` read by ``parse(record)``, or None when there is
    none. A file that is not JSON of format ``fmt``, or that ``parse`` rejects (ValueError, KeyError,
    TypeError), raises ValueError naming the file as not "a ``what`` of this version"."""
    path = Path(folder) / name
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or record.get("format") != fmt:
            found = record.get("format") if isinstance(record, dict) else type(record).__name__
            raise ValueError(f"format {found!r}, expected {fmt!r}")
        return parse(record)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a {what} of this version: {exc}") from exc


def save_model(model: PartDiscModel, path: str | Path, dtype: torch.dtype | None = None,
               include_frozen: bool = False, metadata: dict[str, Any] | None = None) -> Path:
    """Save ``model`` to a folder (``model.safetensors`` + ``config.json``) or to a ``.safetensors``
    file. Writes are atomic (temp file, then rename). ``dtype=torch.float16`` halves the size.
    The frozen DINO backbone is left out unless ``include_frozen`` (it is rebuilt from the config)."""
    from safetensors.torch import save_file

    path = Path(path)
    weights = path if path.suffix == ".safetensors" else path / WEIGHTS_NAME
    skip = () if include_frozen else _frozen_prefixes(model)
    state = {}
    for name, tensor in model.state_dict().items():
        if skip and name.startswith(skip):
            continue
        t = tensor.detach().cpu()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        state[name] = t.contiguous()
    config_text = model.cfg.to_json()
    meta = {"format": FORMAT, "config": config_text, "includes_frozen": str(bool(include_frozen))}
    for key, value in (metadata or {}).items():
        meta[str(key)] = value if isinstance(value, str) else json.dumps(value)
    _atomic_write(weights, lambda tmp: save_file(state, tmp, metadata=meta))
    config_path = weights.with_name(CONFIG_NAME) if path.suffix != ".safetensors" else weights.with_suffix(".json")
    _atomic_write(config_path, lambda tmp: Path(tmp).write_text(config_text + "\n"))
    if getattr(model, "landmarks", None) is not None and path.suffix != ".safetensors":
        from .keypoints import save_part_landmarks

        save_part_landmarks(model.landmarks, path)
    if getattr(model, "part_names", None) is not None and path.suffix != ".safetensors":
        from .partnames import save_part_names

        save_part_names(model.part_names, path)
    return weights.parent if path.suffix != ".safetensors" else weights


def resolve_weights(source: str | Path | None, revision: str | None = None) -> Path:
    """A local weight file for a folder, a file or a hub repo id (the shipped model for None)."""
    if source is None:
        source = DEFAULT_CHECKPOINT
    path = Path(source).expanduser()
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(f"{path} holds no {WEIGHTS_NAME}; is it a partdisc checkpoint folder?")
        return weights
    if path.is_file():
        return path
    text = str(source)
    if HUB_ID.match(text) and not text.startswith((".", "/", "~")):
        try:
            from huggingface_hub import hf_hub_download

            weights = Path(hf_hub_download(text, WEIGHTS_NAME, revision=revision))
            for optional in SIDE_FILES:  # landmarks-from-parts map, part names: into the same snapshot folder
                try:
                    hf_hub_download(text, optional, revision=revision)
                except Exception:
                    pass
            return weights
        except Exception as exc:  # offline, missing repo, missing file ...
            raise CheckpointError(
                f"{text!r} is no local folder or file, and could not fetch {WEIGHTS_NAME} of hub repo {text!r} "
                f"({type(exc).__name__}: {exc}). "
                "Offline (HF_HUB_OFFLINE=1) only repos already in the local hub cache can be loaded; "
                "or pass a local checkpoint folder."
            ) from exc
    raise CheckpointError(f"checkpoint {text!r} not found: expected a folder, a .safetensors file or a hub repo id")


def read_checkpoint(source: str | Path | None = None, revision: str | None = None
                    ) -> tuple[PartDiscConfig, dict[str, torch.Tensor], dict[str, str]]:
    """Config, tensors and metadata of a checkpoint, without building a model."""
    return _read(resolve_weights(source, revision))


def _read(weights: Path) -> tuple[PartDiscConfig, dict[str, torch.Tensor], dict[str, str]]:
    """Config, tensors and metadata of a local weight file."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({exc})") from exc
    config_text = meta.get("config")
    if config_text is None:
        sibling = weights.with_name(CONFIG_NAME)
        if not sibling.is_file():
            raise CheckpointError(f"{weights} has no embedded config and no {CONFIG_NAME} beside it")
        config_text = sibling.read_text()
    try:
        cfg = PartDiscConfig.from_dict(json.loads(config_text))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"the config of {weights} is invalid: {exc}") from exc
    return cfg, state, meta


def load_weights(model: PartDiscModel, state: dict[str, torch.Tensor], meta: dict[str, str], problem: str) -> None:
    """Copy a checkpoint's tensors (and its metadata ``meta``) into ``model`` after checking that they
    fit it: every tensor present (the frozen DINO backbone may be left out unless the metadata says it
    is included), none unknown, every shape the same; otherwise :class:`CheckpointError` starting
    with ``problem`` and naming the tensors."""
    own = model.state_dict()
    skip = () if _includes_frozen(meta) else _frozen_prefixes(model)
    expected = {k for k in own if not (skip and k.startswith(skip))}
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [k for k in set(state) & set(own) if tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensors (e.g. {unexpected[:3]})")
        if mismatched:
            parts.append("shape mismatch for " + ", ".join(
                f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in sorted(mismatched)[:3]))
        raise CheckpointError(f"{problem}: " + "; ".join(parts))
    with torch.no_grad():
        for name, tensor in state.items():
            own[name].copy_(tensor.to(own[name].dtype))


def load_model(source: str | Path | None = None, device: str | torch.device = "cpu",
               revision: str | None = None, expect: PartDiscConfig | None = None,
               **config_overrides: Any) -> PartDiscModel:
    """Load a model in eval mode: ``load_model()`` gives the shipped face model,
    ``load_model("runs/x")`` a local folder or file, ``load_model("owner/repo")`` a hub repo.

    ``expect``: raise if the checkpoint's architecture differs from this config. ``config_overrides``
    change settings that do not touch the weights (e.g. ``interpolate_features=False``,
    ``dino_weights="/path/dino.pth"``)."""
    weights = resolve_weights(source, revision)   # once: a hub id is looked up once
    cfg, state, meta = _read(weights)
    if config_overrides:
        cfg = cfg.replace(**config_overrides)
    if expect is not None:
        diff = {k: (v, getattr(cfg, k)) for k, v in expect.to_dict().items() if cfg.to_dict()[k] != v}
        if diff:
            raise CheckpointError(f"checkpoint config differs from the expected one: {diff}")
    build_cfg = cfg.replace(dino_weights="random") if (cfg.encoder == "dino" and _includes_frozen(meta)) else cfg
    if cfg.encoder == "mobilenetv2":
        # Its frozen backbone is in every such checkpoint (checked below as missing tensors): build it
        # from random weights, so loading never needs the ImageNet file (a plain pip install, offline).
        build_cfg = build_cfg.replace(mobilenet_weights="random")
    model = PartDiscModel(build_cfg)
    model.cfg = cfg
    load_weights(model, state, meta,
                 "the weights do not fit the checkpoint's config (was it saved with another config or edited?)")
    model.landmarks = _beside(weights, cfg.num_parts, "landmarks")
    model.part_names = _beside(weights, cfg.num_parts, "part names")
    return model.to(device).eval()


def _beside(weights: Path, num_parts: int, what: str):
    """The ``landmarks.json`` (``what="landmarks"``) or ``part_names.json`` (``"part names"``) next to
    a checkpoint's weights, or None. A damaged one is left out with a warning: the parts do not
    depend on it."""
    from .keypoints import load_part_landmarks
    from .partnames import load_part_names

    load = {"landmarks": load_part_landmarks, "part names": load_part_names}[what]
    try:
        return load(weights.parent, num_parts)
    except ValueError as exc:
        warnings.warn(f"{what} left out: {exc}")
        return None


__all__ = ["save_model", "load_model", "load_side_file", "save_side_file", "read_checkpoint", "resolve_weights",
           "shipped_checkpoint", "CheckpointError", "DEFAULT_CHECKPOINT", "DEFAULT_NAME"]
