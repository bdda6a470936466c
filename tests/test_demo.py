"""The demo's stream can be right: each class runs for many more model steps than the continual model's
receptive field, so most predictions see a single class (the full demo is too slow for the test suite)."""

from __future__ import annotations

import pytest

from cozoo.demo import RECIPE, SEGMENTS, class_runs
from cozoo.factory import get_config
from cozoo.training import load_config
from cozoo.training.continual_check import build_continual
from cozoo.training.data import clip_settings

pytestmark = pytest.mark.usefixtures("one_thread")


def test_class_runs_merge_consecutive_segments() -> None:
    assert class_runs([("a", 16), ("a", 16), ("b", 8), ("a", 4)]) == [("a", 32), ("b", 8), ("a", 4)]


def test_each_class_runs_for_over_twice_the_receptive_field() -> None:
    config = load_config(RECIPE)
    window = clip_settings(config.data, get_config(config.model.name)).frames
    model = build_continual(config.model.name, 4, config.model.kwargs, window)
    runs = class_runs(SEGMENTS)
    assert len({label for label, _ in runs}) == len(runs) == 4  # every class once, in one run
    for label, frames in runs:
        steps = frames // config.data.sampling_rate
        assert steps >= 2 * model.receptive_field, (label, steps, model.receptive_field)
