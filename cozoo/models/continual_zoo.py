"""Registry entries of the continual models: each is its regular source model passed through
`cozoo.continual.to_continual` (weight transfer), with the global pool's window in input frames.

Names follow the Co3D paper: ``cox3d_s`` pools over the source clip length (CoX3D-S_13), ``cox3d_s_64``
over 64 frames. ``create_model(name, pool_window=N)`` sets any window.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import nn

from cozoo.continual import to_continual
from cozoo.models.registry import ModelConfig, get_config, register_model

# (continual name, source name, pool window in frames or None for the source's clip length)
CONTINUAL_VARIANTS: tuple[tuple[str, str, int | None], ...] = (
    ("coc3d", "c3d", None),
    ("coi3d_r50", "i3d_r50", None),
    ("coi3d_r50_64", "i3d_r50", 64),
    ("cor2plus1d_18", "r2plus1d_18", None),
    ("cor2plus1d_18_8f", "r2plus1d_18_8f", None),
    ("cor2plus1d_r50", "r2plus1d_r50", None),
    ("coslow_r50", "slow_r50", None),
    ("coslow_r50_64", "slow_r50", 64),
    ("coslowfast_r50", "slowfast_r50", None),
    ("coslowfast_r50_4x16", "slowfast_r50_4x16", None),
    ("cox3d_xs", "x3d_xs", None),
    ("cox3d_s", "x3d_s", None),
    ("cox3d_m", "x3d_m", None),
    ("cox3d_l", "x3d_l", None),
    ("cox3d_s_64", "x3d_s", 64),
    ("cox3d_m_64", "x3d_m", 64),
    ("cox3d_l_64", "x3d_l", 64),
    ("colate_fusion", "late_fusion", None),
    ("coearly_fusion", "early_fusion", None),
    ("cocnn_lstm", "cnn_lstm", None),
)


def continual_builder(source: ModelConfig, default_window: int) -> Callable[..., nn.Module]:
    def build(
        num_classes: int, pool_window: int = default_window, cache: str = "auto", **kwargs
    ) -> nn.Module:
        regular = source.builder(num_classes=num_classes, **{**source.builder_kwargs, **kwargs})
        return to_continual(regular, pool_window=pool_window, cache=cache)  # type: ignore[arg-type]

    return build


def register_continual_variants() -> None:
    for name, source_name, window in CONTINUAL_VARIANTS:
        source = get_config(source_name)
        frames = window or source.frames
        register_model(
            dataclasses.replace(
                source,
                name=name,
                builder=continual_builder(source, frames),
                frames=frames,
                builder_kwargs={},
                source=source_name,
                description=(
                    f"Continual {source_name} (weights transferred), global pool over {frames} frames. "
                    f"{source.description}"
                ),
            )
        )
