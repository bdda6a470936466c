"""``cozoo finetune CONFIG.yaml [key.sub=value ...]`` and ``cozoo finetune --resume RUN_DIR``: fine-tune a
model from a YAML recipe.

Recipes live in ``configs/finetune/``; overrides such as ``train.epochs=3 output_dir=runs/try`` apply on top.
The run folder gets ``last.pt`` (every epoch), ``best.pt`` (best validation accuracy), ``metrics.jsonl``,
``config.yaml`` (the recipe with its overrides) and the label map.
Several GPUs or machines: ``torchrun --nproc_per_node=G -m cozoo finetune CONFIG.yaml`` (``data.batch_size``
stays the global batch).

Resuming continues from ``last.pt`` exactly where it stopped:
  cozoo finetune --resume runs/synthetic_x3d        # the run folder: its config.yaml, overrides included
  cozoo finetune CONFIG.yaml [key=value ...] --resume   # the same recipe and overrides as the first run
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cozoo import distributed
from cozoo.commands import add_quiet_argument, add_threads_argument
from cozoo.training import finetune, load_config
from cozoo.training.config import FinetuneConfig


def resolve_config(
    config: str | None, resume: str | None, overrides: list[str]
) -> tuple[FinetuneConfig, bool]:
    """The recipe and whether to resume, from ``CONFIG``, ``--resume [RUN_DIR]`` and the overrides.

    A run folder (given to ``--resume`` or as ``CONFIG``) stands for its ``config.yaml``, which holds the
    first run's overrides; the run resumes in that folder even if it was moved."""
    run_dir = None
    if config is not None and "=" in config and not Path(config).exists():
        config, overrides = None, [config, *overrides]  # `--resume RUN_DIR key=value`: no CONFIG given
    if resume and Path(resume).is_dir():
        run_dir = Path(resume)
    elif resume and "=" in resume and not Path(resume).exists():
        overrides = [resume, *overrides]  # `CONFIG --resume key=value`: --resume took an override
    elif resume:
        raise FileNotFoundError(f"--resume {resume!r}: no such run folder (give the folder holding last.pt "
                                "and config.yaml, or --resume alone to continue CONFIG's output_dir)")
    if config is not None and Path(config).is_dir():
        if run_dir is not None and run_dir.resolve() != Path(config).resolve():
            raise ValueError(f"two run folders given: {config!r} and --resume {resume!r}")
        run_dir = Path(config)
    if run_dir is not None:
        recipe = run_dir / "config.yaml"
        if not recipe.is_file():
            raise FileNotFoundError(f"{str(run_dir)!r} is not a run folder: it has no config.yaml")
        if config is not None and Path(config).resolve() != run_dir.resolve():
            raise ValueError(f"give either CONFIG ({config!r}) or a run folder to --resume, not both")
        return load_config(recipe, [*overrides, f"output_dir={run_dir}"]), resume is not None
    if config is None:
        raise ValueError("give a recipe (CONFIG.yaml) or --resume RUN_DIR")
    return load_config(config, overrides), resume is not None


def _run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + (["train.progress=false"] if args.quiet else [])
    config, resume = resolve_config(args.config, args.resume, overrides)
    result = finetune(config, resume=resume)
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
    parser.add_argument("config", nargs="?", metavar="CONFIG",
                        help="YAML recipe, e.g. configs/finetune/synthetic_x3d.yaml (or a run folder)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="override recipe values (parsed as YAML), e.g. train.epochs=3")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN_DIR",
                        help="continue from last.pt: of RUN_DIR (with its config.yaml), or alone of CONFIG's "
                        "output_dir")
    add_threads_argument(parser)
    add_quiet_argument(parser)
    parser.set_defaults(handler=_run, extra_overrides=True)
