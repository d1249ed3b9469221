"""The training configuration: one object, saved in every run folder, overridable from the CLI.

Defaults per dataset live in ``train/configs/*.json`` (``--config``); any flag on the command line
overrides them, and ``--model KEY=VALUE`` overrides a model hyperparameter (PartDiscConfig field).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from partdisc_core import PartDiscConfig, apply_overrides
from partdisc_core.config import parse_value, split_override
from partdisc_core.augment import AugmentConfig

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
    val2_root: str | None = None
    """A second landmarks folder measured at each validation, for another framing (e.g. MTFL's
    loose crops): its *training* split under ``dataset_options``' hold-out (so the held-out images
    stay untouched), interleaved into disjoint fit / measure images
    (``partdisc_core.evaluation.interleaved_split``). Logged in val.jsonl with a ``val2_`` prefix,
    ``val2_nme_ratio`` (NME / mean-shape NME) included; ``select_metric`` may name any of them."""
    val68_root: str | None = None
    """A folder of faces with ``landmarks68.csv`` (e.g. ``helen_val68``, validation only): ``val68_num``
    of its images, evenly spread, give the dense face figures at each validation (nmi68, ari68, bg68,
    coverage, spill; :mod:`partdisc_core.dense68`), logged with a ``val68_`` prefix."""
    val68_num: int = 200
    select_metric: str = "nmi"
    val_recon: bool = True
    """Also measure reconstruction PSNR, swap transfer and G cosine at each validation (logged in
    val.jsonl; ``select_metric`` may name one of them)."""
    batch_size: int = 32
    max_steps: int = 2000
    max_minutes: float = 0.0
    """Time budget: stop after this many minutes of training (0: none), then validate and save. The
    learning-rate schedule follows the larger of step and time progress, so it always ends decayed."""
    trainable: str = "all"
    """Which parts of the model train: "all", or comma-separated module names (e.g. "decoder" to
    refine the reconstructions of a trained model while its parts V and G stay exactly as they are;
    the others are frozen, their BatchNorm statistics too)."""
    init_from: str = ""
    """Start from the weights of this checkpoint (folder, file, hub id, or "shipped"), with a fresh
    optimiser: fine-tuning, or continuing a model across sessions. Ignored when resuming a saved state."""
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
    cpu_processes: int = 0
    """Training on the CPU: how many processes share each batch, data-parallel (0: one per core, as
    many as split the batch evenly, bounded by ``OMP_NUM_THREADS`` when set and by a container's CPU
    quota; 1: one process, all threads). Same maths; several single-thread processes use a CPU's
    cores better than one process's threads (``train/launch.py``)."""
    amp: bool = True
    """bf16 autocast where it is native: on CUDA, and on CPUs with AVX512-BF16 or AMX."""
    amp_cpu: bool = False
    """Force bf16 autocast on any CPU (slow where bf16 is emulated)."""
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
    stages: list[dict[str, Any]] = field(default_factory=list)
    """A multi-stage recipe in one config (``train/stages.py``): each stage is ``{"name": NAME,
    "minutes": M, "set": ["KEY=VALUE", ...]}`` and trains from the previous stage's selected model
    (the first stage from ``init_from``, or from scratch) with its ``set`` applied on top of the rest
    of this config, for M minutes; ``--max-minutes T`` scales the budgets to T minutes in all. Empty:
    one ordinary run."""
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
    p.add_argument("--val68-root", help="a folder with landmarks68.csv (e.g. helen_val68): dense face figures "
                   "at each validation")
    p.add_argument("--val2-root", help="a second landmarks folder validated on its training split (another framing)")
    p.add_argument("--num-parts", type=int, help="K, the number of foreground parts")
    p.add_argument("--encoder", choices=["resnet", "dino", "mobilenetv2"], help="feature-map encoder")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--max-minutes", type=float, help="time budget: train this long (or --max-steps), then "
                                                     "validate, save and exit; the lr schedule follows the budget")
    p.add_argument("--init-from", metavar="CHECKPOINT",
                   help="start from a checkpoint's weights (folder, file, hub id or 'shipped') with a fresh optimiser")
    p.add_argument("--lr", type=float)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--cpu-processes", type=int, help="on the CPU: data-parallel processes sharing each batch "
                                                      "(0: one per core; 1: a single process)")
    p.add_argument("--out", help="run folder: checkpoints, config, logs and plots")
    p.add_argument("--resume", action="store_true", help="continue from the last save in --out")
    p.add_argument("--seed", type=int)
    p.add_argument("--save-every", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--sample-every", type=int)
    p.add_argument("--log-every", type=int)
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast (float32 everywhere)")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override any setting with dotted keys, e.g. --set model.tau=0.5 augment.zoom=0.9,1.45 "
                        "weight_decay=0.0")
    p.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                   help="alias of --set model.KEY=VALUE (a model hyperparameter, PartDiscConfig)")
    p.add_argument("--augment", action="append", default=[], metavar="KEY=VALUE",
                   help="alias of --set augment.KEY=VALUE (a paired-view setting, AugmentConfig)")
    return p


