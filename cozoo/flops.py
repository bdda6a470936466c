"""Compute cost of regular and continual models: multiply-accumulates, parameters, activation and state
memory.

`count_flops(model, input)` counts one clip forward for a regular model, and for a continual model one
frame step in steady state: the model is stepped past its warm-up, then MACs are summed over one full
period of ``model.stride`` steps and divided by it, so temporally strided layers are amortised over
their stride (a continual conv step costs one output frame). The model is run on a copy on the ``meta``
device by default: shapes only, no arithmetic and no memory, so full-size models count in well under a
second. Only the input's shape and dtype matter.

Counting convention (fvcore's, which the published GFLOPs figures use; "GFLOPs" there means GMACs):

* convolution: one MAC per multiply-accumulate, bias not counted (N x out positions x weight size);
* linear, mm, addmm, bmm, matmul: one per multiply-accumulate, bias not counted;
* batch norm: 2 per element with affine parameters, 1 without (``batchnorm="eval"``: fvcore on a
  model in eval mode), or 5 / 4 (``batchnorm="train"``: fvcore on a model in train mode, which is how
  the PyTorchVideo model zoo's figures were produced);
* layer / group / instance norm 5 per element (4 without affine), adaptive average pool 2d 1 per
  input element, nearest / bilinear upsampling and grid sampling 1 / 4 / 4 per output element;
* not counted (as in fvcore): elementwise ops and activations, additions, max / average pools,
  means (so squeeze-excitation and global pools cost only their convolutions / linear layers);
* one deviation: LSTM / GRU layers count their matrix products (fvcore skips ``aten::lstm``).
"""

from __future__ import annotations

import copy
import math
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from cozoo.continual.base import ContinualModule
from cozoo.continual.fastpath import fast_steps

BatchNormCount = Literal["eval", "train"]
CONVENTION = (
    "MACs, fvcore convention: conv/linear/matmul multiply-accumulates (no bias), batch norm "
    "{bn} per element ({mode}-mode count); elementwise ops, pools and means not counted"
)
# Attributes of continual modules that hold weight-derived caches (CoConv3d's 2D layouts), not stream state.
_WEIGHT_CACHES = frozenset({"_derived"})


@dataclass(frozen=True)
class FlopCount:
    """What `count_flops` measured. ``macs`` covers the whole input batch."""

    mode: Literal["clip", "step"]
    input_shape: tuple[int, ...]
    macs: float  # per clip, or per frame step (amortised over ``period`` steps)
    by_op: dict[str, float]
    params: int
    param_bytes: int
    activation_peak_bytes: int  # peak of tensors allocated during the forward (or one step)
    state_bytes: int = 0  # continual state in steady state (0 for a regular model)
    warmup_steps: int = 0  # steps before the first output
    period: int = 1  # steps the per-frame figure is amortised over (the model's temporal stride)
    peak_step_macs: float = 0.0  # the costliest single step of the period (= macs for a clip)
    batchnorm: BatchNormCount = "eval"
    convention: str = field(default="", repr=False)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    def summary(self) -> str:
        """A few human-readable lines."""
        what = "per clip" if self.mode == "clip" else f"per frame step (amortised over {self.period})"
        lines = [
            f"input {tuple(self.input_shape)}: {self.gmacs:.3f} GFLOPs (GMACs) {what}",
            f"  params {self.params / 1e6:.2f} M ({_mb(self.param_bytes)} MB), "
            f"activation peak {_mb(self.activation_peak_bytes)} MB",
        ]
        if self.mode == "step":
            lines.append(
                f"  state {_mb(self.state_bytes)} MB, warm-up {self.warmup_steps} steps, "
                f"costliest step {self.peak_step_macs / 1e9:.3f} GMACs"
            )
        ops = ", ".join(f"{op} {macs / 1e9:.3f}" for op, macs in sorted(self.by_op.items()))
        lines.append(f"  by op (GMACs): {ops or 'none'}")
        lines.append(f"  {self.convention}")
        return "\n".join(lines)


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:.2f}"


def convention(batchnorm: BatchNormCount) -> str:
    """The one-line statement of what the counts mean, for printing next to them."""
    return CONVENTION.format(bn="5" if batchnorm == "train" else "2", mode=batchnorm)


