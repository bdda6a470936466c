"""`finetune`: train a registered model on a (sub)set of classes in clip mode, checkpointing as it goes.

Run folder (``output_dir``): ``config.yaml`` (resolved recipe), ``subset.csv`` + ``label_map.json``
(training records and class order), ``last.pt`` (after every epoch and, with
``train.checkpoint_every_steps``, mid-epoch), ``best.pt`` (highest validation accuracy so far) and
``metrics.jsonl`` (one JSON record per finished epoch, then one for the continual evaluation).

Resuming (``resume=True``) reads ``last.pt`` and continues exactly: model, optimizer, scheduler, AMP
scaler and random states are restored, and the data order and augmentations are functions of
``(seed, epoch, item)`` (see `cozoo.training.data`), so an interrupted and resumed run ends with the
same weights as an uninterrupted one (bitwise on CPU). A run killed between checkpoints replays the
steps since the last one. ``metrics.jsonl`` is rewritten from the checkpoint, so it never holds records
of steps that were lost.

Under ``torchrun`` (see `cozoo.distributed`) the model is wrapped in DistributedDataParallel. The recipe's
``data.batch_size`` is the global batch: each of W processes takes its slice of every global batch of the
same global order (`ResumableSampler`) and DDP averages the gradients, so a step sees the same samples and,
up to float rounding, the same gradient as one process, whatever W. Not equal across W: BatchNorm in
training mode normalises each process's share with that share's statistics (``train.sync_bn`` on CUDA uses
the whole batch's; frozen BatchNorm layers use their running statistics), running statistics are rank 0's
(DDP broadcasts them), and dropout masks are drawn per process. Only rank 0 writes files (checkpoints,
metrics, subset, config); every rank reads ``last.pt`` to resume. Resuming with the same W continues
exactly (every rank's random state is saved); with another W it continues the same global order and
schedule, with fresh per-process random states for ranks > 0 (not bitwise: the reduction order changes).
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from cozoo import distributed
from cozoo.data import save_subset
from cozoo.factory import create_model, get_config
from cozoo.training.checkpoint import (
    FORMAT,
    get_rng_state,
    isolated_rng,
    load_checkpoint,
    save_atomic,
    set_rng_state,
    write_text_atomic,
)
from cozoo.training.config import ConfigError, FinetuneConfig
from cozoo.training.continual_check import StreamingResult, build_continual, streaming_accuracy
from cozoo.training.data import (
    build_datasets,
    clip_settings,
    derived_seed,
    point_at_synthetic,
    prepare_synthetic,
    select_records,
    train_loader,
    val_loader,
)

#: Settings that may change when resuming (they do not affect the result beyond float rounding;
#: ``output_dir``: a run folder that was moved or is named from another working directory resumes where its
#: checkpoint is).
RESUME_MUTABLE = ("data.num_workers", "train.progress", "train.device", "train.grad_checkpointing",
                  "output_dir")


@dataclass
class Progress:
    """Where training stands; passed to the ``on_step`` hook after every optimizer step."""

    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0
    global_step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0


@dataclass
class FinetuneResult:
    output_dir: Path
    metrics: list[dict[str, Any]]
    best_val_acc: float
    continual: dict[str, Any] | None = None
    label_map: dict[str, int] = field(default_factory=dict)

    @property
    def final_val_acc(self) -> float:
        return float(self.metrics[-1]["val_acc"])


def lr_factor(step: int, total: int, warmup: int, warmup_start: float, min_ratio: float) -> float:
    """Factor of the base learning rate: linear warm-up from ``warmup_start`` to 1 over ``warmup`` steps,
    then a cosine from 1 down to ``min_ratio`` at step ``total``."""
    if step < warmup:
        return warmup_start + (1.0 - warmup_start) * step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def freeze(model: nn.Module, prefixes: list[str]) -> list[str]:
    """Stop gradients for parameters under ``prefixes`` ("backbone": all but the last ``nn.Linear``);
    returns the frozen parameter names."""
    names = [name for name, _ in model.named_parameters()]
    frozen: set[str] = set()
    for prefix in prefixes:
        if prefix == "backbone":
            linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
            if not linears:
                raise ConfigError("model.freeze: 'backbone' needs a final nn.Linear classifier")
            matched = [n for n in names if not n.startswith(linears[-1] + ".")]
        else:
            matched = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not matched:
            raise ConfigError(f"model.freeze: no parameter named {prefix!r} or under it (e.g. {names[0]!r})")
        frozen.update(matched)
    for name, parameter in model.named_parameters():
        if name in frozen:
            parameter.requires_grad_(False)
    return sorted(frozen)


def _frozen_norms(model: nn.Module) -> list[nn.Module]:
    """Batch-norm layers whose parameters are all frozen: they keep their running statistics too."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and any(True for _ in m.parameters()) and not any(p.requires_grad for p in m.parameters())]


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "kwargs":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _effective(config: dict[str, Any]) -> dict[str, Any]:
    """Flattened with every default filled in (a run saved before a setting existed resumes), and
    ``data.flip`` as applied (`DataSection.flip_enabled`), so a run saved when the default was written out
    resumes under a recipe that leaves it unset."""
    parsed = FinetuneConfig.from_dict(config, validate=False)
    flat = _flatten(parsed.as_dict())
    flat["data.flip"] = parsed.data.flip_enabled
    return flat


