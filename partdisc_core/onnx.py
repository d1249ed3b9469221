"""ONNX export of the inference path, to run a model without PyTorch (onnxruntime, other runtimes).

    python -m partdisc_core.onnx --checkpoint checkpoints/faces-k16 --out model.onnx [--check]

Two graphs, both with a dynamic batch size B:

``model.onnx``, the test-time path of ``predict`` (Fig. 3):
  inputs  ``images``     float32 RGB in [0, 1], (B, 3, S, S) with S = ``cfg.input_size`` (128 for the
                         shipped model), resized as :func:`prepare` does;
          ``class_ids``  int64 (B,), only for class-conditional models (``num_classes`` > 1);
  outputs ``part_maps``  V (B, K+1, s, s): the soft part maps, summing to 1 over parts, exactly what
                         ``model.predict(images, output_size=None).masks`` gives (s = ``image_size``,
                         or F's size when ``interpolate_features`` is off); last map = background;
          ``attention``  (B, K+1, h, w): each part token's attention to the image patches;
          ``parts``      G (B, K+1, C), ``features`` F (B, C, h', w'): the inputs of the second graph.

``model.render.onnx`` (``--render-out``; ``--no-render`` skips it), ``model.render``:
  inputs ``features`` F, ``parts`` G  ->  output ``image`` (B, 3, image_size, image_size) in [0, 1],
  the decoder applied to S = sum_k V_k G_k. Swapping parts between two images (Fig. 11) is
  exchanging rows of ``parts`` between them before this graph.

The graphs wrap the model's own methods (``normalize``, ``part_maps``, ``features``, ``render``),
so whatever encoder a checkpoint uses is exported the same way. ``--check`` compares onnxruntime
with ``predict`` on the public-domain example portraits. Needs ``onnx`` and ``onnxscript`` (the
torch exporter) and ``onnxruntime`` (the check): ``pip install "partdisc[onnx]"``.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .checkpoint import CheckpointError, load_model
from .model import PartDiscModel

DEFAULT_OPSET = 18
"""Resize with antialiasing (the model's resizes when S differs from a sub-network's size) needs 18."""
MAP_OUTPUTS = ("part_maps", "attention", "parts", "features")
RENDER_OUTPUTS = ("image",)


class PartMapsGraph(nn.Module):
    """The exported test-time path: images in [0, 1] -> V, attention, G, F (see the module doc)."""

    def __init__(self, model: PartDiscModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, class_ids: torch.Tensor | None = None):
        x = self.model.normalize(images)
        maps, attention, parts = self.model.part_maps(x, class_ids, return_attention=True)
        # F again: the exporter's optimiser merges this encoder pass with the one inside part_maps
        # (same weights, same input), so the graph computes F once.
        features = self.model.features(x).float()
        return maps, attention, parts, features


class RenderGraph(nn.Module):
    """The exported decoder path: (F, G) -> image in [0, 1], as ``model.render``."""

    def __init__(self, model: PartDiscModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        return self.model.render(features, parts)


@dataclass
class ExportResult:
    """Paths of the written graphs (``render`` is None when not exported)."""

    maps: Path
    render: Path | None


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError(f"ONNX export needs the {module!r} package: pip install 'partdisc[onnx]' "
                          "(onnx, onnxscript, onnxruntime)") from exc


def _export(graph: nn.Module, args: tuple, input_names: list[str], output_names: Sequence[str],
            path: Path, opset: int, metadata: dict[str, str]) -> None:
    """torch.export-based export of ``graph`` with dim 0 of every input dynamic, as one file."""
    onnx = _require("onnx")
    _require("onnxscript")
    batch = torch.export.Dim("batch", min=1)
    dynamic = {name: {0: batch} for name in input_names}
    with warnings.catch_warnings():
        # two inputs sharing the one "batch" dimension make the exporter say it keeps one name
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used", category=UserWarning)
        program = torch.onnx.export(graph, args, None, dynamo=True, input_names=input_names,
                                    output_names=list(output_names), dynamic_shapes=dynamic,
                                    opset_version=opset, verbose=False)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))  # weights inside the file: small models, nothing to keep beside it


def export_onnx(model: PartDiscModel, out: str | Path, render_out: str | Path | None = None,
                render: bool = True, opset: int = DEFAULT_OPSET) -> ExportResult:
    """Write ``out`` (part maps graph) and, with ``render``, ``render_out`` (default: ``out`` with
    ``.render.onnx``) for ``model`` in eval mode. Exported in float32 on the CPU; the caller's model
    is not changed."""
    if model.training:
        raise RuntimeError("call model.eval() before exporting: BatchNorm would use batch statistics")
    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"the output must be a .onnx file, got {str(out)!r}")
    render_path = None
    if render:
        render_path = Path(render_out) if render_out is not None else out.with_name(out.stem + ".render.onnx")
        if render_path.resolve() == out.resolve():
            raise ValueError("the render graph needs its own file")
    if model.device.type != "cpu" or model.inference_dtype not in (None, torch.float32):
        model = copy.deepcopy(model).cpu()
        model.inference_dtype = torch.float32
    cfg = model.cfg
    size = cfg.input_size
    meta = {"partdisc_config": cfg.to_json(), "input_size": str(size),
            "input": "images: float32 RGB in [0, 1], (B, 3, S, S), S = input_size"}
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, size, size, generator=g)  # batch 2: a batch of 1 would be specialised
    args: tuple = (images,)
    names = ["images"]
    if cfg.num_classes > 1:
        args = (images, torch.zeros(2, dtype=torch.long))
        names.append("class_ids")
    graph = PartMapsGraph(model).eval()
    _export(graph, args, names, MAP_OUTPUTS, out, opset, {**meta, "graph": "part_maps"})
    if render_path is not None:
        with torch.no_grad():
            _, _, parts, features = graph(*args)
        _export(RenderGraph(model).eval(), (features, parts), ["features", "parts"], RENDER_OUTPUTS,
                render_path, opset, {**meta, "graph": "render"})
    return ExportResult(out, render_path)


def prepare(model: PartDiscModel, images: Any) -> np.ndarray:
    """The ``images`` input of the part maps graph for any images ``predict`` accepts (paths, PIL,
    arrays, tensors; any size): RGB float32 in [0, 1] resized to (S, S) exactly as ``predict`` does."""
    batch, _ = model._prepare(images)  # predict's own input handling: one definition of the resize
    return batch.float().cpu().numpy()


def session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session; ``threads`` sets intra-op threads (None: onnxruntime's default)."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare(model: PartDiscModel, maps_path: str | Path, images: Any, render_path: str | Path | None = None,
            threads: int | None = None) -> dict[str, float]:
    """Max abs differences between onnxruntime and PyTorch on ``images``: part maps and attention
    against ``predict(..., output_size=None)``, the label agreement, and (with ``render_path``)
    the rendered image against ``model.render``."""
    pred = model.predict(images, output_size=None)
    feed = {"images": prepare(model, images)}
    sess = session(maps_path, threads)
    if any(i.name == "class_ids" for i in sess.get_inputs()):
        raise ValueError("compare() does not pass class ids; check class-conditional models by hand")
    maps, attention, parts, features = sess.run(list(MAP_OUTPUTS), feed)
    ref_maps = pred.masks.cpu().numpy()
    report = {
        "part_maps_max_abs": float(np.abs(maps - ref_maps).max()),
        "attention_max_abs": float(np.abs(attention - pred.attention.cpu().numpy()).max()),
        "parts_max_abs": float(np.abs(parts - pred.parts.cpu().numpy()).max()),
        "label_agreement": float((maps.argmax(1) == ref_maps.argmax(1)).mean()),
    }
    if render_path is not None:
        image = session(render_path, threads).run(None, {"features": features, "parts": parts})[0]
        ref = model.render(torch.from_numpy(features).to(model.device), torch.from_numpy(parts).to(model.device))
        report["render_max_abs"] = float(np.abs(image - ref.cpu().numpy()).max())
    return report


def example_photos(folder: str | Path) -> list[Path]:
    """The two public-domain portraits (scikit-image's astronaut, matplotlib's Grace Hopper) as files."""
    from .demo import write_examples

    examples = write_examples(folder)
    missing = [n for n in ("astronaut", "grace_hopper") if n not in examples]
    if missing:
        raise RuntimeError(f"example photos {missing} unavailable: install scikit-image and matplotlib")
    return [examples["astronaut"], examples["grace_hopper"]]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--checkpoint", help="checkpoint folder, .safetensors file or hub id (default: the shipped model)")
    p.add_argument("--out", required=True, help="the part maps graph, e.g. model.onnx")
    p.add_argument("--render-out", help="the reconstruction graph (default: OUT with .render.onnx)")
    p.add_argument("--no-render", action="store_true", help="export the part maps graph only")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--check", action="store_true",
                   help="compare onnxruntime with predict on the example portraits (needs scikit-image)")
    args = p.parse_args(argv)
    if args.no_render and args.render_out:
        p.error("--render-out and --no-render exclude each other")
    try:
        model = load_model(args.checkpoint)
    except CheckpointError as exc:
        p.error(str(exc))
    try:
        result = export_onnx(model, args.out, args.render_out, render=not args.no_render, opset=args.opset)
    except (ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
    summary: dict[str, Any] = {"maps": str(result.maps), "render": str(result.render) if result.render else None}
    print(f"wrote {result.maps}" + (f" and {result.render}" if result.render else ""))
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            report = compare(model, result.maps, example_photos(tmp), result.render)
        summary["check"] = report
        print("onnxruntime vs PyTorch (max abs diff): " + json.dumps(report))
        if report["part_maps_max_abs"] > 1e-3 or report["attention_max_abs"] > 1e-3:
            print("error: the ONNX graph differs from predict by more than 1e-3", file=sys.stderr)
            raise SystemExit(1)
    return summary


if __name__ == "__main__":
    main()