# -- per-op MAC formulas ---------------------------------------------------------------------------------
def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def _conv(args: Sequence[Any], out: torch.Tensor, transposed: bool = False) -> int:
    x, w = args[0], args[1]
    # A transposed conv does its MACs per *input* position.
    positions = x.shape[2:] if transposed else out.shape[2:]
    return x.shape[0] * _numel(positions) * w.numel()


def _convolution(args: Sequence[Any], out: torch.Tensor) -> int:
    return _conv(args, out, transposed=bool(args[6]))


def _matmul(a: torch.Tensor, out: torch.Tensor) -> int:
    return out.numel() * a.shape[-1]


def _linear(args: Sequence[Any], out: torch.Tensor) -> int:
    return out.numel() * args[1].shape[-1]


def _recurrent(args: Sequence[Any], out: Any) -> int:
    """lstm.input / gru.input / rnn_*.input: every weight matrix is applied once per token."""
    x, params = args[0], args[2]
    tokens = x.shape[0] * x.shape[1] if x.dim() == 3 else x.shape[0]  # batch x sequence, either layout
    return tokens * sum(p.numel() for p in params if p.dim() == 2)


def _norm(weight_index: int, affine: int, plain: int) -> Callable[[Sequence[Any], Any], int]:
    def count(args: Sequence[Any], out: Any) -> int:
        has_affine = len(args) > weight_index and args[weight_index] is not None
        return args[0].numel() * (affine if has_affine else plain)

    return count


def _per_element(which: Literal["in", "out"], cost: int) -> Callable[[Sequence[Any], Any], int]:
    def count(args: Sequence[Any], out: Any) -> int:
        tensor = args[0] if which == "in" else (out[0] if isinstance(out, (tuple, list)) else out)
        return tensor.numel() * cost

    return count


def _handlers(batchnorm: BatchNormCount) -> dict[str, tuple[str, Callable[[Sequence[Any], Any], int]]]:
    """aten op name (``op`` or ``op.overload``) -> (reported category, MAC formula). Both the composite
    ops seen under inference mode (conv3d, linear, batch_norm) and their decompositions (convolution,
    addmm, native_batch_norm) are covered."""
    bn = _norm(1, 5, 4) if batchnorm == "train" else _norm(1, 2, 1)
    conv = ("conv", _conv)
    table: dict[str, tuple[str, Callable[[Sequence[Any], Any], int]]] = {
        **{name: conv for name in ("conv1d", "conv2d", "conv3d")},
        **{f"conv_transpose{d}d": ("conv", lambda a, o: _conv(a, o, transposed=True)) for d in (1, 2, 3)},
        "convolution": ("conv", _convolution),
        "_convolution": ("conv", _convolution),
        "linear": ("linear", _linear),
        "mm": ("matmul", lambda a, o: _matmul(a[0], o)),
        "matmul": ("matmul", lambda a, o: _matmul(a[0], o)),
        "bmm": ("matmul", lambda a, o: _matmul(a[0], o)),
        "addmm": ("linear", lambda a, o: _matmul(a[1], o)),
        "baddbmm": ("matmul", lambda a, o: _matmul(a[1], o)),
        **{f"{name}.input": ("recurrent", _recurrent) for name in ("lstm", "gru", "rnn_tanh", "rnn_relu")},
        **{name: ("batch_norm", bn) for name in (
            "batch_norm", "native_batch_norm", "_native_batch_norm_legit",
            "_native_batch_norm_legit_no_training", "_batch_norm_with_update", "_batch_norm_no_update",
            "cudnn_batch_norm", "miopen_batch_norm",
        )},
        "layer_norm": ("norm", _norm(2, 5, 4)),
        "native_layer_norm": ("norm", _norm(2, 5, 4)),
        "group_norm": ("norm", _norm(2, 5, 4)),
        "native_group_norm": ("norm", _norm(1, 5, 4)),
        "instance_norm": ("norm", _norm(1, 5, 4)),
        "adaptive_avg_pool2d": ("adaptive_avg_pool2d", _per_element("in", 1)),
        "_adaptive_avg_pool2d": ("adaptive_avg_pool2d", _per_element("in", 1)),
        "upsample_nearest2d": ("upsample", _per_element("out", 1)),
        "upsample_bilinear2d": ("upsample", _per_element("out", 4)),
        "grid_sampler": ("grid_sample", _per_element("out", 4)),
        "grid_sampler_2d": ("grid_sample", _per_element("out", 4)),
    }
    return table


