r"""Evaluate a part discovery model (§4.2): landmark NME (eq. 10), NMI / ARI and FG-NMI / FG-ARI.

    # two landmark folders (images + landmarks.csv): fit the regressor on one, test on the other
    python train/evaluate.py --fit ../shared/data/faces/mtfl_train --test my_faces --json out.json
    # one landmark folder split in order: the first 300 images fit, the rest test
    python train/evaluate.py --checkpoint runs/faces --data ../shared/data/faces/celeba_dev --split-fit 300
    # a benchmark in its official layout (docs/datasets.md): landmarks or masks, whatever it has
    python train/evaluate.py --checkpoint runs/cub --dataset cub --data-root CUB_200_2011 --rotate 30
    python train/evaluate.py --checkpoint runs/df --dataset deepfashion --data-root DeepFashion
    # validation on a training split (never the hold-out): the same split for fit and test is
    # interleaved into disjoint images (every 7th fits, every 14th from the 4th is measured)
    python train/evaluate.py --dataset landmarks --data-root ../shared/data/faces/mtfl_train \
        --option holdout_percent=5 --fit-split train --test-split train

``--checkpoint`` defaults to the shipped model. ``--rotate DEG`` rotates the test images (and their
points / masks) about the centre before prediction (Table 7). Prints a table; ``--json`` also
writes the numbers: nme, nmi, ari, fg_nmi, fg_ari (percent), num_fit, num_test, nme_mean_shape
(the NME of predicting the fit set's mean landmarks for every test image, the floor to beat).
Mask datasets give dense nmi / ari / fg_nmi / fg_ari over annotated pixels. When the test folder
also has ``landmarks68.csv`` (e.g. ``--data ../shared/data/faces/helen_val68 --split-fit 400``), the
test images also give the dense face figures (partdisc_core/dense68.py): nmi68 / ari68 / bg68 at the
68 points, coverage of the face and spill onto the scenery (percent); ``--no-dense68`` skips them.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ORDER = ("nme", "nme_mean_shape", "nmi", "ari", "fg_nmi", "fg_ari", "nmi68", "ari68", "bg68", "coverage", "spill",
         "dense_nmi", "dense_ari", "dense_fg_nmi",
         "dense_fg_ari", "psnr", "swap_transfer", "swap_locality", "g_cosine", "g_cosine_max", "num_fit", "num_test",
         "num_dense68", "num_recon")
UNITS = {"psnr": " dB", "swap_transfer": "", "swap_locality": "", "g_cosine": "", "g_cosine_max": ""}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--checkpoint", help="checkpoint folder, .safetensors file or hub id (default: the shipped model)")
    g = p.add_argument_group("data (pick one form)")
    g.add_argument("--fit", help="landmarks folder that fits the centroid -> landmark regressor")
    g.add_argument("--test", help="landmarks folder that is evaluated")
    g.add_argument("--data", help="one landmarks folder, split in order into fit (first --split-fit) and test (rest)")
    g.add_argument("--split-fit", type=int, help="with --data: how many images fit the regressor")
    g.add_argument("--dataset", help="a registered dataset: celeba, aflw, cub, deepfashion, partimagenet, synthetic, "
                                     "landmarks")
    g.add_argument("--data-root", help="with --dataset: its folder")
    g.add_argument("--fit-split", default="train", help="with --dataset: split that fits the regressor (train)")
    g.add_argument("--test-split", default="test", help="with --dataset: split that is evaluated (test); "
                   "the same split as --fit-split is interleaved into disjoint fit / test images (validation)")
    g.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="with --dataset: a dataset option, e.g. classes=1 for CUB-1 (repeatable)")
    p.add_argument("--num-fit", type=int, help="use only N fit images, spread evenly over the fit set")
    p.add_argument("--num-test", type=int, help="use only N test images, spread evenly over the test set")
    p.add_argument("--rotate", type=float, default=0.0, help="rotate the test images by DEG degrees (Table 7)")
    p.add_argument("--fill", choices=["border", "zeros"], default="border", help="pixels rotated in from outside")
    p.add_argument("--ridge", type=float, default=0.0, help="small ridge penalty for the regressor (0 = least squares)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps ...")
    p.add_argument("--recon", action="store_true",
                   help="also measure the decoder: reconstruction PSNR, swap transfer, swap locality and G cosine on "
                        "the test images (partdisc_core/fidelity.py)")
    p.add_argument("--no-dense68", action="store_true",
                   help="skip the 68-point dense face figures even when the test folder has landmarks68.csv")
    p.add_argument("--json", help="write the results to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    forms = [bool(args.fit or args.test), bool(args.data), bool(args.dataset)]
    if sum(forms) != 1:
        p.error("give exactly one of: --fit DIR --test DIR | --data DIR --split-fit N | --dataset NAME [--data-root DIR]")
    if forms[0] and not (args.fit and args.test):
        p.error("--fit and --test go together")
    if forms[1] and args.split_fit is None:
        p.error("--data needs --split-fit N")
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    return args


def _options(pairs: list[str]) -> dict:
    """``--option KEY=VALUE`` pairs as a dict (values as JSON where they parse, else text)."""
    from partdisc_core.config import parse_value, split_override

    out = {}
    for pair in pairs:
        try:
            key, value = split_override(pair)
        except ValueError as exc:
            raise SystemExit(f"error: --option: {exc}")
        out[key] = parse_value(value, None)
    return out


def build_datasets(args, image_size: int):
    """(fit dataset or None, test dataset, description)."""
    from partdisc_core.data import build_dataset
    from partdisc_core.data.landmarks import LandmarksDataset, split_landmarks

    if args.fit:
        return (LandmarksDataset(args.fit, image_size), LandmarksDataset(args.test, image_size),
                {"fit": args.fit, "test": args.test})
    if args.data:
        try:
            fit, test = split_landmarks(args.data, image_size, args.split_fit)
        except ValueError as exc:
            raise SystemExit(f"error: --split-fit: {exc}")
        return fit, test, {"data": args.data, "split_fit": args.split_fit}
    opts = _options(args.option)
    test = build_dataset(args.dataset, args.data_root, split=args.test_split, image_size=image_size, **opts)
    probe = test[0]
    fit = None
    desc = {"dataset": args.dataset, "data_root": args.data_root, "test_split": args.test_split}
    if "landmarks" in probe:
        if args.fit_split == args.test_split:  # one split: disjoint, interleaved fit and test images
            from partdisc_core.evaluation import interleaved_split

            fit, test = interleaved_split(test)
            desc["interleaved"] = "fit every 7th, test every 14th from the 4th"
        else:
            fit = build_dataset(args.dataset, args.data_root, split=args.fit_split, image_size=image_size, **opts)
        desc["fit_split"] = args.fit_split
    if opts:
        desc["options"] = opts
    return fit, test, desc


def dense68_dataset(args, test, image_size: int):
    """The test images with their 68 points when the test folder has ``landmarks68.csv``, else None."""
    from partdisc_core.data.landmarks import LandmarksDataset
    from partdisc_core.evaluation import dataset_image_names

    root = args.test or args.data or (args.data_root if args.dataset == "landmarks" else None)
    if root is None or args.no_dense68 or not (Path(root) / "landmarks68.csv").is_file():
        return None
    return LandmarksDataset(root, image_size, csv_name="landmarks68.csv", names=dataset_image_names(test))


def format_table(results: dict) -> str:
    keys = [k for k in ORDER if k in results] + [k for k in results if k not in ORDER]
    width = max(len(k) for k in keys)
    lines = []
    for k in keys:
        v = results[k]
        if isinstance(v, float):
            text = f"{v:8.2f}" + (UNITS.get(k, " %") if not k.startswith("num") else "")
        else:
            text = f"{v:>8}"
        lines.append(f"  {k:<{width}}  {text}")
    return "\n".join(lines)


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def main(argv=None) -> dict:
    args = parse_args(argv)
    from partdisc_core import CheckpointError, load_model
    from partdisc_core.evaluation import evaluate, limit_dataset

    device = resolve_device(args.device)
    try:
        model = load_model(args.checkpoint, device=device)
    except CheckpointError as exc:
        raise SystemExit(f"error: {exc}")
    try:
        fit, test, desc = build_datasets(args, model.cfg.input_size)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}")
    if fit is not None:
        fit = limit_dataset(fit, args.num_fit)
    test = limit_dataset(test, args.num_test)
    results = evaluate(model, test, fit, batch_size=args.batch_size, rotate=args.rotate, ridge=args.ridge,
                       num_workers=args.workers, fill=args.fill, progress=not args.no_progress)
    dense68 = dense68_dataset(args, test, model.cfg.input_size)
    if dense68 is not None:
        from partdisc_core.evaluation import evaluate_dense68

        results.update(evaluate_dense68(model, dense68, batch_size=args.batch_size, num_workers=args.workers,
                                        progress=not args.no_progress))
    if args.recon:
        from partdisc_core.fidelity import reconstruction_metrics

        results.update(reconstruction_metrics(model, test, batch_size=args.batch_size, locality=True))
    ckpt = str(args.checkpoint) if args.checkpoint else "shipped (partdisc_core.DEFAULT_CHECKPOINT)"
    print(f"checkpoint: {ckpt}   K = {model.cfg.num_parts}   rotate = {args.rotate:g} deg")
    print(format_table(results))
    if args.json:
        record = {**results, "checkpoint": ckpt, "rotate": args.rotate, **desc}
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
