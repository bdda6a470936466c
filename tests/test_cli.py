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


def test_models_plain_word_matches_names_containing_it(capsys):
    assert main(["models", "slowfast"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["coslowfast_r50", "coslowfast_r50_4x16", "slowfast_r50", "slowfast_r50_4x16"]


def test_models_without_a_match_says_so(capsys):
    assert main(["models", "nope*"]) == 1
    assert "no model matches 'nope*'" in capsys.readouterr().err


def test_info_of_unknown_model_names_close_matches(capsys):
    assert main(["info", "cox3d_ss"]) == 2
    assert "cox3d_s" in capsys.readouterr().err


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["stream", "v.mp4", "--model", "cox3d_xs", "--sampling-rate", "0"],
        ["stream", "v.mp4", "--model", "cox3d_xs", "--pool-window", "0"],
        ["stream", "v.mp4", "--model", "cox3d_xs", "--top-k", "-1"],
        ["eval", "--model", "x3d_xs", "--annotations", "a.csv", "--videos", "d", "--crop", "0"],
        ["flops", "x3d_xs", "--frames", "zero"],
    ],
)
def test_sizes_must_be_positive_integers(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err


def test_help_describes_the_tool(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "continual (frame-by-frame)" in out and "add_commands" not in out


def test_os_errors_are_reported_without_a_traceback(tmp_path, monkeypatch, capsys):
    import cozoo.commands.models as models_command

    def refuse(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out.png"))

    monkeypatch.setattr(models_command, "_list", refuse)
    assert main(["models"]) == 2
    assert "cozoo models: error: [Errno 13] Permission denied" in capsys.readouterr().err


def test_output_cut_short_by_a_closed_pipe_is_not_an_error():
    import os
    import subprocess
    import sys

    # The reading end is closed before the command writes: buffered (the usual case) or not, it fails.
    for unbuffered in ("", "1"):
        env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
        listing = subprocess.Popen([sys.executable, "-m", "cozoo.cli", "models"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env)
        assert listing.stdout is not None
        listing.stdout.close()
        _, err = listing.communicate(timeout=120)
        assert listing.returncode == 0 and err == b"", err


def test_parser_offers_the_choices_the_commands_implement() -> None:
    """The torch-free parser takes its choice lists from the torch-free modules the commands use: what it
    offers the commands accept, and what it refuses the evaluator refuses too."""
    from cozoo.cli import build_parser
    from cozoo.commands import flops
    from cozoo.evaluation.evaluate import evaluate

    parser = build_parser()
    for protocol in flops.PROTOCOLS:
        assert parser.parse_args(["flops", "x3d_s", "--protocol", protocol]).protocol == protocol
    eval_args = ["eval", "--model", "x3d_s", "--annotations", "a.csv", "--videos", "v", "--modes"]
    assert parser.parse_args([*eval_args, "clip", "co3d"]).modes == ["clip", "co3d"]
    with pytest.raises(SystemExit):
        parser.parse_args([*eval_args, "bogus"])
    with pytest.raises(ValueError, match="unknown evaluation mode"):
        evaluate(None, "a.csv", "v", modes=("bogus",))  # type: ignore[arg-type]
