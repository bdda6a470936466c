"""``cozoo finetune CONFIG.yaml [--resume] [key.sub=value ...]``: fine-tune a model from a YAML recipe.

Recipes live in ``configs/finetune/``; overrides such as ``train.epochs=3 output_dir=runs/try`` apply on top.
The run folder gets ``last.pt`` (every epoch), ``best.pt`` (best validation accuracy), ``metrics.jsonl``,
``config.yaml`` and the label map; ``--resume`` continues from ``last.pt`` exactly where it stopped.
Several GPUs or machines: ``torchrun --nproc_per_node=G -m cozoo finetune CONFIG.yaml`` (``data.batch_size``
stays the global batch).
"""

from __future__ import annotations

import argparse

from cozoo import distributed
from cozoo.training import finetune, load_config


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    result = finetune(config, resume=args.resume)
    if not distributed.from_env().main:
        return 0
    last = result.metrics[-1]
    print(f"{config.model.name}: {last['epoch']} epochs, val acc {last['val_acc']:.3f} "
          f"(best {result.best_val_acc:.3f}); run folder {result.output_dir}")
    if result.continual is not None:
        stats = result.continual
        print(f"continual co{config.model.name}, same weights, streamed frame by frame: val acc "
              f"{stats['continual_val_acc']:.3f} over {stats['continual_videos']} videos "
              f"({stats['continual_padded']} padded to the warm-up)")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune", help="fine-tune a model on a video dataset from a YAML recipe",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="YAML recipe, e.g. configs/finetune/synthetic_x3d.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="override recipe values (parsed as YAML), e.g. train.epochs=3")
    parser.add_argument("--resume", action="store_true", help="continue the run in output_dir from last.pt")
    parser.set_defaults(handler=_run)
