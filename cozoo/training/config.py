"""Fine-tuning recipes: a YAML file with sections model, data, optim, train, plus ``output_dir`` and ``seed``.

Every field has a default except ``model.name``; unknown keys are errors (a misspelt option never silently
falls back to its default). ``key.sub=value`` overrides (values parsed as YAML) apply on top of the file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cozoo.data.synthetic import flipped_class


class ConfigError(ValueError):
    """A fine-tuning config is malformed: unknown key, wrong type or inconsistent values."""


@dataclass
class ModelSection:
    """``name``: registered regular model. ``pretrained``: true (published weights via `cozoo.weights`),
    false, or a checkpoint path. ``kwargs``: builder arguments (e.g. widths). ``freeze``: parameter-name
    prefixes to freeze, or ``["backbone"]`` for everything except the classifier."""

    name: str = ""
    pretrained: bool | str = False
    kwargs: dict[str, Any] = field(default_factory=dict)
    freeze: list[str] = field(default_factory=list)


@dataclass
class SyntheticSection:
    """Arguments of `cozoo.data.generate_synthetic_dataset`; the data is written once under ``data.root``."""

    classes: list[str] = field(
        default_factory=lambda: ["moving_left", "moving_right", "growing", "shrinking"])
    videos_per_class: int = 8
    val_videos_per_class: int = 2
    frames: int = 32
    size: int = 64
    fps: float = 15.0
    seed: int = 0


@dataclass
class DataSection:
    """Where the videos are, which classes, and the clip geometry (``None``: the model config's value).

    Either ``synthetic`` (generated under ``root``, default ``<output_dir>/data``) or ``train_csv`` +
    ``val_csv`` + ``video_root`` in the Kinetics layout. Class subset: ``classes``, ``class_file`` or
    ``num_classes`` (first N sorted), then at most ``per_class`` training videos per class.
    """

    synthetic: SyntheticSection | None = None
    root: str | None = None
    train_csv: str | None = None
    val_csv: str | None = None
    video_root: str | None = None
    train_split: str | None = None
    val_split: str | None = None
    classes: list[str] | None = None
    class_file: str | None = None
    num_classes: int | None = None
    per_class: int | None = None
    subset_seed: int = 0
    frames: int | None = None
    sampling_rate: int | None = None
    train_crop: int | None = None
    test_crop: int | None = None
    train_short_side: list[int] | None = None
    test_short_side: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    flip: bool | None = None  # None: on for real videos, off for synthetic ones (see `flip_enabled`)
    target_fps: float | None = None  # sample clips by time on this timeline (None: the model's rule)
    # Sample by frame index whatever the model's rule; None: only for synthetic videos (made at one rate).
    sample_by_index: bool | None = None
    batch_size: int = 8
    val_batch_size: int | None = None
    val_clips: int = 1
    num_workers: int = 0

    @property
    def by_index(self) -> bool:
        """Clips sampled by frame index: ``sample_by_index``, or by default for synthetic videos without a
        ``target_fps``."""
        if self.sample_by_index is None:
            return self.synthetic is not None and self.target_fps is None
        return self.sample_by_index

    @property
    def flip_enabled(self) -> bool:
        """Horizontal flip augmentation: ``flip``, or by default on except for synthetic videos (their
        left/right and clockwise/counter-clockwise classes swap under a flip)."""
        return self.synthetic is None if self.flip is None else self.flip


@dataclass
class OptimSection:
    """SGD or AdamW; learning rate warmed up linearly over ``warmup_epochs`` (from ``warmup_start * lr``),
    then cosine-annealed to ``min_lr`` at the end of training. Updated every step."""

    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.0
    warmup_start: float = 0.01
    min_lr: float = 0.0


@dataclass
class TrainSection:
    """``amp``: float16 autocast, only on CUDA. ``checkpoint_every_steps``: also checkpoint mid-epoch.
    ``continual_eval``: after training, stream every validation video through the continual model.
    ``sync_bn``: under torchrun, BatchNorm statistics over the whole batch of all processes
    (``nn.SyncBatchNorm``, CUDA only) instead of each process's share. ``grad_checkpointing``: recompute
    activations in the backward pass (`cozoo.layers.heads.VideoClassifier.set_grad_checkpointing`)."""

    epochs: int = 10
    device: str = "auto"
    amp: bool = True
    clip_grad_norm: float | None = None
    label_smoothing: float = 0.0
    checkpoint_every_steps: int = 0
    continual_eval: bool = True
    progress: bool = True
    sync_bn: bool = False
    grad_checkpointing: bool = False


@dataclass
class FinetuneConfig:
    model: ModelSection
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    output_dir: str = "runs/finetune"
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], validate: bool = True) -> FinetuneConfig:
        """Build (keys and types checked); ``validate`` also checks values: off for a config saved by a
        run, which is read back as it was even where today's checks are stricter."""
        config = _build(cls, data, "")
        if validate:
            config.validate()
        return config

    def validate(self) -> None:
        if not self.model.name:
            raise ConfigError("model.name is required (a registered regular model, see `cozoo models`)")
        if self.optim.name not in ("sgd", "adamw"):
            raise ConfigError(f"optim.name must be 'sgd' or 'adamw', got {self.optim.name!r}")
        positive = {"train.epochs": self.train.epochs, "data.batch_size": self.data.batch_size,
                    "data.val_clips": self.data.val_clips, "optim.lr": self.optim.lr}
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key} must be positive, got {value}")
        if min(self.optim.warmup_epochs, self.train.checkpoint_every_steps, self.data.num_workers) < 0:
            raise ConfigError("optim.warmup_epochs, train.checkpoint_every_steps and data.num_workers "
                              "must be >= 0")
        data = self.data
        if data.synthetic is None and not (data.train_csv and data.val_csv and data.video_root):
            raise ConfigError("data needs either a 'synthetic' section ('synthetic: {}' for its defaults) or "
                              "train_csv, val_csv and video_root")
        short = self.data.train_short_side
        if short is not None and (len(short) != 2 or not all(isinstance(v, int) for v in short)):
            raise ConfigError(f"data.train_short_side must be [low, high], got {short}")
        self._validate_ranges()
        if data.synthetic is not None:
            self._validate_synthetic(data.synthetic)
        if "num_classes" in self.model.kwargs:
            raise ConfigError("model.kwargs.num_classes: the number of classes follows the data's classes")

    def _validate_ranges(self) -> None:
        optim, train, data = self.optim, self.train, self.data
        sizes = ("frames", "sampling_rate", "train_crop", "test_crop", "test_short_side", "val_batch_size")
        for key in sizes:
            value = getattr(data, key)
            if value is not None and value < 1:
                raise ConfigError(f"data.{key} must be a positive integer (or null: the default), "
                                  f"got {value}")
        checks = [
            ("data.train_short_side", data.train_short_side,
             data.train_short_side is None or 1 <= data.train_short_side[0] <= data.train_short_side[1],
             "[low, high] with 1 <= low <= high"),
            ("data.mean", data.mean, data.mean is None or len(data.mean) == 3, "three numbers (R, G, B)"),
            ("data.std", data.std, data.std is None or (len(data.std) == 3 and min(data.std) > 0),
             "three positive numbers (R, G, B)"),
            ("data.target_fps", data.target_fps, data.target_fps is None or 0 < data.target_fps < math.inf,
             "positive (or null: sample by frame index)"),
            ("optim.warmup_epochs", optim.warmup_epochs, optim.warmup_epochs <= train.epochs,
             f"at most train.epochs = {train.epochs}"),
            ("train.clip_grad_norm", train.clip_grad_norm,
             train.clip_grad_norm is None or train.clip_grad_norm > 0, "positive (or null: no clipping)"),
            ("train.label_smoothing", train.label_smoothing, 0 <= train.label_smoothing < 1, "in [0, 1)"),
            ("optim.betas", optim.betas, len(optim.betas) == 2 and all(0 <= b < 1 for b in optim.betas),
             "two numbers in [0, 1)"),
            ("optim.min_lr", optim.min_lr, 0 <= optim.min_lr <= optim.lr, f"in [0, optim.lr = {optim.lr}]"),
            ("seed", self.seed, self.seed >= 0, "a non-negative integer"),
            ("data.subset_seed", self.data.subset_seed, self.data.subset_seed >= 0, "a non-negative integer"),
        ]
        for key, value, ok, wanted in checks:
            if not ok:
                raise ConfigError(f"{key} must be {wanted}, got {value!r}")

    def _validate_synthetic(self, synthetic: SyntheticSection) -> None:
        sizes = {"fps": synthetic.fps, "frames": synthetic.frames, "size": synthetic.size,
                 "videos_per_class": synthetic.videos_per_class,
                 "val_videos_per_class": synthetic.val_videos_per_class}
        for key, value in sizes.items():
            if value <= 0:
                raise ConfigError(f"data.synthetic.{key} must be positive, got {value}")
        try:
            swapped = [c for c in synthetic.classes if flipped_class(c) != c]
        except ValueError as error:
            raise ConfigError(f"data.synthetic.classes: {error}") from None
        if self.data.flip_enabled and swapped:
            raise ConfigError(f"data.flip is on, but a horizontal flip turns the synthetic classes {swapped} "
                              "into others (left/right, clockwise/counter-clockwise): set data.flip: false")


