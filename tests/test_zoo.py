"""The stored zoo figures (cozoo/zoo_figures.json) cover the registry and match a live count; ``cozoo models
[--table]``, ``--help`` and ``--version`` print without torch (so without building a model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import torch_blocked_env

from cozoo.cli import main
from cozoo.factory import get_config, list_models
from cozoo.zoo import count_zoo_figures, load_zoo_figures, zoo_names, zoo_rows

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_stored_figures_cover_every_registered_model() -> None:
    figures = load_zoo_figures()
    assert set(figures) == set(list_models())
    for name, f in figures.items():
        assert f["gflops_clip"] > 0 and f["params"] > 0, name
        if name.startswith("co"):
            assert {"gflops_frame", "receptive_field", "delay", "first_output", "stride"} <= set(f), name


def test_stored_listing_fields_and_names_match_the_registry() -> None:
    figures = load_zoo_figures()
    for name in list_models():
        config = get_config(name)
        stored = figures[name]
        assert (stored["source"], stored["frames"], stored["test_crop"]) == (
            config.source, config.frames, config.test_crop), name
    for pattern in ("*", "*x3d*", "COX3D_S*", "slow?r50"):
        for pretrained in (None, True, False):
            assert zoo_names(pattern, pretrained) == list_models(pattern, pretrained=pretrained)


@pytest.mark.parametrize("name", ["late_fusion", "colate_fusion", "cocnn_lstm", "x3d_xs", "cox3d_xs"])
def test_stored_figures_match_a_live_count(name: str) -> None:
    assert count_zoo_figures(name) == load_zoo_figures()[name]


def test_known_schedule_and_published_figures_reach_the_rows() -> None:
    row = next(r for r in zoo_rows("cox3d_s_64"))
    assert (row["receptive_field"], row["delay"]) == (120, 91)  # the README's schedule table
    assert row["top1_continual"].startswith("67.33") and row["top1_clip"].startswith("73.33")
    assert row["first_output_s"] == pytest.approx(120 * 6 / 30)  # 120 steps of 6 frames at 30 fps


def _without_torch(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    """``python -m cozoo ARGV`` in a subprocess where ``import torch`` fails (as tests/test_runtime.py)."""
    env = torch_blocked_env(tmp_path / "blocker", ROOT)
    return subprocess.run([sys.executable, "-m", "cozoo", *argv], capture_output=True, text=True, env=env,
                          timeout=120)


def test_models_table_listing_help_and_version_run_without_torch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "torch is blocked" in _without_torch(tmp_path, "info", "x3d_xs").stderr  # the blocker works
    for argv in (["models", "--table"], ["models"], ["models", "x3d", "--pretrained", "yes"], ["--version"],
                 ["--help"], ["flops", "--help"]):
        result = _without_torch(tmp_path, *argv)
        assert result.returncode == 0, (argv, result.stderr)
        if argv[0] == "models":  # the same output as in-process, with torch and the registry
            assert main(argv) == 0 and result.stdout == capsys.readouterr().out, argv


def test_models_table_prints_the_whole_zoo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "GFLOPs/frame" in lines[0] and "1st out" in lines[0]
    assert [line.split()[0] for line in lines[1:-1]] == list_models()
    cox3d_s = next(line for line in lines if line.startswith("cox3d_s "))
    assert "60.18" in cox3d_s and " 69 " in cox3d_s and " 40 " in cox3d_s
