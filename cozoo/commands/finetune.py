"""``cozoo finetune``: fine-tune a model from a YAML recipe, or resume a run (usage and arguments:
`cozoo.commands.parsers`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cozoo import distributed
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
