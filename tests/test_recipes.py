"""Each checkpoint's publisher's evaluation recipe, against independent references: torchvision's transforms
and frame resampling, PyTorchVideo's crop and hub builders (random weights), the C3D port's slicing."""

from __future__ import annotations

import argparse
import math
import sys
import warnings

import pytest
import torch
from helpers import randomise_batchnorm
from torch import nn
from torchvision.datasets.video_utils import VideoClips
from torchvision.models.video import R2Plus1D_18_Weights
from torchvision.transforms import _functional_tensor
from torchvision.transforms import functional as TF

import cozoo
from cozoo.continual import CoGlobalAvgPool3d
from cozoo.data import read_frames, write_video
from cozoo.data.samplers import to_video_frames
from cozoo.data.transforms import center_crop, centre_offset, eval_transform, three_crop
from cozoo.inference.video import frame_transform
from cozoo.layers import pathways
from cozoo.layers.blocks import WindowAvgPool3d
from cozoo.models import resnet3d, slowfast, x3d
from cozoo.registry import get_config
from cozoo.weights.converters import convert_state_dict, load_state_dict_strict

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pytorchvideo.models.resnet import create_resnet
    from pytorchvideo.models.slowfast import create_slowfast
    from pytorchvideo.models.x3d import create_x3d
    # pytorchvideo 0.1.5's transforms import a torchvision module since renamed: alias it
    sys.modules.setdefault("torchvision.transforms.functional_tensor", _functional_tensor)
    from pytorchvideo.transforms.functional import uniform_crop

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def wide_video(tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    """Decoded frames of a 16:9 H.264 video (90x160): smooth gradients plus noise, so resizes differ."""
    g = torch.Generator().manual_seed(0)
    rows = torch.linspace(0, 200, 90).view(1, 90, 1, 1)
    cols = torch.linspace(0, 255, 160).view(1, 1, 160, 1)
    frames = (rows + cols) / 2 + 40 * torch.rand(4, 90, 160, 3, generator=g)
    path = write_video(tmp_path_factory.mktemp("recipes") / "wide.mp4", frames.clamp(0, 255).to(torch.uint8))
    return read_frames(path)


# -- spatial recipes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["r2plus1d_18", "r2plus1d_18_8f"])
def test_r2plus1d_transform_is_torchvisions(wide_video: torch.Tensor, name: str) -> None:
    """Resize to 128x171 (aspect not kept), centre crop 112 (offset 59 / 2 rounded to 30): torchvision's
    recipe; equal up to its uint8 rounding of the resized frames (<= 0.5 / 255 before normalising)."""
    expected = R2Plus1D_18_Weights.KINETICS400_V1.transforms()(wide_video.permute(0, 3, 1, 2))  # (3, T, ..)
    config = get_config(name)
    got = eval_transform(config)(wide_video)
    assert got.shape == expected.shape == (3, 4, 112, 112)
    bound = 0.5 / 255 / min(config.std) + 1e-5
    assert (got - expected).abs().max().item() <= bound
    per_frame = frame_transform(config)  # streaming follows the same rule
    torch.testing.assert_close(per_frame(wide_video[2])[0], got[:, 2], rtol=0, atol=1e-5)
    # the aspect-keeping transform it replaces differs by far more than rounding
    kept = eval_transform(config, short_side=128)(wide_video)
    assert (kept - expected).abs().max().item() > 20 * bound


def test_c3d_transform_is_the_ports(wide_video: torch.Tensor) -> None:
    """The c3d-pytorch port: every frame resized to 112x200, columns 44:156, raw 0-255 RGB."""
    frames = wide_video.permute(0, 3, 1, 2).float()
    resized = TF.resize(frames, [112, 200], antialias=False)  # bilinear; the port's skimage also smooths
    expected = resized[..., 44:156].permute(1, 0, 2, 3)
    got = eval_transform(get_config("c3d"))(wide_video)
    assert got.shape == (3, 4, 112, 112)
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-3)


