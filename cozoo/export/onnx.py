"""Export a continual model's steady-state step to ONNX with its state as explicit inputs and outputs.

`export_onnx` steps the model eagerly until every module has stepped (its state allocated, its step
counters in their periodic steady state), then traces one step per phase of the model's stride with
`torch.onnx.export` (PyTorch's dynamo-based exporter) and, for a strided model, merges the phase graphs
into one graph selected by ``state.step mod stride`` (`cozoo.export.phases`). The interface and the
metadata file are described in `cozoo.runtime.metadata`.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn
from tqdm import tqdm

from cozoo.continual.base import ContinualModule
from cozoo.continual.fastpath import fast_steps
from cozoo.export.metadata import build_metadata
from cozoo.export.phases import merge_phases
from cozoo.export.step import ExportError, PhaseStep, StateLayout
from cozoo.runtime.metadata import (
    FRAME_NAME,
    LOGITS_NAME,
    NEXT_PREFIX,
    STEP_NAME,
    VALID_NAME,
    metadata_path,
    write_metadata,
)

OPSET = 18


@dataclass(frozen=True)
class ExportedModel:
    """Paths of an exported step and its metadata."""

    onnx_path: Path
    metadata_path: Path


def export_onnx(
    model: nn.Module,
    out_dir: str | os.PathLike,
    name: str,
    crop: int,
    *,
    batch: int = 1,
    dynamic_batch: bool = False,
    mean: Sequence[float] = (0.45, 0.45, 0.45),
    std: Sequence[float] = (0.225, 0.225, 0.225),
    short_side: int | None = None,
    sampling_rate: int = 1,
    target_fps: float | None = None,
    class_names: Sequence[str] | None = None,
    weights: dict[str, Any] | None = None,
    progress: bool = True,
) -> ExportedModel:
    """Write ``out_dir/name.onnx`` (the step for ``batch`` streams of ``crop`` x ``crop`` frames, or any
    batch size with ``dynamic_batch``) and ``out_dir/name.json`` (its metadata). ``mean``/``std``,
    ``short_side`` (default ``crop``), ``sampling_rate``, ``target_fps``, ``class_names`` and ``weights``
    (``{"source": ..., "sha256": ...}``) describe how to feed and read the model. Resets the model."""
    _check_exportable(model, crop, batch)
    first, stride = model.first_output, model.stride  # type: ignore[attr-defined]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:  # the plain step: a ring cache's slot (a fast path) would be baked into the traced graph
        with fast_steps(False):
            logits_shape = _warm_up(model, crop, first, stride, progress)
            layout = StateLayout(model)
            phases = _trace_phases(model, layout, name, crop, batch, dynamic_batch, logits_shape, progress)
    finally:
        model.reset()  # type: ignore[attr-defined]
    merged = merge_phases(phases)
    try:
        onnx.checker.check_model(merged)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"{name}: the exported graph does not pass onnx.checker: {err}") from None
    onnx_path = out_dir / f"{name}.onnx"
    temp = onnx_path.with_name(f".{onnx_path.name}.tmp")
    try:
        onnx.save_model(merged, os.fspath(temp))
        os.replace(temp, onnx_path)
    finally:
        temp.unlink(missing_ok=True)
    n_outputs = 1
    for size in logits_shape:
        n_outputs *= size
    metadata = build_metadata(
        name=name, onnx_file=onnx_path.name, model=model, layout=layout, crop=crop,
        batch=None if dynamic_batch else batch, logits_shape=logits_shape, mean=mean, std=std,
        short_side=short_side or crop, sampling_rate=sampling_rate, target_fps=target_fps,
        class_names=[f"class_{i}" for i in range(n_outputs)] if class_names is None else list(class_names),
        weights=weights or {"source": "unknown", "sha256": None}, opset=OPSET,
    )
    return ExportedModel(onnx_path, write_metadata(metadata, metadata_path(onnx_path)))


def _trace_phases(model: nn.Module, layout: StateLayout, name: str, crop: int, batch: int, dynamic: bool,
                  logits_shape: tuple[int, ...], progress: bool) -> list[onnx.ModelProto]:
    """The step at each phase of the stride, from the warmed-up model (at phase 0)."""
    first, stride = model.first_output, model.stride  # type: ignore[attr-defined]
    trace_batch = max(batch, 2) if dynamic else batch  # a traced size 1 would be specialised
    steps = -(-(first + stride) // stride) * stride
    phases = []
    for phase in tqdm(range(stride), desc=f"export {name}: tracing phases", disable=not progress):
        phases.append(_trace_phase(model, layout, first, stride, logits_shape, crop, trace_batch,
                                   steps + phase, dynamic, f"{name} (phase {phase} of {stride})"))
        with torch.no_grad():  # on to the next phase's step counts
            model._step(torch.zeros(1, 3, crop, crop))  # type: ignore[operator]
    return phases


def _check_exportable(model: nn.Module, crop: int, batch: int) -> None:
    if not isinstance(model, ContinualModule):
        raise ExportError(f"{type(model).__name__} is not a continual model: convert it with "
                          "cozoo.continual.to_continual() (only the step of a continual model is exported)")
    if model.takes_pathways or model.frame_rank != 4:
        raise ExportError(f"{type(model).__name__} does not step on frames (N, C, H, W): only whole models "
                          "that take one frame per step are exported")
    if model.training:
        raise ExportError("model is in training mode: call model.eval() before exporting")
    param = next(model.parameters(), None)
    if param is None or param.dtype != torch.float32 or param.device.type != "cpu":
        raise ExportError("export needs a float32 model on the CPU (model.float().cpu())")
    if crop < 1 or batch < 1:
        raise ExportError(f"crop and batch must be positive, got crop {crop} and batch {batch}")


def _warm_up(model: nn.Module, crop: int, first: int, stride: int, progress: bool) -> tuple[int, ...]:
    """Step zero frames until every module has stepped and the step counters are periodic, starting at a
    step that is a multiple of ``stride`` (phase 0); returns the shape of one stream's output."""
    model.reset()  # type: ignore[attr-defined]
    frame = torch.zeros(1, 3, crop, crop)
    steps = -(-(first + stride) // stride) * stride
    shape = None
    with torch.no_grad():
        for _ in tqdm(range(steps), desc="export: warm-up steps", disable=not progress, leave=False):
            try:
                out = model.forward_step(frame)  # type: ignore[operator]
            except (RuntimeError, ValueError) as err:
                raise ExportError(f"the model does not step on {crop}x{crop} frames: {err}") from None
            if out is not None:
                shape = tuple(out.shape[1:])
    if shape is None:
        raise ExportError(f"the model gave no output in {steps} steps (first output {first}, "
                          f"stride {stride})")
    return shape


def _trace_phase(model: nn.Module, layout: StateLayout, first: int, stride: int,
                 logits_shape: tuple[int, ...], crop: int, batch: int, step: int, dynamic: bool,
                 what: str) -> onnx.ModelProto:
    """One phase's step as an ONNX model (the model's own state is left as it was)."""
    saved = layout.read()
    wrapper = PhaseStep(model, layout, first, stride, logits_shape).eval()
    state = layout.zeros(batch)
    args = (torch.randn(batch, 3, crop, crop), torch.tensor(step, dtype=torch.int64), *state)
    names = [t.name for t in layout.tensors]
    dynamic_shapes = None
    if dynamic:
        dim = torch.export.Dim("batch", min=1)
        dynamic_shapes = ({0: dim}, None, tuple({0: dim} for _ in state))
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper, args, dynamo=True, opset_version=OPSET, verbose=False, external_data=False,
                input_names=[FRAME_NAME, STEP_NAME, *names],
                output_names=[LOGITS_NAME, VALID_NAME, NEXT_PREFIX + STEP_NAME,
                              *(NEXT_PREFIX + n for n in names)],
                dynamic_shapes=dynamic_shapes,
            )
    except Exception as err:  # the exporter raises many types; name the model and the first line
        raise ExportError(f"{what}: torch.onnx.export failed: {_summary(err)}") from err
    finally:
        layout.load(saved)
    return program.model_proto


def _summary(err: BaseException) -> str:
    """The root cause of an exporter error in one line (the exporter wraps it in long advice)."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"
