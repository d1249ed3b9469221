"""The learning-rate schedule and the time budget of a run.

Progress is the larger of two fractions: steps done / ``max_steps`` and, with ``max_minutes``, time
spent / budget. The step schedule multiplies the rate by ``lr_gamma`` at each of ``lr_milestones``
of progress, so a run cut short by its budget still ends in its decayed phase, whatever speed the
machine turned out to have.
"""
from __future__ import annotations

import time

import torch


class Schedule:
    """Learning rate, progress and the stopping rule of one run (resumable: ``elapsed_s``)."""

    def __init__(self, cfg, start_step: int = 0, elapsed_s: float = 0.0, clock=time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.origin = clock() - float(elapsed_s)
        self.start_step = start_step
        self.reserve_s = 0.0
        """Seconds kept back at the end of a budget for the final validation and save."""
        self._shared: tuple[int, float] | None = None  # (step, rank 0's elapsed seconds) under DDP

    @property
    def budget_s(self) -> float | None:
        return self.cfg.max_minutes * 60.0 if self.cfg.max_minutes else None

    def elapsed_s(self, step: int | None = None) -> float:
        """Seconds since the start; for the step that :meth:`finished` last looked at under DDP,
        rank 0's figure, so every rank sets the same learning rate."""
        if step is not None and self._shared is not None and self._shared[0] == step:
            return self._shared[1]
        return self.clock() - self.origin

    def progress(self, step: int) -> float:
        """Fraction of the run done, in [0, 1]."""
        done = step / max(self.cfg.max_steps, 1)
        if self.budget_s:
            done = max(done, self.elapsed_s(step) / max(self.budget_s - self.reserve_s, 1e-9))
        return min(done, 1.0)

    def lr_factor(self, step: int) -> float:
        cfg = self.cfg
        factor = 1.0
        if cfg.warmup_steps and step < cfg.warmup_steps:
            factor = (step + 1) / cfg.warmup_steps
        progress = self.progress(step)
        for milestone in cfg.lr_milestones:
            if progress >= milestone:
                factor *= cfg.lr_gamma
        return factor

    def set_lr(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        factor = self.lr_factor(step)
        for group in optimizer.param_groups:
            group["lr"] = self.cfg.lr * factor

    def finished(self, step: int) -> bool:
        """True once ``max_steps`` are done or the time budget (less the reserve) is spent; under
        torchrun every rank takes rank 0's decision, so they stop at the same step."""
        elapsed = self.elapsed_s()
        done = step >= self.cfg.max_steps or bool(self.budget_s and elapsed >= self.budget_s - self.reserve_s)
        if torch.distributed.is_available() and torch.distributed.is_initialized() and self.budget_s:
            shared = torch.tensor([float(done), elapsed], dtype=torch.float64)
            if torch.distributed.get_backend() == "nccl":
                shared = shared.cuda()
            torch.distributed.broadcast(shared, src=0)
            done, self._shared = bool(shared[0].item()), (step, float(shared[1].item()))
        return done

    def seconds_left(self, step: int, steps_per_s: float) -> float:
        """Estimated seconds until the run ends (by steps or by budget, whichever comes first)."""
        by_steps = (self.cfg.max_steps - step) / steps_per_s if steps_per_s > 0 else float("inf")
        if self.budget_s:
            return max(0.0, min(by_steps, self.budget_s - self.reserve_s - self.elapsed_s()))
        return max(0.0, by_steps)
