"""``cozoo weights fetch|import|list``: manage the cache of pretrained checkpoints (arguments:
`cozoo.commands.parsers`)."""

from __future__ import annotations

import argparse
import json

from cozoo.weights.download import weights_dir
from cozoo.weights.load import (
    cached_metadata,
    converted_path,
    fetch,
    import_checkpoint,
    refuse_other_models_url,
    require_entry,
)
from cozoo.weights.manifest import load_manifest, manifest_names


def _report(name: str) -> None:
    entry = require_entry(name)
    meta = cached_metadata(entry) or {}
    print(f"{name}: {converted_path(entry['name'])}")
    print(f"  source {entry['source']['filename']} sha256 {meta.get('source_sha256', '?')} "
          f"({meta.get('source_size', '?')} bytes, hash policy: {entry['hash']['policy']})")
    print(f"  origin: {meta.get('origin', 'not recorded (cached before cozoo recorded origins)')}")


def _fetch(args: argparse.Namespace) -> int:
    if (args.url or args.sha256) and len(args.names) > 1:
        raise ValueError("--url and --sha256 describe one file: give a single NAME with them")
    for name in args.names:
        if args.url and not args.force:
            refuse_other_models_url(require_entry(name), args.url)
        if args.url and not args.force and cached_metadata(require_entry(name)) is not None:
            print(f"{name} is already cached, so --url was not used (add --force to download it again)")
        fetch(name, url=args.url, force=args.force, progress=not args.quiet, sha256=args.sha256)
        _report(name)
    return 0


def _import(args: argparse.Namespace) -> int:
    import_checkpoint(args.name, args.path, sha256=args.sha256, force=args.force)
    _report(args.name)
    return 0


def _list(args: argparse.Namespace) -> int:
    models = load_manifest()["models"]
    rows = []
    for name in manifest_names():
        entry = {"name": name, **models[name]}
        top1 = next((rec["top1"] for rec in entry.get("accuracy", []) if rec.get("top1") is not None), None)
        rows.append({
            "name": name,
            "file": entry["source"]["filename"],
            "format": entry["format"],
            "hash": entry["hash"]["policy"],
            "download": next((key for key in ("url", "hf") if entry["source"].get(key)), "import"),
            "cached": cached_metadata(entry) is not None,
            "top1": top1,
            "dir": str(weights_dir(name)),
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<20} {'file':<26} {'format':<13} {'hash':<14} {'get':<7} {'cached':<7} top1")
    for row in rows:
        top1 = f"{row['top1']:.2f}" if row["top1"] is not None else "-"
        print(f"{row['name']:<20} {row['file']:<26} {row['format']:<13} {row['hash']:<14} "
              f"{row['download']:<7} {'yes' if row['cached'] else 'no':<7} {top1}")
    return 0
