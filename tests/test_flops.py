"""MAC counting: continual step cost vs clip cost, agreement with fvcore, memory, published figures, CLI."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from cozoo import count_flops, create_model
from cozoo.cli import main
from cozoo.commands import flops as flops_command
from cozoo.continual import to_continual
from cozoo.layers.blocks import Flatten, GlobalAvgPool3d, PerFrame


@pytest.mark.parametrize(
    ("cache", "stride_t", "dilation_t", "groups"),
    [("pre", 1, 1, 1), ("post", 1, 1, 1), ("pre", 2, 1, 1), ("post", 1, 2, 2), ("pre", 1, 2, 2)],
)
def test_continual_conv_step_costs_clip_over_frames(cache: str, stride_t: int, dilation_t: int,
                                                    groups: int) -> None:
    frames = 8
    conv = nn.Conv3d(4, 6, (3, 3, 3), stride=(stride_t, 1, 1), padding=(dilation_t, 1, 1),
                     dilation=(dilation_t, 1, 1), groups=groups)
    clip = count_flops(conv, (1, 4, frames, 10, 12))
    step = count_flops(to_continual(conv, cache=cache), (1, 4, 10, 12))
    assert clip.macs == 6 * (4 // groups) * 27 * (frames // stride_t) * 10 * 12
    assert step.macs * frames == clip.macs
    assert step.period == stride_t and step.mode == "step"


def test_post_form_with_stride_is_not_amortised() -> None:
    # The transposed form computes partial sums at every step, so a strided conv costs a full frame each
    # step; the counter shows it (and "auto" picks "pre" for strided convs for that reason).
    conv = nn.Conv3d(4, 6, 3, stride=(2, 1, 1), padding=1)
    clip = count_flops(conv, (1, 4, 8, 10, 10))
    step = count_flops(to_continual(conv, cache="post"), (1, 4, 10, 10))
    assert step.macs * 8 == 2 * clip.macs


def _tiny_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(3, 8, 3, padding=1, bias=False), nn.BatchNorm3d(8), nn.ReLU(),
        nn.Conv3d(8, 8, (3, 3, 3), padding=1, groups=4), nn.BatchNorm3d(8, affine=False), nn.ReLU(),
        PerFrame(nn.Sequential(nn.Conv2d(8, 4, 1), nn.AdaptiveAvgPool2d(2))),
        GlobalAvgPool3d(), Flatten(), nn.Linear(4, 5),
    )


@pytest.mark.parametrize("batchnorm", ["eval", "train"])
def test_clip_count_equals_fvcore(batchnorm: str) -> None:
    from fvcore.nn import FlopCountAnalysis

    torch.manual_seed(0)
    model = _tiny_net().train(batchnorm == "train")
    x = torch.randn(2, 3, 5, 12, 12)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with torch.no_grad():
        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False)
        expected = analysis.total()
        expected_by_op = analysis.by_operator()
    count = count_flops(model, x, batchnorm=batchnorm)  # type: ignore[arg-type]
    assert count.macs == expected
    assert count.by_op == {op: float(v) for op, v in expected_by_op.items() if v}
    assert count.params == sum(p.numel() for p in model.parameters())
    assert count.param_bytes == 4 * count.params


def test_registered_model_matches_fvcore_and_meta_matches_real_run() -> None:
    from fvcore.nn import FlopCountAnalysis

    import cozoo

    model = cozoo.create_model("x3d_xs").eval()
    x = torch.zeros(1, 3, 4, 32, 32)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with torch.no_grad():
        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        expected = analysis.total()
    meta = count_flops(model, x)
    real = count_flops(model, x, device=None)
    assert meta.macs == real.macs == expected
    assert meta.activation_peak_bytes == real.activation_peak_bytes > 0


def test_recurrent_layers_count_their_matrix_products() -> None:
    lstm = nn.LSTM(5, 7, num_layers=2, batch_first=True)
    count = count_flops(lstm, (2, 3, 5))
    # 6 tokens; every weight matrix (4H x in) is applied once per token.
    assert count.macs == 6 * 28 * (5 + 7 + 7 + 7)


def test_strided_continual_model_amortises_and_reports_state() -> None:
    torch.manual_seed(0)
    frames, size = 8, 8
    net = nn.Sequential(
        nn.Conv3d(3, 3, 3, padding=1), nn.ReLU(), nn.MaxPool3d((2, 1, 1)),
        nn.Conv3d(3, 4, (3, 1, 1), padding=(1, 0, 0)), GlobalAvgPool3d(), Flatten(), nn.Linear(4, 5),
    )
    clip = count_flops(net, (1, 3, frames, size, size))
    continual = to_continual(net, pool_window=frames, cache="pre")
    step = count_flops(continual, (1, 3, size, size))
    assert step.period == 2 and step.warmup_steps == continual.first_output
    assert step.by_op["conv"] * frames == clip.by_op["conv"]
    assert step.by_op["linear"] * 2 == clip.by_op["linear"]  # one prediction every 2 frames
    assert step.peak_step_macs > step.macs  # the step through the strided half costs more
    # pre-form caches (receptive field x C_in frames), the pool's 2 frames, the global pool's window.
    frame = size * size * 4
    assert step.state_bytes == (3 * 3 + 2 * 3 + 3 * 3) * frame + 4 * (frames // 2) * 4


def test_state_counts_stream_state_not_buffers_or_weight_caches() -> None:
    net = to_continual(nn.Sequential(nn.Conv3d(4, 2, 3, padding=1), nn.BatchNorm3d(2)), cache="post")
    step = count_flops(net, (1, 4, 6, 6))
    assert step.state_bytes == (3 - 1) * 2 * 6 * 6 * 4  # post-form partial sums only
    assert step.by_op["batch_norm"] == 2 * 2 * 6 * 6


def test_count_leaves_the_model_untouched() -> None:
    continual = to_continual(nn.Conv3d(3, 4, 3, padding=1))
    continual.train()
    continual.forward_step(torch.zeros(1, 3, 6, 6))
    state = continual._state.clone()
    count_flops(continual, torch.zeros(1, 3, 6, 6))
    assert continual.training and continual.weight.device.type == "cpu"
    assert torch.equal(continual._state, state) and continual._steps == 1


def test_bad_arguments_raise_clear_errors() -> None:
    conv = nn.Conv3d(3, 4, 3)
    with pytest.raises(ValueError, match="step mode needs a continual model"):
        count_flops(conv, (1, 3, 8, 8), mode="step")
    with pytest.raises(ValueError, match="non-positive"):
        count_flops(conv, (1, 3, 0, 8, 8))
    with pytest.raises(ValueError, match="batchnorm"):
        count_flops(conv, (1, 3, 4, 8, 8), batchnorm="inference")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="floating point"):
        count_flops(conv, torch.zeros(1, 3, 4, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="frame"):
        count_flops(to_continual(conv), (1, 3, 8))
    with pytest.raises(TypeError, match="nn.Module"):
        count_flops(lambda x: x, (1, 3, 4, 8, 8))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["x3d_xs", "x3d_s", "x3d_m", "x3d_l", "i3d_r50", "slow_r50"])
def test_clip_figures_match_published_pytorchvideo_gflops(name: str) -> None:
    report = flops_command.model_report(name, "pytorchvideo", per_frame=False)
    assert report.published_clip is not None
    assert report.clip.gmacs == pytest.approx(report.published_clip, rel=0.02)


def test_coi3d_published_per_frame_figure_is_compared_with_its_costliest_step() -> None:
    report = flops_command.model_report("i3d_r50", "co3d")
    assert report.published_frame_basis == "costliest step" and report.step is not None
    assert report.step.gmacs < 0.7 * report.published_frame  # amortised over the temporal stride 2
    assert report.compared_frame_gmacs == pytest.approx(report.published_frame, rel=0.02)


def test_override_disables_comparison() -> None:
    report = flops_command.model_report("x3d_xs", crop=64, per_frame=False)
    assert report.published_clip is None and report.crop == 64


def test_a_pool_window_of_its_own_is_named_beside_the_variant() -> None:
    assert flops_command.model_report("cox3d_xs", crop=32).continual_name == "cox3d_xs"
    report = flops_command.model_report("cox3d_xs", crop=32, frames=16)
    assert report.continual_name == "cox3d_xs(pool_window=16)"


def test_cli_single_model_and_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["flops", "late_fusion", "--per-frame", "--crop", "32"]) == 0
    out = capsys.readouterr().out
    assert "per frame" in out and "fvcore convention" in out and "[colate_fusion]" in out

    # Only x3d_xs registered: the table skips nothing, converts it on the fly and compares with Co3D.
    monkeypatch.setattr(flops_command, "list_models", lambda: ["x3d_xs"])
    assert main(["flops", "--all", "--protocol", "co3d"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[2].startswith("x3d_xs") and " 0.64 " in lines[2]
    assert "ptflops" in lines[3]  # the table's counting convention is named under it

    assert main(["flops"]) == 2
    assert "NAME or --all" in capsys.readouterr().err


def test_summary_reads_the_counts() -> None:
    model = create_model("cox3d_xs")
    step = count_flops(model, (1, 3, 32, 32))
    text = step.summary()
    assert text.startswith(f"input (1, 3, 32, 32): {step.gmacs:.3f} GFLOPs (GMACs) per frame step")
    assert f"warm-up {step.warmup_steps} steps" in text and "by op (GMACs): " in text and "fvcore" in text
    clip = count_flops(create_model("x3d_xs"), (1, 3, 4, 32, 32)).summary()
    assert "per clip" in clip and "warm-up" not in clip


def test_a_frame_shape_for_a_video_model_is_named() -> None:
    with pytest.raises(ValueError, match=r"failed on a \(1, 3, 32, 32\) input in clip mode .*take a clip"):
        count_flops(create_model("x3d_xs"), (1, 3, 32, 32))
