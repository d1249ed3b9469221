"""What a training run does besides the optimisation step, each in one small function: logging,
validation with best-model selection, pictures, resumable state and snapshots. The loop registers
them once (:func:`default_actions`) and calls ``maybe_run`` after every step."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from partdisc_core import save_model

from plots import plot_validation
from state import save_state


class Meter:
    """Running means of the losses and the image rate since the last log line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.images = 0
        self.tic = time.perf_counter()

    def update(self, losses: dict[str, float], images: int) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1
        self.images += images

    def summary(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {"images_per_s": self.images / max(time.perf_counter() - self.tic, 1e-9),
                **{k: v / n for k, v in self.sums.items()}}


@dataclass
class RunContext:
    """The state shared by the loop and its actions."""

    cfg: Any
    out: Path
    model: Any
    optimizer: Any
    main: bool = True
    step: int = 0
    best: float | None = None
    history: list = field(default_factory=list)
    elapsed_s: float = 0.0
    meter: Meter = field(default_factory=Meter)
    schedule: Any = None
    rate: float = 0.0  # images per second of the last log window

    def restore(self, info: dict) -> None:
        self.step = int(info["step"])
        self.history = info.get("history", [])
        self.best = info.get("best")
        self.elapsed_s = float(info.get("elapsed_s", 0.0))

    def extra_state(self) -> dict:
        elapsed = self.schedule.elapsed_s() if self.schedule is not None else self.elapsed_s
        return {"history": self.history[-2000:], "best": self.best, "elapsed_s": elapsed}


@dataclass
class Action:
    """Run ``fn(ctx)`` every ``every`` steps (and after the last step when ``at_end``)."""

    every: int
    fn: Callable[[RunContext], None]
    at_end: bool = True

    def maybe_run(self, ctx: RunContext, last: bool) -> None:
        if (self.every and ctx.step % self.every == 0) or (last and self.at_end):
            self.fn(ctx)


def _write_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def log_losses(ctx: RunContext) -> None:
    record = {"step": ctx.step, "lr": ctx.optimizer.param_groups[0]["lr"], **ctx.meter.summary()}
    if ctx.schedule is not None:
        record["elapsed_s"] = round(ctx.schedule.elapsed_s(), 2)
    ctx.rate = record["images_per_s"]
    ctx.meter.reset()
    ctx.history.append(record)
    _write_jsonl(ctx.out / "log.jsonl", record)


def _better(metric: str, new: float, best: float | None) -> bool:
    """Whether ``new`` replaces the kept model. A tie replaces it too: the later model has trained
    longer on everything the metric does not see (a decoder-only stage never changes the part metrics,
    so with strict comparison it would keep its first validation's decoder)."""
    if best is None or not math.isfinite(best):
        return math.isfinite(new)
    lower_is_better = "nme" in metric.split("_")  # any landmark error: nme, val2_nme_ratio, ...
    return new <= best if lower_is_better else new >= best


COLLAPSE_METRIC = "nmi"
COLLAPSE_POINTS = 10.0
"""A validation whose NMI falls more than this many points below the run's best so far is flagged
(``collapse`` in val.jsonl, a warning in the log, a red mark in val.png)."""


def collapse(val_log: Path, metrics: dict) -> float | None:
    """How far ``metrics``' NMI fell below the best NMI already in ``val_log``, when that is more than
    COLLAPSE_POINTS; else None."""
    if COLLAPSE_METRIC not in metrics or not Path(val_log).is_file():
        return None
    earlier = [json.loads(line).get(COLLAPSE_METRIC) for line in Path(val_log).read_text().splitlines() if line.strip()]
    earlier = [v for v in earlier if isinstance(v, (int, float)) and math.isfinite(v)]
    if not earlier:
        return None
    fall = max(earlier) - metrics[COLLAPSE_METRIC]
    return round(fall, 2) if fall > COLLAPSE_POINTS else None


def make_validate(ctx: RunContext) -> Callable[[RunContext], None] | None:
    """Validation on ``val_root`` (fit / test split of a landmarks folder), keeping the best model."""
    cfg = ctx.cfg
    if not cfg.val_root:
        return None
    from partdisc_core.data.landmarks import split_landmarks
    from partdisc_core.evaluation import evaluate_landmarks
    from partdisc_core.fidelity import reconstruction_metrics

    fit, test = split_landmarks(cfg.val_root, cfg.model.input_size, min(cfg.val_fit, cfg.val_max - 1), cfg.val_max)
    second = None
    if cfg.val2_root:
        from partdisc_core.data import build_dataset
        from partdisc_core.evaluation import interleaved_split

        second = interleaved_split(build_dataset("landmarks", cfg.val2_root, split="train",
                                                 image_size=cfg.model.input_size, **cfg.dataset_options))

    dense68 = None
    if cfg.val68_root:
        from partdisc_core.data.landmarks import LandmarksDataset
        from partdisc_core.evaluation import evaluate_dense68, limit_dataset

        dense68 = limit_dataset(LandmarksDataset(cfg.val68_root, cfg.model.input_size, csv_name="landmarks68.csv"),
                                cfg.val68_num)

    def validate(ctx: RunContext) -> None:
        tic = time.monotonic()
        ctx.model.eval()
        try:
            metrics = evaluate_landmarks(ctx.model, fit, test, batch_size=64)
            if cfg.val_recon:
                metrics.update(reconstruction_metrics(ctx.model, test, batch_size=64))
            if second is not None:
                extra = evaluate_landmarks(ctx.model, *second, batch_size=64)
                extra["nme_ratio"] = extra["nme"] / extra["nme_mean_shape"]
                metrics.update({f"val2_{k}": v for k, v in extra.items()})
            if dense68 is not None:
                extra = evaluate_dense68(ctx.model, dense68, batch_size=64)
                metrics.update({f"val68_{k}": v for k, v in extra.items() if not k.startswith("num")})
        finally:
            ctx.model.train()
        value = metrics.get(cfg.select_metric, float("nan"))
        fall = collapse(ctx.out / "val.jsonl", metrics)
        if fall is not None:
            metrics["collapse"] = fall
        _write_jsonl(ctx.out / "val.jsonl", {"step": ctx.step, **metrics})
        print(f"\n[partdisc] step {ctx.step} validation: "
              + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if isinstance(v, float)), file=sys.stdout)
        if fall is not None:
            print(f"[partdisc] WARNING: validation {COLLAPSE_METRIC} fell {fall:.1f} points below its best "
                  f"(> {COLLAPSE_POINTS:g}): the parts are collapsing; the selection keeps the best model",
                  file=sys.stdout, flush=True)
        plot_validation(ctx.out / "val.jsonl", ctx.out / "val.png", cfg.select_metric)
        if _better(cfg.select_metric, value, ctx.best):
            ctx.best = value
            save_model(ctx.model, ctx.out, dtype=getattr(torch, cfg.save_dtype),
                       metadata={"step": ctx.step, "selected_by": cfg.select_metric, "validation": metrics})
        if ctx.schedule is not None:  # keep time for the final validation inside a budget
            ctx.schedule.reserve_s = 1.2 * (time.monotonic() - tic) + 5.0

    return validate


