"""The stored zoo figures (cozoo/zoo_figures.json) cover the registry and match a live count; ``cozoo models
--table`` prints them without building a model."""

from __future__ import annotations

import pytest

import cozoo.zoo
from cozoo.cli import main
from cozoo.factory import list_models
from cozoo.zoo import count_zoo_figures, load_zoo_figures, zoo_rows

pytestmark = pytest.mark.usefixtures("one_thread")


def test_stored_figures_cover_every_registered_model() -> None:
    figures = load_zoo_figures()
    assert set(figures) == set(list_models())
    for name, f in figures.items():
        assert f["gflops_clip"] > 0 and f["params"] > 0, name
        if name.startswith("co"):
            assert {"gflops_frame", "receptive_field", "delay", "first_output", "stride"} <= set(f), name


@pytest.mark.parametrize("name", ["late_fusion", "colate_fusion", "cocnn_lstm", "x3d_xs", "cox3d_xs"])
def test_stored_figures_match_a_live_count(name: str) -> None:
    assert count_zoo_figures(name) == load_zoo_figures()[name]


def test_known_schedule_and_published_figures_reach_the_rows() -> None:
    row = next(r for r in zoo_rows("cox3d_s_64"))
    assert (row["receptive_field"], row["delay"]) == (120, 91)  # the README's schedule table
    assert row["top1_continual"].startswith("67.33") and row["top1_clip"].startswith("73.33")
    assert row["first_output_s"] == pytest.approx(120 * 6 / 30)  # 120 steps of 6 frames at 30 fps


def test_models_table_prints_the_whole_zoo_without_building_a_model(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(*args, **kwargs):  # noqa: ANN202
        raise AssertionError("the table must come from the stored figures")

    monkeypatch.setattr(cozoo.zoo, "create_model", refuse)
    assert main(["models", "--table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "GFLOPs/frame" in lines[0] and "1st out" in lines[0]
    assert [line.split()[0] for line in lines[1:-1]] == list_models()
    cox3d_s = next(line for line in lines if line.startswith("cox3d_s "))
    assert "60.18" in cox3d_s and " 69 " in cox3d_s and " 40 " in cox3d_s