@pytest.mark.parametrize(("length", "crop"), [(171, 112), (185, 160), (57, 40), (64, 40)])
def test_centre_offsets_round_as_each_publisher(length: int, crop: int) -> None:
    """Odd margins: PyTorchVideo/PySlowFast round up, torchvision half to even, plain floor down."""
    clip = torch.arange(length, dtype=torch.float32).expand(3, 2, length + 2, length)  # columns readable
    tall = clip[..., : length + 2, :]
    assert centre_offset(length, crop, "ceil") == uniform_crop(tall, crop, 1)[0, 0, 0, 0].item()
    torchvision_left = TF.center_crop(clip[0], [crop, crop])[0, 0, 0].item()
    assert centre_offset(length, crop, "round") == torchvision_left
    assert center_crop(clip, crop, "round")[0, 0, 0, 0].item() == torchvision_left
    assert centre_offset(length, crop, "floor") == (length - crop) // 2
    wide = clip.transpose(-1, -2)[..., :length, :]  # (length + 2) wide, length tall: crops move along columns
    for index in range(3):
        torch.testing.assert_close(three_crop(wide, crop, index, "ceil"), uniform_crop(wide, crop, index))


def test_crop_rounding_per_config() -> None:
    assert get_config("r2plus1d_18").crop_rounding == "round"
    assert all(get_config(n).crop_rounding == "ceil" for n in ("x3d_s", "slow_r50", "slowfast_r50"))
    assert eval_transform(get_config("x3d_s")).crop_rounding == "ceil"
    with pytest.raises(ValueError, match="crop rounding"):
        centre_offset(10, 4, "nearest")  # type: ignore[arg-type]


def test_recipe_yields_to_explicit_geometry() -> None:
    config = get_config("r2plus1d_18")
    assert eval_transform(config).resize == (128, 171)
    assert eval_transform(config, crop=64).resize is None
    assert eval_transform(config, short_side=150).resize is None
    with pytest.raises(ValueError, match="resize"):
        eval_transform(config, resize=(100, 171))  # smaller than the crop


# -- temporal recipes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("fps", "frames"), [(30.0, 90), (25.0, 75), (29.97, 100), (60.0, 64)])
def test_r2plus1d_frames_follow_torchvisions_15_fps_resampling(fps: float, frames: int) -> None:
    """torchvision's VideoClips keeps the frame on screen at each 1/15 s instant: so does the config."""
    config = get_config("r2plus1d_18")
    assert (config.target_fps, config.sampling_rate) == (15.0, 1)
    length = int(math.floor(frames * 15.0 / fps))  # torchvision's resampled length
    expected = VideoClips._resample_video_idx(length, fps, 15.0)
    expected = list(range(frames))[expected] if isinstance(expected, slice) else expected.tolist()
    assert to_video_frames(list(range(length)), fps, config.target_fps, frames) == expected[:length]


def test_pytorchvideo_configs_sample_on_a_30_fps_timeline() -> None:
    for name in ("x3d_xs", "x3d_s", "x3d_m", "x3d_l", "slow_r50", "i3d_r50", "r2plus1d_r50", "slowfast_r50",
                 "slowfast_r50_4x16", "cox3d_s", "coslowfast_r50"):
        assert get_config(name).target_fps == 30.0, name
    assert get_config("c3d").target_fps is None  # the port takes consecutive frames


