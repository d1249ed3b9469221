"""A multi-stage recipe in one config: ``python train/main.py --config faces`` runs every stage of
the config's ``stages`` list in turn (see ``TrainConfig.stages``).

Stage i trains in ``<out>/stages/<i>-<name>/`` (its own train_config.json, logs, validation,
plots and selected model), starting from the previous stage's selected model. A finished stage
leaves ``stage_done.json`` and is skipped when the recipe runs again, so ``--resume`` continues an
interrupted recipe from the stage it was in (that stage resumes from its last save). When all
stages are done, the last stage's model is copied to ``<out>`` with ``recipe.json`` (each stage's
settings, budget, steps, time and selected validation)."""
from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path
from typing import Callable

from options import TrainConfig, apply_settings

DONE = "stage_done.json"


def stage_configs(cfg: TrainConfig) -> list[tuple[str, TrainConfig]]:
    """(name, config) of every stage, each a copy of ``cfg`` with the stage's settings, budget (scaled
    so that the budgets sum to ``cfg.max_minutes`` when that is set) and run folder; ``init_from`` is
    filled in as the stages run."""
    total = sum(float(s["minutes"]) for s in cfg.stages)
    scale = cfg.max_minutes / total if cfg.max_minutes > 0 else 1.0
    out = []
    for i, stage in enumerate(cfg.stages, 1):
        sc = copy.deepcopy(cfg)
        sc.stages = []
        sc = apply_settings(sc, list(stage.get("set", [])))
        sc.max_minutes = round(float(stage["minutes"]) * scale, 4)
        sc.out = str(Path(cfg.out) / "stages" / f"{i}-{stage['name']}")
        out.append((stage["name"], sc))
    return out


def run_stages(cfg: TrainConfig, run_one: Callable[[TrainConfig, Path], None]) -> Path:
    """Run the recipe; ``run_one(stage_config, config_file)`` trains one stage (in this process or
    in data-parallel ranks). Returns ``cfg.out``, which holds the final model."""
    from partdisc_core import load_model, save_model

    import torch

    previous = cfg.init_from
    summary = []
    stages = stage_configs(cfg)
    for i, (name, sc) in enumerate(stages, 1):
        folder = Path(sc.out)
        done = folder / DONE
        if done.is_file():
            print(f"[partdisc] stage {i}/{len(stages)} ({name}) already done: {folder}", flush=True)
        else:
            sc.init_from = previous or ""
            sc.resume = cfg.resume and (folder / "last").exists()
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "stage_config.json"
            sc.to_json(path)
            print(f"[partdisc] stage {i}/{len(stages)} ({name}): {sc.max_minutes:g} min"
                  + (f", from {previous}" if previous else ", from scratch") + f" -> {folder}", flush=True)
            tic = time.monotonic()
            run_one(sc, path)
            validations = _read_jsonl(folder / "val.jsonl")
            record = {"stage": i, "name": name, "minutes": sc.max_minutes, "init_from": sc.init_from,
                      "wall_minutes": round((time.monotonic() - tic) / 60, 2),
                      "steps": (_read_jsonl(folder / "log.jsonl") or [{}])[-1].get("step"),
                      "selected": _selected(validations, sc.select_metric)}
            done.write_text(json.dumps(record, indent=2) + "\n")
        summary.append(json.loads(done.read_text()))
        previous = str(folder)
    out = Path(cfg.out)
    save_model(load_model(previous), out, dtype=getattr(torch, cfg.save_dtype))
    for name in ("val.jsonl", "loss.png", "val.png", "samples.png"):
        if (Path(previous) / name).is_file():
            shutil.copy2(Path(previous) / name, out / name)
    cfg.to_json(out / "train_config.json")
    (out / "recipe.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _selected(validations: list[dict], metric: str) -> dict | None:
    """The validation the stage's selection kept (hooks._better's rule: the last of the best)."""
    from hooks import _better

    best = None
    for row in validations:
        if _better(metric, row.get(metric, float("nan")), None if best is None else best.get(metric)):
            best = row
    return best


__all__ = ["run_stages", "stage_configs"]
