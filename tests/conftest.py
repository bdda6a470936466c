"""Test-wide settings (property tests derandomized in CI, random locally) and shared fixtures."""

import os
from collections.abc import Iterator

import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Tiny models and timed loops of tiny ops run fastest, and steadiest on a shared machine, on one
    intra-op thread; the previous setting is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
