"""Sub-commands of the ``cozoo`` command line: argument types and shared options (torch-free, like
`cozoo.commands.parsers`; each command's implementation is imported only when it runs)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (0 or less is refused, never replaced by a default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


# Threads for small steps: on a busy 2-core machine torch's default (one thread per core) made batch-1
# streaming 14-100x slower than one thread (17.1 s vs 0.43 s, issue 14): each tiny op pays a thread
# hand-off, and the other threads wait for cores others hold. One thread is the default where the work is
# frame steps; batch commands keep torch's default unless told.
STEP_THREADS = 1


def add_threads_argument(parser: argparse.ArgumentParser, default: int | None = None) -> None:
    """``--threads N``: torch intra-op threads for this command (``default`` None: torch's own choice)."""
    told = "torch's default: one per core" if default is None else f"{default}: best for batch-1 frame steps"
    parser.add_argument("--threads", type=positive_int, default=default, metavar="N",
                        help=f"CPU threads torch may use (default: {told})")


@contextmanager
def torch_threads(args: argparse.Namespace) -> Iterator[None]:
    """Torch's intra-op threads from ``--threads`` while the command runs, restored after (a command run
    in-process leaves torch as it found it). Torch is not imported by this: a command that never needs it
    (``cozoo models``) stays torch-free."""
    threads = getattr(args, "threads", None)
    if threads is None and "torch" not in sys.modules:
        yield
        return
    import torch  # the command computes: it imports torch anyway

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress bars or status lines on standard error (results still go to stdout)."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars or status lines (stderr)")
