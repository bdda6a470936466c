"""The ``cozoo`` entry point: every sub-command is registered; errors exit 2 with a message."""

import pytest

from cozoo.cli import build_parser, main


def test_all_commands_registered():
    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"models", "info", "weights", "flops", "eval", "stream", "finetune"} <= set(choices)


def test_models_lists_continual_variants(capsys):
    assert main(["models", "cox3d_s*"]) == 0
    out = capsys.readouterr().out
    assert "cox3d_s " in out and "cox3d_s_64" in out and "continual from x3d_s" in out


def test_info_of_unknown_model_names_close_matches(capsys):
    assert main(["info", "cox3d_ss"]) == 2
    assert "cox3d_s" in capsys.readouterr().err


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
