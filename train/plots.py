"""Pictures of a run: the loss curves and a grid of part masks and reconstructions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def plot_losses(log_path: Path, out_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not Path(log_path).is_file():
        return
    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    if not rows:
        return
    keys = [k for k in ("total", "rec", "pix", "sc", "con", "area", "swap", "border") if k in rows[-1]]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8))
    steps = [r["step"] for r in rows]
    for ax, key in zip(axes, keys):
        ax.plot(steps, [r[key] for r in rows], lw=1)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    plt.close(fig)


VALIDATION_PANELS = (("nmi", "ari"), ("val68_coverage", "val68_spill", "val68_bg68"), ("val68_nmi68", "val68_ari68"),
                     ("psnr",), ("swap_transfer",))


def plot_validation(val_log: Path, out_path: Path, select_metric: str = "nmi") -> None:
    """The validation curves of a run (val.jsonl): one panel per group of figures it has, the selected
    metric's best step marked, and validations flagged ``collapse`` (NMI > 10 points below its best)
    in red, so a late collapse is visible at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not Path(val_log).is_file():
        return
    rows = [json.loads(line) for line in Path(val_log).read_text().splitlines() if line.strip()]
    panels = [[k for k in group if any(k in r for r in rows)] for group in VALIDATION_PANELS]
    if select_metric not in sum(panels, []) and any(select_metric in r for r in rows):
        panels.insert(0, [select_metric])
    panels = [p for p in panels if p]
    if not rows or not panels:
        return
    from hooks import _better

    best = None
    for r in rows:
        if _better(select_metric, r.get(select_metric, float("nan")), None if best is None else best[select_metric]):
            best = r
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 2.9), squeeze=False)
    for ax, keys in zip(axes[0], panels):
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            ax.plot(*zip(*pts), marker=".", lw=1, label=key)
        for r in rows:
            if r.get("collapse") is not None:
                ax.axvline(r["step"], color="red", alpha=0.35, lw=3)
        if best is not None:
            ax.axvline(best["step"], color="green", ls="--", lw=1)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"validation (green: kept by {select_metric}; red: collapse)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    plt.close(fig)


@torch.no_grad()
def plot_samples(model, images: torch.Tensor, out_path: Path, step: int) -> None:
    """Rows: the images, their part overlays (argmax) and their reconstructions."""
    from partdisc_core.inputs import to_uint8
    from partdisc_core.viz import legend_image, overlay_masks, save_png, stack_rows

    was_training = model.training
    model.eval()
    try:
        pred = model.predict(images, return_attention=False, output_size=None)
        recon = model.reconstruct(images)
    finally:
        model.train(was_training)
    size = model.cfg.image_size
    shown = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
    raw = to_uint8(shown)
    masks = torch.nn.functional.interpolate(pred.masks, size=(size, size), mode="bilinear")
    overlays = [overlay_masks(img, m.cpu().numpy(), opacity=0.6) for img, m in zip(raw, masks)]
    rows = [np.concatenate(list(raw), axis=1), np.concatenate(overlays, axis=1),
            np.concatenate(list(to_uint8(recon)), axis=1)]
    save_png(stack_rows(rows + [legend_image(model.cfg.num_parts)], pad=0), out_path)
