"""Timing and memory primitives of the benchmark: per-call latency, throughput, peak memory.

Every measurement is iteration- and time-bounded (`Budget`): it runs at least ``min_iters`` timed calls
and stops after ``max_iters`` calls or once ``seconds`` have elapsed, whichever comes first, and records
how many it ran. CUDA work is synchronised around each timed call for latencies, and only at the end of
a run for throughput.
"""

from __future__ import annotations

import ctypes
import gc
import platform
import re
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode


@dataclass(frozen=True)
class Budget:
    """How long to measure: ``warmup`` untimed calls, then ``min_iters`` to ``max_iters`` timed calls,
    stopping early once ``seconds`` have elapsed."""

    warmup: int = 3
    min_iters: int = 3
    max_iters: int = 100
    seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_iters < 1 or self.max_iters < self.min_iters or self.seconds <= 0:
            raise ValueError(f"invalid budget {self}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_iterations(budget: Budget) -> Iterator[int]:
    """Iteration numbers within the budget; Python's garbage collector is paused meanwhile (collected
    first), so its pauses do not land in some samples and not others."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for i in range(budget.max_iters):
            if i >= budget.min_iters and time.perf_counter() - start > budget.seconds:
                return
            yield i
    finally:
        gc.enable()


@dataclass(frozen=True)
class Latency:
    """Per-frame latency in milliseconds: ``median`` of amortised periods (a period is ``period`` calls,
    the model's temporal stride; 1 for clips), ``worst_phase``: the slowest single call's median over
    its phase of the period; ``samples``: periods timed."""

    median_ms: float
    worst_phase_ms: float
    samples: int
    period: int


def measure_latency(call: Callable[[int], object], device: torch.device, budget: Budget,
                    period: int = 1) -> Latency:
    """Time ``call(i)`` (i counts calls from 0) one call at a time, synchronised; a sample is one full
    period of ``period`` calls. Warm-up calls come first (``budget.warmup`` periods)."""
    calls = 0
    for _ in range(budget.warmup * period):
        call(calls)
        calls += 1
    synchronize(device)
    per_period: list[float] = []
    per_phase: list[list[float]] = [[] for _ in range(period)]
    for _ in _timed_iterations(budget):
        total = 0.0
        for phase in range(period):
            start = time.perf_counter()
            call(calls)
            synchronize(device)
            elapsed = time.perf_counter() - start
            calls += 1
            per_phase[phase].append(elapsed)
            total += elapsed
        per_period.append(total / period)
    return Latency(
        median_ms=1e3 * statistics.median(per_period),
        worst_phase_ms=1e3 * max(statistics.median(times) for times in per_phase),
        samples=len(per_period),
        period=period,
    )


@dataclass(frozen=True)
class Throughput:
    """``outputs_per_s``: outputs (frames, or clips for a sliding-window regular model) per second;
    ``calls``: timed calls, run back to back with one synchronisation at the end."""

    outputs_per_s: float
    calls: int


def measure_throughput(call: Callable[[int], object], device: torch.device, budget: Budget,
                       outputs_per_call: int, period: int = 1) -> Throughput:
    """Run ``call(i)`` back to back in whole periods; returns outputs per second."""
    calls = 0
    for _ in range(budget.warmup * period):
        call(calls)
        calls += 1
    synchronize(device)
    start = time.perf_counter()
    timed = 0
    for _ in _timed_iterations(budget):
        for _ in range(period):
            call(calls)
            calls += 1
            timed += 1
    synchronize(device)
    elapsed = time.perf_counter() - start
    return Throughput(outputs_per_s=timed * outputs_per_call / elapsed, calls=timed)


# -- peak memory ------------------------------------------------------------------------------------------
CPU_MEMORY_METHOD = (
    "peak resident set size during the timed calls (VmHWM, reset through /proc/self/clear_refs after one "
    "untimed period) minus the RSS before the mode was set up; "
    "weights were resident before, so this is activations, stream state and allocator overhead"
)
CUDA_MEMORY_METHOD = (
    "torch.cuda.max_memory_allocated during the timed calls (after one untimed period, which takes one-off "
    "allocations such as cuDNN autotuning workspaces) minus memory allocated before the mode was set up; "
    "CUDA-graph modes: torch.cuda.memory_reserved after set-up and capture minus before (replays allocate "
    "nothing: their intermediates live in the graphs' private pools; an upper bound, as it also counts "
    "blocks the caching allocator kept from the eager warm-up)"
)


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"{field} not in /proc/self/status")
    return int(match.group(1))


def _release_free_memory() -> None:
    """Hand memory freed by earlier work back to the OS (glibc), so RSS deltas start from a clean level."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_cpu_peak() -> bool:
    """Reset this process's peak RSS; False where /proc does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _status_kib("VmHWM")
    except OSError:
        return False
    return True


@dataclass
class PeakMemory:
    """Filled in by `track_peak_memory`: peak bytes above the level at entry (None when unavailable).
    ``restart()`` forgets the peak so far (keeping the entry level), e.g. after one-off set-up work."""

    bytes: int | None = None
    restart: Callable[[], object] = lambda: None

    @property
    def mib(self) -> float | None:
        return None if self.bytes is None else self.bytes / 2**20


@contextmanager
def track_peak_memory(device: torch.device) -> Iterator[PeakMemory]:
    """Peak memory of the enclosed work above the level at entry (see the *_MEMORY_METHOD strings)."""
    result = PeakMemory()
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result.restart = lambda: (synchronize(device), torch.cuda.reset_peak_memory_stats(device))
        yield result
        synchronize(device)
        result.bytes = torch.cuda.max_memory_allocated(device) - before
        return
    _release_free_memory()
    if not _reset_cpu_peak():
        yield result
        return
    before = _status_kib("VmRSS")
    result.restart = _reset_cpu_peak
    yield result
    result.bytes = max(0, _status_kib("VmHWM") - before) * 1024


_ALLOCATIONS = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"})


class _OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if not func.is_view and func.overloadpacket.__name__ not in _ALLOCATIONS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def count_compute_ops(fn: Callable[[], object]) -> int:
    """How many ATen ops that do work (neither views nor bare allocations) ``fn()`` dispatches: roughly the
    kernels a GPU launches for it, which sets a batch-1 step's time once its FLOPs are small."""
    with _OpCounter() as counter:
        fn()
    return counter.count


def cpu_name() -> str:
    """The CPU's model name (Linux), else what `platform` knows: recorded with every CPU result."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
