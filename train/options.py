"""The training configuration: one object, saved in every run folder, overridable from the CLI.

Defaults per dataset live in ``train/configs/*.json`` (``--config``); any flag on the command line
overrides them, and ``--model KEY=VALUE`` overrides a model hyperparameter (PartDiscConfig field).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from partdisc_core import PartDiscConfig, apply_overrides  # noqa: E402
from partdisc_core.config import parse_value  # noqa: E402
from partdisc_core.augment import AugmentConfig  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class TrainConfig:
    dataset: str = "synthetic"
    data_root: list[str] = field(default_factory=list)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    val_root: str | None = None
    """A landmarks folder for model selection: the first ``val_fit`` images fit the landmark
    regressor, the rest measure it. Never pass a test split here."""
    val_fit: int = 300
    val_max: int = 500
    select_metric: str = "nmi"
    batch_size: int = 32
    max_steps: int = 2000
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    lr_milestones: tuple[float, ...] = (0.7, 0.9)
    """Step schedule: the learning rate is multiplied by ``lr_gamma`` at these fractions of max_steps."""
    lr_gamma: float = 0.1
    warmup_steps: int = 0
    grad_clip: float = 0.0
    num_workers: int = 2
    device: str = "auto"
    amp: bool = True
    """bf16 autocast on CUDA (ignored on CPU unless ``amp_cpu``)."""
    amp_cpu: bool = False
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    out: str = "runs/partdisc"
    resume: bool = False
    log_every: int = 10
    eval_every: int = 500
    save_every: int = 200
    sample_every: int = 500
    snapshot_every: int = 0
    """Also keep an fp16 copy of the model every N steps under <out>/snapshots/ (0: never)."""
    save_dtype: str = "float16"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: PartDiscConfig = field(default_factory=PartDiscConfig)

    # --- (de)serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["augment"] = self.augment.to_dict()
        d["model"] = self.model.to_dict()
        return json.loads(json.dumps(d, default=list))

    def to_json(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {unknown}")
        aug = data.pop("augment", None)
        model = data.pop("model", None)
        cfg = cls(**{k: tuple(v) if k in ("betas", "lr_milestones") else v for k, v in data.items()})
        if aug is not None:
            aug = dict(aug)
            if "zoom" in aug:
                aug["zoom"] = tuple(aug["zoom"])
            cfg.augment = AugmentConfig(**aug)
        if model is not None:
            cfg.model = PartDiscConfig.from_dict(model) if "version" in model else PartDiscConfig(**{
                k: tuple(v) if isinstance(v, list) else v for k, v in model.items()})
        if isinstance(cfg.data_root, str):
            cfg.data_root = [cfg.data_root]
        return cfg

    @classmethod
    def from_json(cls, path: Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train a part discovery model (Xia et al.). Every option overrides --config.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="a JSON file of defaults, e.g. train/configs/faces.json (or just 'faces')")
    p.add_argument("--dataset", help="dataset name: folder, landmarks, synthetic, celeba, aflw, cub, deepfashion, partimagenet")
    p.add_argument("--data-root", action="append", help="dataset folder; repeat to concatenate several")
    p.add_argument("--val-root", help="landmarks folder used for model selection (never the test split)")
    p.add_argument("--val-fit", type=int, help="images of --val-root that fit the landmark regressor")
    p.add_argument("--num-parts", type=int, help="K, the number of foreground parts")
    p.add_argument("--encoder", choices=["resnet", "dino"], help="feature-map encoder")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--out", help="run folder: checkpoints, config, logs and plots")
    p.add_argument("--resume", action="store_true", help="continue from the last save in --out")
    p.add_argument("--seed", type=int)
    p.add_argument("--save-every", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--sample-every", type=int)
    p.add_argument("--log-every", type=int)
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model hyperparameter, e.g. --model tau=0.5 --model perceptual_net=mobilenetv2")
    p.add_argument("--augment", action="append", default=[], metavar="KEY=VALUE",
                   help="override a paired-view setting, e.g. --augment zoom=1.0,1.5")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any other training setting, e.g. --set weight_decay=0.0")
    return p


def _parse_like(text: str, like: Any) -> Any:
    """A command-line string as the type of ``like`` (dicts as JSON, None-valued settings as text)."""
    if isinstance(like, dict):
        return json.loads(text)
    if like is None:
        return None if text.lower() == "none" else text
    return parse_value(text, tuple(like) if isinstance(like, list) else like)


def resolve_config(argv: list[str] | None = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    cfg = TrainConfig()
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            path = CONFIG_DIR / f"{args.config}.json"
        if not path.is_file():
            raise SystemExit(f"config {args.config!r} not found (looked in {CONFIG_DIR})")
        cfg = TrainConfig.from_json(path)
    if args.resume and args.out and (Path(args.out) / "train_config.json").is_file() and not args.config:
        cfg = TrainConfig.from_json(Path(args.out) / "train_config.json")
    simple = {"dataset": "dataset", "val_root": "val_root", "val_fit": "val_fit", "batch_size": "batch_size",
              "max_steps": "max_steps", "lr": "lr", "num_workers": "num_workers", "device": "device", "out": "out",
              "seed": "seed", "save_every": "save_every", "eval_every": "eval_every",
              "sample_every": "sample_every", "log_every": "log_every", "compile": "compile"}
    for arg, key in simple.items():
        value = getattr(args, arg)
        if value is not None:
            setattr(cfg, key, value)
    if args.data_root:
        cfg.data_root = list(args.data_root)
    if args.resume:
        cfg.resume = True
    if args.no_amp:
        cfg.amp = False
    model_over = list(args.model)
    if args.num_parts is not None:
        model_over.append(f"num_parts={args.num_parts}")
    if args.encoder is not None:
        if args.encoder == "dino" and cfg.model.encoder != "dino":
            cfg.model = PartDiscConfig.preset("dino", **{k: v for k, v in cfg.model.to_dict().items()
                                                         if k not in ("encoder", "encoder_image_size", "lambda_con")})
        model_over.append(f"encoder={args.encoder}")
    cfg.model = apply_overrides(cfg.model, model_over)
    for item in args.augment:
        key, value = item.split("=", 1)
        if not hasattr(cfg.augment, key):
            raise SystemExit(f"unknown augment setting {key!r}")
        setattr(cfg.augment, key, _parse_like(value, getattr(cfg.augment, key)))
    for item in args.set:
        key, value = item.split("=", 1)
        if key not in {f.name for f in fields(cfg)} or key in ("model", "augment"):
            raise SystemExit(f"unknown training setting {key!r}")
        setattr(cfg, key, _parse_like(value, getattr(cfg, key)))
    return cfg


__all__ = ["TrainConfig", "resolve_config", "build_parser"]