def make_plot(ctx: RunContext, dataset) -> Callable[[RunContext], None]:
    from torch.utils.data import DataLoader

    from plots import plot_losses, plot_samples

    fixed = next(iter(DataLoader(dataset, batch_size=8, shuffle=False, collate_fn=lambda s: torch.stack(
        [x["image"] for x in s]))))

    def plot(ctx: RunContext) -> None:
        plot_losses(ctx.out / "log.jsonl", ctx.out / "loss.png")
        plot_samples(ctx.model, fixed, ctx.out / "samples.png", ctx.step)

    return plot


def save_training_state(ctx: RunContext) -> None:
    save_state(ctx.out / "last", ctx.model, ctx.optimizer, ctx.step, ctx.extra_state())


def save_snapshot(ctx: RunContext) -> None:
    save_model(ctx.model, ctx.out / "snapshots" / f"step_{ctx.step:07d}", dtype=getattr(torch, ctx.cfg.save_dtype),
               metadata={"step": ctx.step})


def with_every_core(fn: Callable[[RunContext], None]) -> Callable[[RunContext], None]:
    """``fn`` with the threads of every core of a CPU data-parallel run (``launch.py``): rank 0
    validates while the other ranks wait for it at the next step's all-reduce."""
    cores = int(os.environ.get("PARTDISC_CPU_CORES", "0") or 0)
    if cores <= torch.get_num_threads():
        return fn

    def run(ctx: RunContext) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(cores)
        try:
            fn(ctx)
        finally:
            torch.set_num_threads(threads)
    return run


def default_actions(ctx: RunContext, dataset) -> list[Action]:
    """The periodic actions of a run, in the order they run after a step."""
    cfg = ctx.cfg
    actions = [Action(cfg.log_every, log_losses)]
    validate = make_validate(ctx)
    if validate is not None:
        actions.append(Action(cfg.eval_every, with_every_core(validate)))
    actions.append(Action(cfg.sample_every, make_plot(ctx, dataset)))
    actions.append(Action(cfg.save_every, save_training_state))
    if cfg.snapshot_every:
        actions.append(Action(cfg.snapshot_every, save_snapshot, at_end=False))
    return actions


class ProgressBar:
    """tqdm bar over steps with the losses, images/s and the time left (by steps or budget)."""

    def __init__(self, cfg, start: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=cfg.max_steps, initial=start, disable=not enabled, dynamic_ncols=True,
                        mininterval=2.0, file=sys.stdout, desc="train", bar_format=(
                            "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"))
        self.cfg = cfg

    def update(self, ctx: RunContext, schedule) -> None:
        self.bar.update(1)
        if ctx.history and ctx.history[-1]["step"] == ctx.step:
            rec = ctx.history[-1]
            steps_per_s = rec["images_per_s"] / max(self.cfg.batch_size, 1)
            left = schedule.seconds_left(ctx.step, steps_per_s)
            if schedule.budget_s and math.isfinite(left):  # the bar's end: where the budget will stop
                self.bar.total = min(self.cfg.max_steps, ctx.step + int(left * steps_per_s) + 1)
            self.bar.set_postfix_str(
                f"loss {rec.get('total', float('nan')):.3f} rec {rec.get('rec', float('nan')):.3f} "
                f"{rec['images_per_s']:.1f} img/s, {_clock(left)} left")

    def close(self) -> None:
        self.bar.close()


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