def apply_settings(cfg: TrainConfig, items: list[str]) -> TrainConfig:
    """Apply dotted ``KEY=VALUE`` overrides (``model.tau=0.5``, ``augment.zoom=0.9,1.45``,
    ``weight_decay=0.0``) to a training config, each value parsed as the type of the setting."""
    model_items = []
    for item in items:
        try:
            key, value = split_override(item)
        except ValueError as exc:
            raise SystemExit(f"--set: {exc}")
        section, _, name = key.rpartition(".")
        if section == "model":
            model_items.append(f"{name}={value}")
        elif section == "augment":
            if name not in {f.name for f in fields(cfg.augment)}:
                raise SystemExit(f"unknown augment setting {name!r}")
            setattr(cfg.augment, name, parse_value(value, getattr(cfg.augment, name)))
        elif section or name not in {f.name for f in fields(cfg)} or name in ("model", "augment"):
            raise SystemExit(f"unknown training setting {key!r}")
        else:
            setattr(cfg, name, parse_value(value, getattr(cfg, name)))
    if model_items:
        try:
            cfg.model = apply_overrides(cfg.model, model_items)
        except ValueError as exc:
            raise SystemExit(f"--set: {exc}")
    return cfg


def check_stages(cfg: TrainConfig) -> None:
    """Refuse a malformed stage list before anything trains (each stage's settings are applied to a
    copy of the config, so an unknown key fails here, not hours into the recipe)."""
    names = []
    for i, stage in enumerate(cfg.stages, 1):
        if not isinstance(stage, dict) or set(stage) - {"name", "minutes", "set"}:
            raise SystemExit(f"stage {i}: expected {{'name', 'minutes', 'set'}}, got {stage!r}")
        name, minutes, items = stage.get("name"), stage.get("minutes"), stage.get("set", [])
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise SystemExit(f"stage {i}: 'name' must be a word (letters, digits, - or _), got {name!r}")
        if not isinstance(minutes, (int, float)) or minutes <= 0:
            raise SystemExit(f"stage {i} ({name}): 'minutes' must be a positive number, got {minutes!r}")
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise SystemExit(f"stage {i} ({name}): 'set' must be a list of KEY=VALUE strings")
        if any(split_override(x)[0] in ("stages", "out", "init_from", "max_minutes") for x in items):
            raise SystemExit(f"stage {i} ({name}): a stage cannot set stages, out, init_from or max_minutes")
        apply_settings(TrainConfig.from_dict(cfg.to_dict() | {"stages": []}), list(items))
        names.append(name)
    if len(set(names)) != len(names):
        raise SystemExit(f"stage names must differ, got {names}")


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
    simple = {"dataset": "dataset", "val_root": "val_root", "val2_root": "val2_root", "val68_root": "val68_root", "val_fit": "val_fit", "batch_size": "batch_size",
              "max_steps": "max_steps", "max_minutes": "max_minutes", "init_from": "init_from", "lr": "lr", "num_workers": "num_workers", "device": "device", "out": "out", "cpu_processes": "cpu_processes",
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
        cfg.amp = cfg.amp_cpu = False
    if cfg.init_from == "shipped":
        from partdisc_core.checkpoint import DEFAULT_CHECKPOINT

        cfg.init_from = str(DEFAULT_CHECKPOINT)
    if cfg.cpu_processes < 0:
        raise SystemExit("--cpu-processes must be >= 0 (0: one per core)")
    if cfg.max_minutes < 0:
        raise SystemExit("--max-minutes must be >= 0")
    model_over = list(args.model)
    if args.num_parts is not None:
        model_over.append(f"num_parts={args.num_parts}")
    if args.encoder is not None:
        if args.encoder != "resnet" and cfg.model.encoder != args.encoder:
            cfg.model = PartDiscConfig.preset(args.encoder, **{k: v for k, v in cfg.model.to_dict().items()
                                                         if k not in ("encoder", "encoder_image_size", "mobilenet_taps",
                                                                       "lambda_con")})
        model_over.append(f"encoder={args.encoder}")
    items = [f"model.{m}" for m in model_over] + [f"augment.{a}" for a in args.augment] + list(args.set)
    cfg = apply_settings(cfg, items)
    check_stages(cfg)
    return cfg


__all__ = ["TrainConfig", "resolve_config", "build_parser", "apply_settings", "check_stages"]