_SECTIONS: dict[str, type] = {"model": ModelSection, "data": DataSection, "optim": OptimSection,
                              "train": TrainSection, "synthetic": SyntheticSection}


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(where + k for k in unknown)}; "
                          f"known in {where.rstrip('.') or 'top level'}: {', '.join(fields)}")
    values = {}
    for key, value in data.items():
        if key in _SECTIONS and value is not None:
            value = _build(_SECTIONS[key], value, f"{where}{key}.")
        values[key] = _check_type(value, fields[key], f"{where}{key}")
    if "model" in fields and "model" not in values:
        raise ConfigError("config has no 'model' section (model.name is required)")
    return cls(**values)


_YAML11_FLOAT = re.compile(r"[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+")
_TYPES: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str, "list": list, "dict": dict}


def _check_type(value: Any, spec: dataclasses.Field, key: str) -> Any:
    """Check ``value`` against the field's annotation; an int is accepted (and converted) for a float."""
    alternatives = [part.strip().split("[")[0] for part in str(spec.type).split("|")]
    if value is None:
        if "None" not in alternatives:
            raise ConfigError(f"{key} may not be null")
        return value
    if dataclasses.is_dataclass(value):
        return value
    expected = tuple(_TYPES[name] for name in alternatives if name in _TYPES)
    if not expected:  # Any
        return value
    if isinstance(value, bool) and bool not in expected:
        raise ConfigError(f"{key} must be {spec.type}, got {value!r}")
    if float in expected and int not in expected and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    yaml11_float = isinstance(value, str) and _YAML11_FLOAT.fullmatch(value)
    if float in expected and str not in expected and yaml11_float:
        return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    if not isinstance(value, expected):
        raise ConfigError(f"{key} must be {spec.type}, got {value!r}")
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.1"`` -> (["optim", "lr"], 0.1); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    return key.strip().split("."), yaml.safe_load(raw)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {key} is not a section")
            node = child
        node[keys[-1]] = value
    return data


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> FinetuneConfig:
    """Read a YAML recipe, apply ``key=value`` overrides and validate (relative paths: from the working
    directory)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {str(path)!r}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return FinetuneConfig.from_dict(apply_overrides(data, overrides or []))
