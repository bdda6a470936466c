"""``cozoo flops NAME [--per-frame]`` and ``cozoo flops --all``: compute cost against the published figures
(the two counting protocols are described in `cozoo.commands.parsers`, which declares the arguments)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

from cozoo.commands.choices import FLOPS_PROTOCOLS
from cozoo.continual import to_continual
from cozoo.factory import create_model, get_config, list_models
from cozoo.flops import FlopCount, convention, count_flops
from cozoo.weights.manifest import manifest_entry


class Co3DFigures(NamedTuple):
    crop: int  # crop that reproduces ``clip`` (inferred: within 2.2% of our eval-mode count)
    clip: float  # GFLOPs of one clip
    frame: float | None  # GFLOPs per frame step of the continual counterpart
    frame_basis: str = "amortised"  # or "costliest step": what ``frame`` counts


# Hedegaard & Iosifidis, "Continual 3D Convolutional Neural Networks for Real-time Processing of Videos",
# ECCV 2022, main benchmark table (shared/co3d_results_table.md). The per-frame figure of CoI3D is its
# costliest step (layers behind the temporal stride 2 are not amortised).
CO3D: dict[str, Co3DFigures] = {
    "x3d_xs": Co3DFigures(160, 0.64, None),
    "x3d_s": Co3DFigures(160, 2.06, 0.17),
    "x3d_m": Co3DFigures(224, 4.97, 0.33),
    "x3d_l": Co3DFigures(312, 19.17, 1.25),
    "i3d_r50": Co3DFigures(224, 28.61, 5.68, "costliest step"),
    "slow_r50": Co3DFigures(256, 54.87, 6.90),
    "slowfast_r50": Co3DFigures(256, 66.25, None),
    "slowfast_r50_4x16": Co3DFigures(256, 36.46, None),
    "r2plus1d_18": Co3DFigures(112, 40.71, None),
    "r2plus1d_18_8f": Co3DFigures(112, 20.35, None),
}
PROTOCOLS = FLOPS_PROTOCOLS
PROTOCOL_NOTES = {
    "co3d": "The Co3D table counted with ptflops 0.6.8 (ReLU, pooling and biases too): on the same networks "
            "it gives ~1% more per clip and 5-6% more per CoX3D step (benchmarks/flops_conventions.py)",
}


@dataclass(frozen=True)
class FlopsReport:
    """Counts for one registered model (regular name) and its continual counterpart."""

    name: str  # the regular model
    continual_name: str | None  # registered continual variant (+ its pool window if another), or None
    # (converted on the fly)
    protocol: str
    crop: int
    frames: int
    clip: FlopCount
    step: FlopCount | None
    published_clip: float | None  # None where unpublished or the setting differs from the protocol's
    published_frame: float | None
    published_source: str
    published_frame_basis: str = "amortised"  # which of our per-step figures the published one compares to

    @property
    def compared_frame_gmacs(self) -> float | None:
        """Our per-step GFLOPs on the published figure's basis (amortised, or the costliest step)."""
        if self.step is None:
            return None
        costliest = self.published_frame_basis == "costliest step"
        return self.step.peak_step_macs / 1e9 if costliest else self.step.gmacs

    @property
    def ratio(self) -> float | None:
        return self.clip.macs / self.step.macs if self.step is not None and self.step.macs else None


def _diff(value: float, published: float | None) -> str:
    return f"{100 * (value / published - 1):+.1f}%" if published else "-"


def _continual_variant(name: str, frames: int) -> str | None:
    """The registered continual model of ``name``, preferring the one pooling over ``frames``."""
    variants = [n for n in list_models() if get_config(n).source == name]
    same = [n for n in variants if get_config(n).frames == frames]
    return (same or variants or [None])[0]


def _published(name: str, protocol: str) -> tuple[float | None, float | None, str, str]:
    """(clip GFLOPs, per-frame GFLOPs, source, per-frame basis) published for ``name``."""
    if protocol == "co3d":
        figures = CO3D.get(name)
        if figures is None:
            return None, None, "-", "amortised"
        return figures.clip, figures.frame, "Co3D (ECCV 2022) table", figures.frame_basis
    entry = manifest_entry(name)
    if entry is None or entry["name"] != name or entry.get("gflops") is None:
        return None, None, "-", "amortised"
    return float(entry["gflops"]), None, str(entry.get("gflops_protocol") or "weights manifest"), "amortised"


