"""The demo's stream can be right, and is scored honestly: each class runs for many more model steps than
the continual model's receptive field, so most predictions see a single class; a prediction is scored
against the class of its source clip's frames, and one whose clip straddles a change of class is counted
apart. The full demo (about 100 s) is too slow for the test suite: a shortened run checks its output."""

from __future__ import annotations

import re

import matplotlib.colors
import pytest
import torch

from cozoo.demo import (
    POOL_WINDOW,
    RECIPE,
    SEGMENTS,
    StreamScore,
    class_runs,
    clip_class,
    main,
    run_spans,
    stream_demo,
)
from cozoo.inference.video import FramePrediction
from cozoo.training import load_config
from cozoo.training.continual_check import build_continual

pytestmark = pytest.mark.usefixtures("one_thread")


def test_class_runs_merge_consecutive_segments() -> None:
    assert class_runs([("a", 16), ("a", 16), ("b", 8), ("a", 4)]) == [("a", 32), ("b", 8), ("a", 4)]


def _recipe_model() -> tuple:
    """The recipe and the continual model the demo streams (untrained)."""
    config = load_config(RECIPE)
    return config, build_continual(config.model.name, 4, config.model.kwargs, POOL_WINDOW)


def test_each_class_runs_for_over_twice_the_receptive_field() -> None:
    config, model = _recipe_model()
    runs = class_runs(SEGMENTS)
    assert len({label for label, _ in runs}) == len(runs) == 4  # every class once, in one run
    for label, frames in runs:
        steps = frames // config.data.sampling_rate
        assert steps >= 2 * model.receptive_field, (label, steps, model.receptive_field)


def test_clip_class_is_the_class_of_the_sampled_frames_or_none_across_a_change() -> None:
    truth = ["a"] * 10 + ["b"] * 10  # frames 0-9 a, 10-19 b
    assert clip_class(truth, 0, 4, 2) == "a"  # frames 0, 2, 4, 6, 8
    assert clip_class(truth, 5, 9, 2) == "b"  # frames 10 .. 18
    assert clip_class(truth, 4, 5, 2) is None  # frames 8 and 10
    assert clip_class(truth, 9, 9, 1) == "a" and clip_class(truth, 9, 10, 1) is None
    for first, last in ((-1, 3), (5, 10), (3, 2)):
        with pytest.raises(ValueError, match="outside the 20 labelled frames"):
            clip_class(truth, first, last, 2)


def test_stream_score_counts_ambiguous_predictions_apart() -> None:
    score = StreamScore()
    verdicts = [score.add("a", "a"), score.add("a", "b"), score.add(None, "a"), score.add("b", "b")]
    assert verdicts == ["right", "WRONG", "ambiguous", "right"]
    assert (score.predictions, score.ambiguous, score.scored, score.correct) == (4, 1, 3, 2)
    assert score.rate == pytest.approx(2 / 3)
    assert "4 predictions: 1 have a source clip that straddles" in score.summary()
    assert "2 of the other 3 (67%)" in score.summary()
    assert StreamScore().rate == 0.0


def test_stream_demo_scores_each_prediction_against_its_clip(tmp_path, capsys) -> None:
    config, model = _recipe_model()
    torch.manual_seed(0)
    classes = ["growing", "moving_right", "rotating_cw", "shrinking"]
    segments = [("growing", 16)] * 6 + [("shrinking", 16)] * 4  # a change of class at frame 96 (step 48)
    score = stream_demo(model, classes, config, tmp_path, segments, seed=3, plot=tmp_path / "p.png")
    out = capsys.readouterr().out
    rate, steps = config.data.sampling_rate, 160 // config.data.sampling_rate
    window = POOL_WINDOW
    emitted = range(model.first_output, steps)  # steps that give a prediction
    straddling = [t for t in emitted if t - model.delay < 48 <= t - model.delay + window - 1]
    assert score.predictions == len(emitted) == out.count("predicted ")
    assert score.ambiguous == len(straddling) == out.count("  ambiguous") > 0
    assert score.correct == out.count("  right") and score.scored - score.correct == out.count("  WRONG")
    assert f"{score.correct} of the other {score.scored} ({score.rate:.0%})" in out
    first_step = model.first_output - model.delay  # the first prediction's source clip starts here
    assert re.search(rf"clip {first_step * rate:3d}-{(first_step + window - 1) * rate:3d}: growing ", out)
    assert (tmp_path / "p.png").stat().st_size > 0


def test_a_shortened_demo_runs_end_to_end(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    segments = [("growing", 16)] * 4 + [("rotating_cw", 16)] * 4
    tiny = ["data.synthetic.videos_per_class=4", "data.synthetic.val_videos_per_class=1", "train.epochs=1"]
    score = main(["--seed", "1"], tiny, segments, plot=tmp_path / "demo.png")
    out = capsys.readouterr().out
    assert "1 epochs in" in out and score.summary() in out
    assert "[3/3]" in out and "x3d_xs       0.912                0.231" in out  # the stored zoo figures
    assert (tmp_path / "demo.png").is_file() and not (tmp_path / "runs").exists()


def test_run_spans_give_each_class_run_its_frames() -> None:
    assert run_spans([("a", 16), ("a", 16), ("b", 8)]) == [(0, 31, "a"), (32, 39, "b")]


def test_plot_shades_the_class_on_screen_in_its_line_colour(tmp_path, monkeypatch) -> None:
    import cozoo.inference.plots as plots

    captured = {}
    original = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: captured.setdefault("fig", fig) and
                        original(fig, path))
    predictions = [FramePrediction(frame_index=f + 10, step=f, logits=torch.tensor([float(f < 20), 0.0, 0.5]),
                                   first_frame=f, clip_first=f, clip_last=f + 4) for f in range(0, 40, 2)]
    spans = [(0, 19, "a"), (20, 39, "b"), (40, 45, "unplotted")]
    plots.plot_probabilities(predictions, ["a", "b", "c"], tmp_path / "p.png", top=2, truth=spans)
    ax = captured["fig"].axes[0]
    colours = {line.get_label(): line.get_color() for line in ax.get_lines()}
    assert set(colours) == {"a", "c"}  # the two highest peaks
    shaded = list(ax.patches)
    assert len(shaded) == 3
    for patch, (first, last, label) in zip(shaded, spans, strict=True):
        x0, x1 = patch.get_x(), patch.get_x() + patch.get_width()
        assert (x0, x1) == (first - 0.5, last + 0.5)
        expected = matplotlib.colors.to_rgb(colours.get(label, "grey"))
        assert matplotlib.colors.to_rgb(patch.get_facecolor()) == pytest.approx(expected)
    assert any("class on screen" in text.get_text() for text in ax.texts)


@pytest.mark.slow
def test_the_full_demo_stream_is_mostly_right(tmp_path, monkeypatch) -> None:
    """``make demo`` as shipped (seed 0, one thread: about 90 s on 2 cores). On the machine it was tuned on,
    seeds 0, 1, 2 scored 99%, 85%, 96%; another CPU may round differently and train to another point, so
    the bar is "mostly right", not the figure measured."""
    monkeypatch.chdir(tmp_path)
    score = main([])
    assert score.scored >= 200 and score.rate >= 0.8, score.summary()
