"""Datasets, all behind one interface: ``build_dataset(name, root, split, image_size, **options)``.

Every dataset yields dicts with ``image`` (3, S, S) float in [0, 1] and, where the data has them,
``landmarks`` (P, 2) xy pixels in the returned image's frame, ``orig_landmarks`` / ``orig_size``
(in the original file's pixels), ``mask`` (S, S) long part annotations, ``class_id`` and ``path``.
New datasets register themselves with :func:`register_dataset`.
"""
from __future__ import annotations

from typing import Any, Callable

from torch.utils.data import ConcatDataset, Dataset

_REGISTRY: dict[str, Callable[..., Dataset]] = {}


def register_dataset(name: str):
    def wrap(factory):
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory
    return wrap


def available_datasets() -> list[str]:
    return sorted(_REGISTRY)


def build_dataset(name: str, root: Any = None, split: str = "train", image_size: int = 128, **options: Any) -> Dataset:
    """Build a registered dataset. ``root`` may be a list of folders: their datasets are concatenated."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    if isinstance(root, (list, tuple)):
        if len(root) == 1:
            root = root[0]
        else:
            return ConcatDataset([_REGISTRY[name](root=r, split=split, image_size=image_size, **options) for r in root])
    return _REGISTRY[name](root=root, split=split, image_size=image_size, **options)


from . import folder, landmarks, synthetic  # noqa: E402,F401  (registration)
from . import aflw, celeba, cub, deepfashion, partimagenet  # noqa: E402,F401  (benchmark layouts)
