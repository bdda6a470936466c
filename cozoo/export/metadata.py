"""The metadata of an exported step (see `cozoo.runtime.metadata` for the format and its checks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cozoo.continual.timing import timing
from cozoo.export.step import StateLayout
from cozoo.runtime.metadata import (
    FORMAT,
    FORMAT_VERSION,
    FRAME_NAME,
    LOGITS_NAME,
    NEXT_PREFIX,
    STEP_NAME,
    VALID_NAME,
)
from cozoo.version import __version__

WARM_UP_RULE = (
    "Start a stream with every state input at its initial value (zeros; state.step 0) and feed each step's "
    "next_state.* outputs back as the next step's state.* inputs. Step t (0-based) gives a prediction iff "
    "the output 'valid' is true, i.e. t >= first_output and (t - first_output) % stride == 0; logits of "
    "other steps are not predictions. A prediction at step t stands for the source clip of schedule."
    "source_clip steps from step t - delay (its centre: t - delay + (source_clip - 1) / 2; a recurrent "
    "model's: steps 0 to t)."
)


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def build_metadata(
    *, name: str, onnx_file: str, model: nn.Module, layout: StateLayout, crop: int, batch: int | None,
    logits_shape: tuple[int, ...], mean: Sequence[float], std: Sequence[float], short_side: int,
    sampling_rate: int, target_fps: float | None, class_names: list[str], weights: dict[str, Any], opset: int,
) -> dict[str, Any]:
    """Everything a runner needs besides the graph: preprocessing, schedule, warm-up rule, labels, state."""
    stride = int(model.stride)  # type: ignore[attr-defined]
    state = [{"name": STEP_NAME, "shape": [], "dtype": "int64", "initial": 0,
              "output": NEXT_PREFIX + STEP_NAME, "batched": False}]
    state += [{"name": t.name, "shape": [batch, *t.shape[1:]], "dtype": _dtype(t.dtype), "initial": 0,
               "output": NEXT_PREFIX + t.name, "batched": True} for t in layout.tensors]
    inputs = [{"name": FRAME_NAME, "shape": [batch, 3, crop, crop], "dtype": "float32"}]
    inputs += [{"name": s["name"], "shape": s["shape"], "dtype": s["dtype"]} for s in state]
    outputs = [{"name": LOGITS_NAME, "shape": [batch, *logits_shape], "dtype": "float32"},
               {"name": VALID_NAME, "shape": [], "dtype": "bool"}]
    outputs += [{"name": s["output"], "shape": s["shape"], "dtype": s["dtype"]} for s in state]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": name,
        "onnx_file": onnx_file,
        "weights": weights,
        "preprocessing": {
            "mean": list(mean), "std": list(std), "crop": crop, "short_side": short_side,
            "steps": "RGB uint8 -> float /255 -> short side resized to short_side (bilinear, half-pixel "
                     "centres, no antialiasing) -> centre crop -> (x - mean) / std -> (1, 3, crop, crop)",
        },
        "sampling_rate": sampling_rate,
        "target_fps": target_fps,
        "schedule": {
            "receptive_field": int(model.receptive_field),  # type: ignore[attr-defined]
            "temporal_padding": int(model.temporal_padding),  # type: ignore[attr-defined]
            "delay": int(model.delay),  # type: ignore[attr-defined]
            "first_output": int(model.first_output),  # type: ignore[attr-defined]
            "stride": stride,
            "source_clip": timing(model).clip_length,
            "recurrent": timing(model).recurrent,
        },
        "warm_up": WARM_UP_RULE,
        "phases": {
            "count": stride,
            "handling": "single graph" if stride == 1 else (
                f"one graph: phase = state.step mod {stride} selects that phase's step graph "
                "(ONNX If nodes); "
                "the caller only feeds state.step back"),
        },
        "batch": batch if batch is not None else "dynamic",
        "inputs": inputs,
        "outputs": outputs,
        "state": state,
        "labels": class_names,
        "opset": opset,
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}, cozoo {__version__}",
    }
