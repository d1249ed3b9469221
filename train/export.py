"""Batch export: run a checkpoint over a folder of images (recursively) and write, per image, its
part label map as a palette PNG, plus the part centroids of all images in one CSV.

    python train/export.py --input photos/ --out parts/                 # the shipped model
    python train/export.py --checkpoint runs/mine --input photos/ --out parts/ --device cuda

Output, mirroring the input folders:

    OUT/<relative path>/<stem>.png   mode "P" label map at the image's own size: value k - 1 is
                                     part k (colours of partdisc_core.viz), value K the background
                                     (last palette entry)
    OUT/centroids.csv                ``image,width,height,part1_x,part1_y,...,partK_x,partK_y``:
                                     soft centroids of the K foreground maps, original pixels
    OUT/skipped.txt                  files that could not be read (also printed); they never stop
                                     the run

When two inputs would give the same PNG name (``a.jpg`` and ``a.png``), the full file name is kept
(``a.jpg.png``).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from partdisc_core.labelmaps import centroid_header, centroid_row, save_label_png  # noqa: E402  (the format, shared with the demo)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--checkpoint", help="checkpoint folder, .safetensors file or hub id (default: the shipped model)")
    p.add_argument("--input", required=True, help="folder of images (searched recursively) or one image")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--csv", help="centroid CSV path (default OUT/centroids.csv)")
    p.add_argument("--class-id", type=int, help="class of every image, for class-conditional models")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    return args


def find_images(root: Path) -> list[Path]:
    from partdisc_core.data.common import IMAGE_EXTENSIONS

    if root.is_file():
        return [root]
    if not root.is_dir():
        raise SystemExit(f"error: {root} is neither a folder nor a file")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def output_names(files: list[Path], root: Path) -> dict[Path, Path]:
    """Relative output PNG path of each input, ``<stem>.png`` unless two inputs would collide."""
    base = root if root.is_dir() else root.parent
    rel = {f: f.relative_to(base) for f in files}
    wanted: dict[Path, list[Path]] = {}
    for f, r in rel.items():
        wanted.setdefault(r.with_suffix(".png"), []).append(f)
    out = {}
    for target, sources in wanted.items():
        for f in sources:
            out[f] = target if len(sources) == 1 else rel[f].with_name(rel[f].name + ".png")
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch
    from tqdm import tqdm

    from partdisc_core import CheckpointError, ImageInputError, load_model
    from partdisc_core.inputs import read_image, to_image_tensors

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = load_model(args.checkpoint, device=device)
    except CheckpointError as exc:
        raise SystemExit(f"error: {exc}")
    k = model.cfg.num_parts
    if model.cfg.num_classes > 1 and args.class_id is None:
        raise SystemExit("error: this model is class-conditional; pass --class-id N")
    root = Path(args.input)
    files = find_images(root)
    if not files:
        raise SystemExit(f"error: no images found under {root}")
    names = output_names(files, root)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = Path(args.csv) if args.csv else out / "centroids.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    skipped: list[tuple[Path, str]] = []
    written = 0
    base = root if root.is_dir() else root.parent
    bar = tqdm(total=len(files), desc="exporting", unit="img", dynamic_ncols=True, disable=args.no_progress)
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(centroid_header(k))
        for start in range(0, len(files), args.batch_size):
            chunk = files[start:start + args.batch_size]
            images, ok = [], []
            for f in chunk:
                try:
                    images.append(to_image_tensors(read_image(f))[0])  # validates size too
                    ok.append(f)
                except (ImageInputError, OSError, ValueError) as exc:
                    skipped.append((f, str(exc)))
                    tqdm.write(f"[partdisc] skipping {f}: {exc}", file=sys.stderr)
            if ok:
                ids = None if args.class_id is None else [args.class_id] * len(ok)
                pred = model.predict(images, class_ids=ids, return_attention=False, output_size="input",
                                     batch_size=args.batch_size)
                maps_list = list(pred.masks)
                for f, maps in zip(ok, maps_list):
                    labels = maps.argmax(0).to(torch.uint8).cpu().numpy()
                    save_label_png(labels, k, out / names[f])
                    writer.writerow(centroid_row(f.relative_to(base).as_posix(), maps, k))
                    written += 1
            bar.update(len(chunk))
    bar.close()
    (out / "skipped.txt").write_text("".join(f"{f}\t{reason}\n" for f, reason in skipped))
    print(f"[partdisc] wrote {written} label maps to {out} and centroids to {csv_path}; "
          f"skipped {len(skipped)} unreadable file(s)" + (f" (listed in {out / 'skipped.txt'})" if skipped else ""))
    return {"written": written, "skipped": [str(f) for f, _ in skipped], "csv": str(csv_path)}


if __name__ == "__main__":
    main()