def _pack_pathway(frames: torch.Tensor, alpha: int) -> list[torch.Tensor]:
    """PyTorchVideo's PackPathway transform (its SlowFast tutorial; PySlowFast's pack_pathway_output)."""
    length = frames.shape[2]
    return [torch.index_select(frames, 2, torch.linspace(0, length - 1, length // alpha).long()), frames]


def test_slow_frames_are_picked_by_linspace() -> None:
    x = torch.arange(32.0).view(1, 1, 32, 1, 1)
    slow, fast = pathways.SplitPathways(4, "linspace")(x)
    assert slow.flatten().tolist() == [0, 4, 8, 13, 17, 22, 26, 31] and fast is x
    assert torch.equal(slow, _pack_pathway(x, 4)[0])
    assert pathways.SplitPathways(8, "linspace")(x)[0].flatten().tolist() == [0, 10, 20, 31]
    assert pathways.SplitPathways(4)(x)[0].flatten().tolist() == list(range(0, 32, 4))  # the stream's
    with pytest.raises(ValueError, match="at least 4 frames"):
        pathways.SplitPathways(4, "linspace")(x[:, :, :3])
    with pytest.raises(ValueError, match="slow_frames"):
        pathways.SplitPathways(4, "every")  # type: ignore[arg-type]
    assert cozoo.create_model("slowfast_r50").pathways.slow_frames == "linspace"
    assert cozoo.create_model("coslowfast_r50").pathways.alpha == 4  # strided: see CoSplitPathways


# -- the published head at the test crop ----------------------------------------------------------------


def _converted(family: str, reference: nn.Module, model: nn.Module) -> nn.Module:
    """``model`` holding the reference's random weights and statistics; both in float64 (logits of ~50
    leave float32 a few 1e-5 apart from summation order alone)."""
    randomise_batchnorm(reference)
    reference.eval().double()
    load_state_dict_strict(model, convert_state_dict("pytorchvideo", family, reference.state_dict()))
    return model.eval().double()


def test_x3d_head_windows_equal_pytorchvideo_at_a_larger_crop() -> None:
    """A scaled X3D-XS: trained at 64 px (head window 2x2), tested at 96 px (a 3x3 map: 4 windows). The
    registered form pools the whole clip in time (T=None): PyTorchVideo's window at its clip length; an
    explicit T slides like PyTorchVideo's on a longer clip."""
    torch.manual_seed(0)
    reference = create_x3d(input_clip_length=4, input_crop_size=64, depth_factor=2.2, head_activation=None)
    model = _converted("x3d", reference, x3d.x3d(head_window=(None, 2, 2)))
    clip = torch.randn(2, 3, 4, 96, 96, dtype=torch.float64)
    with torch.no_grad():
        expected, got, global_pool = reference(clip), model(clip), _global(model)(clip)
    assert expected.std() > 0.05
    assert (got - expected).abs().max().item() <= 1e-5
    assert (global_pool - expected).abs().max().item() > 100 * 1e-5  # the global pool is not the recipe
    sliding = x3d.x3d(head_window=(4, 2, 2)).double().eval()
    sliding.load_state_dict(model.state_dict())
    longer = torch.randn(1, 3, 6, 96, 96, dtype=torch.float64)
    with torch.no_grad():
        assert (sliding(longer) - reference(longer)).abs().max().item() <= 1e-5


def _global(model: nn.Module) -> nn.Module:
    """The same weights with a global head pool."""
    out = x3d.x3d(head_window=None)
    out.load_state_dict(model.state_dict())
    return out.eval().double()


def test_x3d_registered_windows_are_pytorchvideos() -> None:
    for name, window in (("x3d_xs", (None, 5, 5)), ("x3d_s", (None, 5, 5)), ("x3d_m", (None, 7, 7)),
                         ("x3d_l", (None, 10, 10))):
        assert cozoo.create_model(name).head.pool.window == window
        assert get_config(name).builder_kwargs["head_window"] == window


def test_resnet_head_windows_equal_pytorchvideo_at_a_larger_crop() -> None:
    """Slow-R50 with its head window scaled to a 64 px training crop (2x2), tested at 96 px."""
    torch.manual_seed(0)
    reference = create_resnet(stem_conv_kernel_size=(1, 7, 7), head_pool_kernel_size=(8, 2, 2),
                              stage_conv_a_kernel_size=((1, 1, 1), (1, 1, 1), (3, 1, 1), (3, 1, 1)))
    model = _converted("resnet3d", reference, resnet3d.slow_r50(head_window=(None, 2, 2)))
    clip = torch.randn(1, 3, 8, 96, 96, dtype=torch.float64)
    with torch.no_grad():
        expected, got = reference(clip), model(clip)
    assert expected.std() > 0.05
    assert (got - expected).abs().max().item() <= 1e-5


def test_slowfast_recipe_equals_pytorchvideo() -> None:
    """SlowFast 8x8 with head windows scaled to 64 px, at 96 px, fed a clip: linspace slow frames."""
    torch.manual_seed(0)
    reference = create_slowfast(head_pool_kernel_sizes=((4, 2, 2), (16, 2, 2)))
    model = _converted("slowfast", reference,
                       slowfast.create_slowfast(head_windows=((None, 2, 2), (None, 2, 2)), dropout=0.5))
    clip = torch.randn(1, 3, 16, 96, 96, dtype=torch.float64)
    with torch.no_grad():
        expected, got = reference(_pack_pathway(clip, 4)), model(clip)
    assert expected.std() > 0.05
    assert (got - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize(("name", "kwargs"), [
    ("cox3d_xs", {"head_window": (4, 2, 2)}),
    ("coslow_r50", {"head_window": (8, 2, 2)}),
    ("coslowfast_r50", {"head_windows": ((8, 2, 2), (32, 2, 2))}),
])
def test_continual_head_windows_are_spatial(name: str, kwargs: dict) -> None:
    """At 96 px (3x3 maps, 2x2 windows): steps equal clip mode, and with source padding clip mode equals
    the regular model holding the same windows (whose equality with PyTorchVideo is tested above)."""
    torch.manual_seed(0)
    config = get_config(name)
    window = {"pool_window": 8} if "slowfast" in name else {}  # a shorter warm-up
    model = cozoo.create_model(name, num_classes=5, **kwargs, **window)
    randomise_batchnorm(model)
    model.eval()
    pool = next(m for m in model.modules() if isinstance(m, CoGlobalAvgPool3d))
    assert pool.spatial_window == (2, 2)
    x = torch.randn(1, 3, model.first_output + model.stride + 1, 96, 96)
    with torch.no_grad():
        clip = model(x)
        steps = model.forward_steps(x)
        torch.testing.assert_close(steps, clip, rtol=1e-4, atol=1e-4 * clip.abs().max().item())
        regular = cozoo.create_model(config.source, num_classes=5, **kwargs,
                                     **({"slow_frames": "stride"} if "slowfast" in name else {}))
        regular.load_state_dict(model.state_dict())
        regular.eval()
        model.set_source_padding(True)
        y = x[:, :, : config.frames]
        torch.testing.assert_close(model(y).reshape(1, 5), regular(y), rtol=1e-4, atol=1e-5)


def test_window_pool_rejects_bad_windows() -> None:
    for bad in ((4, 0, 2), (4, None, 2), (2, 2)):
        with pytest.raises(ValueError, match="positive ints"):
            WindowAvgPool3d(bad)  # type: ignore[arg-type]


def test_stream_follows_the_clip_rounding_on_odd_margins() -> None:
    """The per-frame transform of every published config gives its clip transform's frame on a frame
    whose margins are odd (the rounding must agree between the two)."""
    frames = (torch.rand(2, 67, 121, 3) * 255).to(torch.uint8)
    for name in ("x3d_xs", "r2plus1d_18", "c3d"):
        config = get_config(name)
        crop = 59 if name == "x3d_xs" else None  # 67x121 -> 59x106: a margin of 47
        clip = eval_transform(config, crop=crop)(frames)
        torch.testing.assert_close(frame_transform(config, crop)(frames[1])[0], clip[:, 1], rtol=0, atol=1e-5)


def test_cli_samples_by_index_on_request() -> None:
    from cozoo.commands.evaluate import load_from_args
    from cozoo.commands.parsers import add_model_arguments

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    def target(*extra: str) -> float | None:
        return load_from_args(parser.parse_args(["--model", "x3d_xs", *extra])).config.target_fps

    assert (target(), target("--by-index"), target("--target-fps", "25")) == (30.0, None, 25.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "x3d_xs", "--by-index", "--target-fps", "25"])


def test_fine_tuning_follows_the_recipe_unless_told() -> None:
    from cozoo.training.config import DataSection, SyntheticSection
    from cozoo.training.data import clip_settings

    model = get_config("r2plus1d_18")
    real = clip_settings(DataSection(), model)
    assert (real.target_fps, real.test_resize, real.crop_rounding) == (15.0, (128, 171), "round")
    assert clip_settings(DataSection(sample_by_index=True), model).target_fps is None
    assert clip_settings(DataSection(test_short_side=140), model).test_resize is None
    generated = DataSection(synthetic=SyntheticSection())  # videos made at one rate: by index
    assert clip_settings(generated, model).target_fps is None
    generated.target_fps = 10.0
    assert clip_settings(generated, model).target_fps == 10.0
