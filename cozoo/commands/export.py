"""``cozoo export NAME --format onnx --out DIR``: a continual model's step as ONNX (its state as explicit
inputs and outputs) plus a metadata JSON; `cozoo.runtime` runs it without PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cozoo.evaluation.evaluate import LoadedModel, load_model
from cozoo.export.step import ExportError
from cozoo.fuse import fuse_conv_bn
from cozoo.models.registry import get_config
from cozoo.weights.download import sha256_file
from cozoo.weights.load import cached_metadata
from cozoo.weights.manifest import manifest_entry


def weights_record(loaded: LoadedModel) -> dict[str, Any]:
    """Where the exported weights came from, with the file's sha256 where there is a file."""
    if loaded.checkpoint:
        digest, _ = sha256_file(Path(loaded.checkpoint))
        return {"source": str(Path(loaded.checkpoint).resolve()), "sha256": digest}
    if loaded.pretrained:
        entry = manifest_entry(loaded.config.name)
        meta = cached_metadata(entry) if entry else None
        source = entry["source"]["url"] or entry["source"]["hf"] if entry else "published weights"
        return {"source": source, "sha256": meta["source_sha256"] if meta else None}
    return {"source": "random initialisation (no weights given)", "sha256": None}


def _export(args: argparse.Namespace) -> int:
    config = get_config(args.name)
    if not config.continual:
        raise ExportError(f"{args.name} is not a continual model: export its continual form "
                          f"(co{args.name}, see `cozoo models 'co*'`)")
    try:  # optional dependencies (the [export] extra): other commands work without them
        from cozoo.export.onnx import export_onnx
    except ModuleNotFoundError as err:
        raise RuntimeError(f"cozoo export needs {err.name}: pip install 'cozoo[export]'") from None
    loaded = load_model(args.name, checkpoint=args.checkpoint, pretrained=args.pretrained,
                        pool_window=args.pool_window)
    model = loaded.continual()
    if args.fuse_bn:
        model = fuse_conv_bn(model)
    crop = args.crop or loaded.config.test_crop
    short_side = None if args.crop else loaded.config.test_short_side
    out = export_onnx(
        model, args.out, args.name, crop, batch=args.batch, dynamic_batch=args.dynamic_batch,
        mean=loaded.config.mean, std=loaded.config.std, short_side=short_side,
        sampling_rate=args.sampling_rate or loaded.config.sampling_rate, target_fps=loaded.config.target_fps,
        class_names=loaded.class_names, weights=weights_record(loaded), progress=not args.quiet,
    )
    print(f"wrote {out.onnx_path} and {out.metadata_path}")
    return 0