class _Counter(TorchDispatchMode):
    """Sums MACs per category and tracks the peak bytes of tensors allocated while active."""

    def __init__(self, batchnorm: BatchNormCount) -> None:
        super().__init__()
        self.handlers = _handlers(batchnorm)
        self.macs: Counter[str] = Counter()
        self.live = 0
        self.peak = 0

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        name = func.__name__
        handler = self.handlers.get(name) or self.handlers.get(name.split(".")[0])
        if handler is not None:
            category, formula = handler
            self.macs[category] += formula(args, out)
        self._track(func, out)
        return out

    def _track(self, func: Any, out: Any) -> None:
        """Count outputs that own fresh storage (not views, not in-place results) until they are freed."""
        outputs = out if isinstance(out, (tuple, list)) else (out,)
        returns = func._schema.returns
        if len(returns) == 1 and len(outputs) > 1:  # a Tensor[] return
            returns = returns * len(outputs)
        for ret, tensor in zip(returns, outputs, strict=False):  # ops with mixed list returns: best effort
            if ret.alias_info is not None or not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            nbytes = storage.nbytes()
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, nbytes)


# -- public entry point ----------------------------------------------------------------------------------
def count_flops(
    model: nn.Module,
    input: torch.Tensor | Sequence[int],
    *,
    mode: Literal["auto", "clip", "step"] = "auto",
    batchnorm: BatchNormCount = "eval",
    device: str | torch.device | None = "meta",
) -> FlopCount:
    """Count MACs (fvcore convention, see the module docstring), parameters and memory of ``model``.

    ``input`` is a tensor or a shape: what one forward takes, e.g. a clip (N, C, T, H, W), or for step
    mode one frame (N, C, H, W) (a clip shape is accepted too; its T is ignored). ``mode="auto"`` steps
    continual models and runs one clip forward otherwise. ``device="meta"`` runs a shape-only copy;
    ``None`` runs a copy where the model lives, on zeros. The model passed in is never modified.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_flops expects an nn.Module, got {type(model).__name__}")
    if batchnorm not in ("eval", "train"):
        raise ValueError(f"batchnorm must be 'eval' or 'train', got {batchnorm!r}")
    if mode not in ("auto", "clip", "step"):
        raise ValueError(f"mode must be 'auto', 'clip' or 'step', got {mode!r}")
    continual = isinstance(model, ContinualModule)
    if mode == "auto":
        mode = "step" if continual else "clip"
    if mode == "step" and not continual:
        raise ValueError(
            f"step mode needs a continual model, got {type(model).__name__}; convert it with "
            "cozoo.continual.to_continual"
        )
    shape, dtype = _input_spec(input, mode)
    work = _working_copy(model, device)
    param = next(work.parameters(), None)
    target = param.device if param is not None else torch.device(device or "cpu")
    dtype = param.dtype if param is not None and not isinstance(input, torch.Tensor) else dtype
    x = torch.zeros(shape, dtype=dtype, device=target)
    params, param_bytes = _parameter_size(model)
    common = {"params": params, "param_bytes": param_bytes, "batchnorm": batchnorm,
              "convention": convention(batchnorm), "input_shape": shape}
    with torch.inference_mode():
        if mode == "clip":
            counter = _Counter(batchnorm)
            try:
                with counter:
                    work(x)
            except RuntimeError as error:
                if x.dim() != 4:
                    raise
                raise ValueError(  # a frame shape given to a video model: name it, not the conv's complaint
                    f"{type(model).__name__} failed on a {tuple(x.shape)} input in clip mode ({error}); "
                    "video models take a clip (N, C, T, H, W), and one frame (N, C, H, W) is counted in "
                    "step mode of a continual model"
                ) from None
            macs = float(sum(counter.macs.values()))
            return FlopCount(mode="clip", macs=macs, by_op=_as_float(counter.macs),
                             activation_peak_bytes=counter.peak, peak_step_macs=macs, **common)
        return _count_steps(work, x, common, batchnorm)


def _input_spec(value: torch.Tensor | Sequence[int], mode: str) -> tuple[tuple[int, ...], torch.dtype]:
    if isinstance(value, torch.Tensor):
        shape, dtype = tuple(value.shape), value.dtype
        if not dtype.is_floating_point:
            raise ValueError(f"input must be floating point, got {dtype}")
    else:
        try:
            shape = tuple(int(d) for d in value)
        except (TypeError, ValueError):
            raise ValueError(f"input must be a tensor or a shape (sequence of ints), got {value!r}") from None
        dtype = torch.float32
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input shape {shape} is empty or has a non-positive dimension")
    if mode == "step":
        if len(shape) == 5:
            shape = shape[:2] + shape[3:]
        elif len(shape) != 4:
            raise ValueError(f"step mode expects a frame (N, C, H, W) or clip (N, C, T, H, W), got {shape}")
    return shape, dtype


def _working_copy(model: nn.Module, device: str | torch.device | None) -> nn.Module:
    # Stream state and caches are not copied (state built with autograd on cannot be deep-copied).
    memo: dict[int, Any] = {
        id(tensor): None for module in model.modules() for tensor in _attribute_tensors(module, caches=True)
    }
    work = copy.deepcopy(model, memo)
    if isinstance(work, ContinualModule):
        work.reset()
    if device is not None:
        work = work.to(device)
    return work.eval()


def _parameter_size(model: nn.Module) -> tuple[int, int]:
    params = list(model.parameters())  # unique by identity
    return sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params)


def _as_float(macs: Counter[str]) -> dict[str, float]:
    return {key: float(value) for key, value in macs.items() if value}


def _count_steps(model: nn.Module, frame: torch.Tensor, common: dict[str, Any],
                 batchnorm: BatchNormCount) -> FlopCount:
    """Step past warm-up, then count one period of ``stride`` steps and average. The plain step is counted
    (`fast_steps(False)`): the model as defined, BatchNorms included, like the clip it is compared with."""
    with fast_steps(False):
        return _count_plain_steps(model, frame, common, batchnorm)


def _count_plain_steps(model: nn.Module, frame: torch.Tensor, common: dict[str, Any],
                       batchnorm: BatchNormCount) -> FlopCount:
    assert isinstance(model, ContinualModule)
    warmup, period = int(model.first_output), int(model.stride)
    for _ in range(warmup):
        model.forward_step(frame)
    total: Counter[str] = Counter()
    step_macs, peak, outputs = [], 0, 0
    for _ in range(period):
        counter = _Counter(batchnorm)
        with counter:
            out = model.forward_step(frame)
        outputs += out is not None
        total.update(counter.macs)
        step_macs.append(sum(counter.macs.values()))
        peak = max(peak, counter.peak)
    if outputs != 1:
        raise RuntimeError(
            f"{type(model).__name__} gave {outputs} outputs in the {period} steps after its warm-up of "
            f"{warmup} steps (expected exactly 1): its first_output/stride schedule is inconsistent"
        )
    return FlopCount(
        mode="step", macs=sum(total.values()) / period,
        by_op={key: value / period for key, value in total.items() if value},
        activation_peak_bytes=peak, state_bytes=state_bytes(model), warmup_steps=warmup, period=period,
        peak_step_macs=float(max(step_macs)), **common,
    )


def state_bytes(model: nn.Module) -> int:
    """Bytes of the stream state a continual model holds now: tensors kept as plain attributes of its
    modules (parameters and buffers live in dicts and are not counted; weight-derived caches excluded)."""
    unique = {id(t): t for module in model.modules() for t in _attribute_tensors(module, caches=False)}
    return sum(t.numel() * t.element_size() for t in unique.values())


def _attribute_tensors(module: nn.Module, caches: bool) -> list[torch.Tensor]:
    """Tensors a module keeps as plain attributes (in containers too), not its parameters or buffers."""
    skip = {"_parameters", "_buffers", "_modules"} | (set() if caches else _WEIGHT_CACHES)
    return [t for key, value in vars(module).items() if key not in skip for t in _tensors(value)]


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    return []