def model_report(
    name: str, protocol: str = "pytorchvideo", crop: int | None = None, frames: int | None = None,
    per_frame: bool = True,
) -> FlopsReport:
    """Count ``name`` (regular or continual; a continual name reports its source's clip too) under
    ``protocol``; ``crop``/``frames`` override the protocol's setting (then nothing is compared)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    for label, value in (("crop", crop), ("frames", frames)):
        if value is not None and value < 1:
            raise ValueError(f"--{label} must be positive, got {value}")
    config = get_config(name)
    regular = config.source or name
    source = get_config(regular)
    default_crop = CO3D[regular].crop if protocol == "co3d" and regular in CO3D else source.test_crop
    crop = crop or default_crop
    clip_frames = frames if frames and not config.continual else source.frames
    window = frames or config.frames
    batchnorm = PROTOCOLS[protocol]
    model = create_model(regular)
    clip = count_flops(model, (1, 3, clip_frames, crop, crop), batchnorm=batchnorm)
    step, continual_name = None, None
    if per_frame or config.continual:
        continual_name = name if config.continual else _continual_variant(regular, window)
        continual = _continual_model(model, continual_name, window)
        step = count_flops(continual, (1, 3, crop, crop), batchnorm=batchnorm)
        if continual_name is not None and get_config(continual_name).frames != window:
            continual_name = f"{continual_name}(pool_window={window})"
    published: tuple[float | None, float | None, str, str] = (None, None, "-", "amortised")
    if crop == default_crop and clip_frames == source.frames:
        published = _published(regular, protocol)
    return FlopsReport(regular, continual_name, protocol, crop, clip_frames, clip, step, *published)


def _continual_model(regular: nn.Module, continual_name: str | None, window: int) -> nn.Module:
    if continual_name is not None:
        return create_model(continual_name, pool_window=window)
    return to_continual(regular, pool_window=window)


# -- output ----------------------------------------------------------------------------------------------
def _mb(nbytes: int) -> float:
    return nbytes / 2**20


def _print_report(report: FlopsReport) -> None:
    clip = report.clip
    print(f"{report.name}: 1x3x{report.frames}x{report.crop}x{report.crop} clip, protocol {report.protocol}")
    print(f"  clip       {clip.gmacs:9.3f} GFLOPs   published {_fmt(report.published_clip)}, "
          f"diff {_diff(clip.gmacs, report.published_clip)}  [published: {report.published_source}]")
    print(f"  params     {clip.params / 1e6:9.2f} M        ({_mb(clip.param_bytes):.1f} MB), "
          f"clip activation peak {_mb(clip.activation_peak_bytes):.1f} MB")
    step = report.step
    if step is not None:
        label = report.continual_name or f"to_continual({report.name})"
        basis = report.published_frame_basis
        basis = "" if basis == "amortised" else f" ({basis}, compared with our {basis})"
        print(f"  per frame  {step.gmacs:9.3f} GFLOPs   published {_fmt(report.published_frame)}{basis}, "
              f"diff {_diff(report.compared_frame_gmacs, report.published_frame)}  [{label}]")
        print(f"             amortised over {step.period} step(s), costliest step "
              f"{step.peak_step_macs / 1e9:.3f}; warm-up {step.warmup_steps} steps; "
              f"state {_mb(step.state_bytes):.1f} MB, "
              f"step activation peak {_mb(step.activation_peak_bytes):.1f} MB")
        print(f"  clip / frame ratio {report.ratio:.1f}")
    print(f"  {convention(PROTOCOLS[report.protocol])}")
    if report.protocol in PROTOCOL_NOTES:
        print(f"  {PROTOCOL_NOTES[report.protocol]}")


def _fmt(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


_COLUMNS = (
    ("model", 18), ("T x crop", 9), ("clip", 8), ("pub", 7), ("diff", 7), ("/frame", 7), ("pub", 6),
    ("diff", 7), ("max step", 8), ("ratio", 6), ("params M", 8), ("state MB", 8),
)


def _row(cells: list[str]) -> str:
    return " ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                    for i, (cell, (_, width)) in enumerate(zip(cells, _COLUMNS, strict=True)))


def _print_table(protocol: str, crop: int | None, frames: int | None) -> None:
    print(f"GFLOPs = GMACs per clip (regular) and per frame step (continual, amortised over its stride); "
          f"protocol {protocol}. {convention(PROTOCOLS[protocol])}.")
    print(_row([title for title, _ in _COLUMNS]), flush=True)
    costliest = []
    for name in list_models():
        if get_config(name).continual:
            continue
        r = model_report(name, protocol, crop, frames)
        step = r.step
        if r.published_frame is not None and r.published_frame_basis == "costliest step":
            costliest.append(name)
        print(_row([
            name, f"{r.frames}x{r.crop}", f"{r.clip.gmacs:.3f}", _fmt(r.published_clip),
            _diff(r.clip.gmacs, r.published_clip),
            f"{step.gmacs:.3f}" if step else "-", _fmt(r.published_frame),
            _diff(r.compared_frame_gmacs, r.published_frame) if step else "-",
            f"{step.peak_step_macs / 1e9:.3f}" if step else "-", f"{r.ratio:.1f}" if r.ratio else "-",
            f"{r.clip.params / 1e6:.2f}", f"{_mb(step.state_bytes):.1f}" if step else "-",
        ]), flush=True)
    if costliest:
        print(f"Per-frame diff of {', '.join(costliest)}: against our costliest step (max step), which is "
              "what "
              "the published figure counts.")
    if protocol in PROTOCOL_NOTES:
        print(PROTOCOL_NOTES[protocol] + ".")


def _run(args: argparse.Namespace) -> int:
    if args.all == bool(args.name):
        raise ValueError("give a model NAME or --all (not both)")
    if args.all:
        _print_table(args.protocol, args.crop, args.frames)
    else:
        _print_report(model_report(args.name, args.protocol, args.crop, args.frames, args.per_frame))
    return 0