def _check_resumable(saved: dict[str, Any], current: dict[str, Any]) -> None:
    old, new = _effective(saved), _effective(current)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUME_MUTABLE)
    if changed:
        shown = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ConfigError(f"cannot resume: the config differs from the checkpoint's in {shown}")


def _check_builder_arguments(name: str, kwargs: dict[str, Any]) -> None:
    """``model.kwargs`` must be arguments of the model's builder (checked before building anything)."""
    parameters = inspect.signature(get_config(name).builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(kwargs) - set(parameters))
    if unknown:
        known = ", ".join(p for p in parameters if p != "num_classes")
        raise ConfigError(f"model.kwargs {unknown} are not arguments of {name}'s builder (it takes: {known})")


def _device(name: str) -> torch.device:
    """``train.device``; under torchrun each process takes the GPU of its local rank."""
    try:
        return distributed.device_for(name, distributed.from_env())
    except ValueError as error:
        raise ConfigError(f"train.device: {error}") from None


class Trainer:
    """One fine-tuning run; `finetune` is the entry point."""

    def __init__(self, config: FinetuneConfig, resume: bool) -> None:
        self.config = config
        self.dist = distributed.current()
        self.out = Path(config.output_dir)
        self.last_path, self.best_path = self.out / "last.pt", self.out / "best.pt"
        state = self._load_or_refuse(resume)
        if state is not None:  # before generating any video: a refused resume costs nothing
            if config.data.synthetic is not None:
                point_at_synthetic(config)
            _check_resumable(state["config"], config.as_dict())
        if config.data.batch_size % self.dist.world_size:
            raise ConfigError(f"data.batch_size ({config.data.batch_size}) is the global batch: it must be a "
                              f"multiple of the number of processes ({self.dist.world_size})")
        if config.data.synthetic is not None:
            if self.dist.main:  # generated once, by rank 0; the others then only point at it
                prepare_synthetic(config)
            distributed.barrier()
            if not self.dist.main:
                prepare_synthetic(config)
        self.model_config = get_config(config.model.name)
        if self.model_config.continual:
            raise ConfigError(f"model.name {config.model.name!r} is continual: fine-tune its regular source "
                              f"{self.model_config.source!r}; the continual model is built from its weights")
        self.clips = clip_settings(config.data, self.model_config)
        train_records, val_records, self.label_map = select_records(config.data)
        if state is not None and state["label_map"] != self.label_map:
            raise ConfigError("cannot resume: the classes differ from the checkpoint's label map")
        self.train_set, self.val_set = build_datasets(
            config.data, self.model_config, self.clips, train_records, val_records, self.label_map)
        self.device = _device(config.train.device)
        if config.train.sync_bn and self.dist.enabled and self.device.type != "cuda":
            raise ConfigError("train.sync_bn needs CUDA devices (torch's SyncBatchNorm does not run on CPU)")
        self.amp = config.train.amp and self.device.type == "cuda"
        pin = self.device.type == "cuda"
        self.train_loader = train_loader(self.train_set, config.data, config.seed, pin, self.dist.rank,
                                         self.dist.world_size)
        self.val_loader = val_loader(self.val_set, config.data, pin,
                                     distributed.ShardSampler(len(self.val_set), self.dist))
        self.steps_per_epoch = len(self.train_set) // config.data.batch_size

        _check_builder_arguments(config.model.name, config.model.kwargs)
        self.model = create_model(config.model.name, pretrained=config.model.pretrained,
                                  num_classes=len(self.label_map), **config.model.kwargs).to(self.device)
        if config.train.grad_checkpointing:
            if not hasattr(self.model, "set_grad_checkpointing"):
                raise ConfigError(f"train.grad_checkpointing: {config.model.name} does not support it")
            self.model.set_grad_checkpointing(True)
        if config.train.sync_bn and self.dist.enabled:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.frozen = freeze(self.model, config.model.freeze)
        self.frozen_norms = _frozen_norms(self.model)
        self.optimizer = self._optimizer()
        optim = config.optim
        total = config.train.epochs * self.steps_per_epoch
        warmup = round(optim.warmup_epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: lr_factor(
            step, total, warmup, optim.warmup_start, optim.min_lr / optim.lr))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.progress = Progress()
        self.best_val_acc = -1.0
        self.metrics: list[dict[str, Any]] = []
        if state is not None:
            self._restore(state)
        elif self.dist.rank:  # dropout etc.: each process draws its own
            torch.manual_seed(derived_seed(config.seed, self.dist.rank))
        self.net: nn.Module = self.model
        if self.dist.enabled:  # broadcasts rank 0's weights; averages gradients in backward
            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.dist.main:
            trained_on = [record for record, _ in self.train_set.videos]
            save_subset(self.out, trained_on, self.label_map)
            write_text_atomic(self.out / "config.yaml", yaml.safe_dump(config.as_dict(), sort_keys=False))

    # -- set-up ------------------------------------------------------------------------------------------
    def _load_or_refuse(self, resume: bool) -> dict[str, Any] | None:
        if resume:
            if not self.last_path.is_file():
                raise FileNotFoundError(f"cannot resume: no checkpoint {str(self.last_path)!r}")
            return load_checkpoint(self.last_path)
        if self.last_path.exists():
            raise ValueError(f"{self.out} already holds a checkpoint (last.pt): pass --resume to continue "
                             "it, or choose another output_dir")
        return None

    def _optimizer(self) -> torch.optim.Optimizer:
        optim = self.config.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("model.freeze leaves no trainable parameter")
        if optim.name == "sgd":
            return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, nesterov=optim.nesterov,
                                   weight_decay=optim.weight_decay)
        return torch.optim.AdamW(params, lr=optim.lr, betas=tuple(optim.betas),  # type: ignore[arg-type]
                                 weight_decay=optim.weight_decay)

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.amp and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(**state["progress"])
        self.best_val_acc = state["best_val_acc"]
        self.metrics = list(state["metrics"])
        ranks = state.get("rng_ranks") or [state["rng"]]
        if len(ranks) == self.dist.world_size:
            set_rng_state(ranks[self.dist.rank])
        else:  # another number of processes: rank 0 continues rank 0's states, the others start afresh
            set_rng_state(state["rng"])
            if self.dist.rank:
                torch.manual_seed(derived_seed(self.config.seed, self.dist.rank, self.progress.global_step))

    def _state(self) -> dict[str, Any]:
        """The checkpoint (a collective under torchrun: every rank's random state is gathered)."""
        rng = get_rng_state()
        ranks = distributed.gather_objects(rng)
        return {
            "format": FORMAT,
            "model_name": self.config.model.name,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.amp else {},
            "progress": vars(self.progress).copy(),
            "rng": rng,
            **({"rng_ranks": ranks} if self.dist.enabled else {}),
            "config": self.config.as_dict(),
            "label_map": self.label_map,
            "best_val_acc": self.best_val_acc,
            "metrics": self.metrics,
        }

    def _save(self, path: Path) -> None:
        """Every rank takes part (`_state`); rank 0 writes."""
        state = self._state()
        if self.dist.main:
            save_atomic(state, path)

    # -- training ----------------------------------------------------------------------------------------
    def _autocast(self) -> Any:
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()

    def _train_mode(self) -> None:
        self.model.train()
        for norm in self.frozen_norms:
            norm.eval()

    def _trainable(self) -> list[torch.Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _step(self, clips: torch.Tensor, labels: torch.Tensor) -> None:
        clips = clips.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        with self._autocast():
            logits = self.net(clips)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.config.train.label_smoothing)
        # Sums over the global batch (all processes), so progress and metrics do not depend on their number.
        hits = (logits.argmax(1) == labels).sum().double()
        stats = torch.stack([loss.detach().double() * len(labels), hits,
                             torch.tensor(float(len(labels)), dtype=torch.float64, device=loss.device)])
        loss_sum, correct, seen = distributed.all_reduce(stats).tolist()
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"loss is {loss_sum / seen} at step {self.progress.global_step}; "
                                     "lower optim.lr or set train.clip_grad_norm")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.train.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self._trainable(), self.config.train.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        p = self.progress
        p.step_in_epoch += 1
        p.global_step += 1
        p.loss_sum += loss_sum
        p.correct += int(correct)
        p.seen += int(seen)

    def train_epoch(self, on_step: Callable[[Progress], None] | None) -> dict[str, float]:
        p, epochs = self.progress, self.config.train.epochs
        sampler = self.train_loader.sampler
        sampler.set_epoch(p.epoch, p.step_in_epoch * self.config.data.batch_size)  # type: ignore[attr-defined]
        self._train_mode()
        every = self.config.train.checkpoint_every_steps
        start, seen_before = time.perf_counter(), p.seen
        bar = tqdm(self.train_loader, total=self.steps_per_epoch, initial=p.step_in_epoch, unit="batch",
                   desc=f"epoch {p.epoch + 1}/{epochs}", leave=False, file=sys.stderr,
                   disable=not (self.config.train.progress and self.dist.main))
        for clips, labels in bar:
            self._step(clips, labels)
            rate = (p.seen - seen_before) / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(loss=f"{p.loss_sum / p.seen:.3f}", acc=f"{p.correct / p.seen:.3f}",
                            clips_s=f"{rate:.1f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            if every and p.global_step % every == 0 and p.step_in_epoch < self.steps_per_epoch:
                self._save(self.last_path)
            if on_step is not None:
                on_step(p)
        bar.close()
        elapsed = time.perf_counter() - start
        return {"train_loss": p.loss_sum / p.seen, "train_acc": p.correct / p.seen,
                "clips_per_s": (p.seen - seen_before) / max(elapsed, 1e-9), "train_time_s": elapsed}

    @torch.no_grad()
    def evaluate(self, loader: DataLoader | None = None) -> dict[str, float]:
        """Clip-mode validation: loss per view, accuracy per video (softmax averaged over its views).
        Videos none of whose views decoded are left out (``val_videos`` counts the rest). Under torchrun
        each process scores its share of the views and the sums are gathered."""
        self.model.eval()
        loader = loader or self.val_loader
        scores = torch.zeros(len(self.val_set.videos), len(self.label_map), dtype=torch.float64)
        targets = torch.full((len(self.val_set.videos),), -1, dtype=torch.long)
        totals = torch.zeros(2, dtype=torch.float64)  # loss sum, views
        bar = tqdm(loader, total=len(loader), unit="batch", desc="validation", leave=False, file=sys.stderr,
                   disable=not (self.config.train.progress and self.dist.main))
        for clips, labels, index in bar:
            real = index >= 0  # -1: a stand-in for a view that failed to decode
            with self._autocast():
                logits = self.model(clips.to(self.device)).float().cpu()[real]
            labels, index = labels[real], index[real]
            totals += torch.tensor([float(F.cross_entropy(logits, labels, reduction="sum")), len(labels)],
                                   dtype=torch.float64)
            scores.index_add_(0, index, logits.softmax(1).double())
            targets[index] = labels
        distributed.all_reduce(scores)
        distributed.all_reduce(targets, "max")
        loss_sum, views = distributed.all_reduce(totals).tolist()
        scored = targets >= 0
        videos = int(scored.sum())
        if not videos:
            raise RuntimeError("validation: no video could be decoded")
        correct = int((scores.argmax(1) == targets)[scored].sum())
        return {"val_loss": loss_sum / views, "val_acc": correct / videos, "val_videos": videos}

    def fit(self, on_step: Callable[[Progress], None] | None = None) -> FinetuneResult:
        epochs = self.config.train.epochs
        while self.progress.epoch < epochs:
            train = self.train_epoch(on_step)
            val = self.evaluate()
            p = self.progress
            record = {"epoch": p.epoch + 1, "step": p.global_step, "lr": self.scheduler.get_last_lr()[0],
                      **train, **val, "best": val["val_acc"] > self.best_val_acc}
            self.metrics.append(record)
            p.epoch, p.step_in_epoch, p.loss_sum, p.correct, p.seen = p.epoch + 1, 0, 0.0, 0, 0
            if record["best"]:
                self.best_val_acc = val["val_acc"]
                self._save(self.best_path)
            self._save(self.last_path)
            self._write_metrics()
            if self.config.train.progress and self.dist.main:
                tqdm.write(f"epoch {record['epoch']}/{epochs}: loss {train['train_loss']:.4f} "
                           f"acc {train['train_acc']:.3f} | val loss {val['val_loss']:.4f} "
                           f"acc {val['val_acc']:.3f} | {train['clips_per_s']:.1f} clips/s")
        continual = self.continual_eval() if self.config.train.continual_eval else None
        self._write_metrics(continual)
        return FinetuneResult(self.out, self.metrics, self.best_val_acc, continual, self.label_map)

    def continual_eval(self) -> dict[str, Any]:
        """Stream the validation videos through the continual model holding the final weights."""
        cfg, clips = self.config, self.clips
        model = build_continual(cfg.model.name, len(self.label_map), cfg.model.kwargs, clips.frames,
                                self.model.state_dict())
        share = streaming_accuracy(model, self.val_set, clips.sampling_rate, clips.test_crop, clips.mean,
                                   clips.std, clips.test_short_side, self.device, clips.target_fps,
                                   videos=distributed.shard(self.val_set.videos, self.dist),
                                   resize=clips.test_resize, crop_rounding=clips.crop_rounding,
                                   progress=cfg.train.progress and self.dist.main)
        result = StreamingResult.combine(distributed.gather_objects(share))
        return {"event": "continual_eval", "epoch": self.progress.epoch, "weights": "last",
                "pool_window": clips.frames, "clip_val_acc": self.metrics[-1]["val_acc"], **result.as_dict()}

    def _write_metrics(self, extra: dict[str, Any] | None = None) -> None:
        if not self.dist.main:
            return
        lines = [json.dumps(record) for record in self.metrics + ([extra] if extra else [])]
        write_text_atomic(self.out / "metrics.jsonl", "".join(f"{line}\n" for line in lines))


def finetune(
    config: FinetuneConfig, resume: bool = False, on_step: Callable[[Progress], None] | None = None
) -> FinetuneResult:
    """Fine-tune ``config.model`` on ``config.data`` (see the module docstring). ``on_step`` is called after
    every optimizer step (an exception raised there stops the run, as a kill would). The caller's random
    states are left untouched. Under torchrun, joins the job (`cozoo.distributed.session`) for the run."""
    with isolated_rng(config.seed), distributed.session(_device(config.train.device)):
        return Trainer(config, resume).fit(on_step)


def load_finetuned(path: str | Path, continual: bool = False, pool_window: int | None = None
                   ) -> tuple[nn.Module, list[str]]:
    """The model of a fine-tuning checkpoint (regular, or ``continual`` with the same weights) and its
    class names in output order."""
    state = load_checkpoint(path)
    config = FinetuneConfig.from_dict(state["config"], validate=False)  # as the run saved it
    classes = sorted(state["label_map"], key=state["label_map"].__getitem__)
    name, kwargs = config.model.name, config.model.kwargs
    if continual:
        window = pool_window or clip_settings(config.data, get_config(name)).frames
        model = build_continual(name, len(classes), kwargs, window, state["model"])
    else:
        model = create_model(name, num_classes=len(classes), **kwargs)
        model.load_state_dict(state["model"])
    return model.eval(), classes
