"""torch.hub entry points of partdisc.

    import torch
    model = torch.hub.load(".", "faces_k16", source="local")      # a clone; works offline
    model = torch.hub.load("OWNER/partdisc", "faces_k16")         # the GitHub repository
    out = model.predict("face.jpg")                               # out.masks, out.labels, out.attention

    model = torch.hub.load(".", "partdisc", source="local", checkpoint="runs/mine")   # any checkpoint

torch.hub puts this folder first on sys.path, so the ``partdisc_core`` next to this file is the one used
(unless another copy was imported earlier in the process).
"""
dependencies = ["torch", "torchvision", "timm", "safetensors", "numpy", "PIL", "huggingface_hub"]
"""Modules torch.hub checks before loading (import names: ``PIL`` is the pillow package)."""


def _shipped(name: str, pretrained: bool, device: str, config_overrides: dict):
    from partdisc_core import PartDiscModel, load_model, read_checkpoint
    from partdisc_core.checkpoint import shipped_checkpoint

    folder = shipped_checkpoint(name)
    if pretrained:
        return load_model(folder, device=device, **config_overrides)
    cfg, _, _ = read_checkpoint(folder)
    if config_overrides:
        cfg = cfg.replace(**config_overrides)
    return PartDiscModel(cfg).to(device).eval()


def faces_k16(pretrained: bool = True, device: str = "cpu", **config_overrides):
    """The shipped face model (checkpoints/faces-k16: K = 16 parts + background, 128-px input, frozen
    ImageNet MobileNetV2 encoder), in eval mode, ready for ``predict``. ``pretrained=False``: the same
    architecture, randomly initialised. ``config_overrides`` change settings that do not touch the
    weights."""
    return _shipped("faces-k16", pretrained, device, config_overrides)


def faces_k8(pretrained: bool = True, device: str = "cpu", **config_overrides):
    """The previous shipped face model (checkpoints/faces-k8: K = 8 parts + background), kept for
    comparison; arguments as :func:`faces_k16`."""
    return _shipped("faces-k8", pretrained, device, config_overrides)


def partdisc(checkpoint: str | None = None, device: str = "cpu", revision: str | None = None, **config_overrides):
    """Any partdisc checkpoint: a folder, a ``.safetensors`` file or a hub repo id ``OWNER/NAME``
    (None: the shipped face model); see ``partdisc_core.load_model``."""
    from partdisc_core import load_model

    return load_model(checkpoint, device=device, revision=revision, **config_overrides)
