"""Choices that the torch-free CLI parser (`cozoo.commands.parsers`) offers and a command implements, kept
here once so neither side repeats the other."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cozoo.flops import BatchNormCount

# FLOPs counting protocol -> how BatchNorms are counted (`cozoo flops --protocol`).
FLOPS_PROTOCOLS: dict[str, BatchNormCount] = {"pytorchvideo": "train", "co3d": "eval"}

# Warm-up modes of a stream (`cozoo stream --warmup`): `cozoo.continual.base.WARMUP_MODES`, which imports
# torch; tests/test_streaming.py checks that the two agree.
WARMUP_MODES = ("valid", "padded")
