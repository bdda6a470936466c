import pytest
import torch

from cozoo.data.transforms import (
    VideoTransform,
    center_crop,
    eval_transform,
    normalize,
    short_side_resize,
    three_crop,
    to_float_clip,
    train_transform,
)
from cozoo.registry import ModelConfig, get_config


def _config() -> ModelConfig:
    return ModelConfig(name="t", family="t", builder=torch.nn.Identity, frames=4, sampling_rate=2,
                       train_crop=16, test_crop=20, mean=(0.5, 0.4, 0.3), std=(0.1, 0.2, 0.25))


def _columns_video(t: int = 4, h: int = 24, w: int = 40) -> torch.Tensor:
    """uint8 (T, H, W, 3) whose red channel is the column index: crops and flips are readable."""
    video = torch.zeros(t, h, w, 3, dtype=torch.uint8)
    video[..., 0] = torch.arange(w, dtype=torch.uint8)
    video[..., 1] = 255
    return video


def test_to_float_clip_layout_and_scale():
    clip = to_float_clip(_columns_video())
    assert clip.shape == (3, 4, 24, 40) and clip.dtype == torch.float32
    assert torch.allclose(clip[1], torch.ones(4, 24, 40))
    assert clip[0, 0, 0, 7] == pytest.approx(7 / 255)
    assert to_float_clip(clip) is clip
    with pytest.raises(ValueError, match="expected"):
        to_float_clip(torch.zeros(4, 24, 40, 3))


def test_short_side_resize_keeps_aspect():
    clip = torch.rand(3, 2, 24, 40)
    assert short_side_resize(clip, 12).shape == (3, 2, 12, 20)
    assert short_side_resize(torch.rand(3, 2, 40, 24), 12).shape == (3, 2, 20, 12)
    assert short_side_resize(clip, 24) is clip


def test_crops_take_the_expected_columns():
    clip = to_float_clip(_columns_video())
    assert center_crop(clip, 24)[0, 0, 0, 0] * 255 == pytest.approx(8)
    lefts = [round(float(three_crop(clip, 24, i)[0, 0, 0, 0]) * 255) for i in range(3)]
    assert lefts == [0, 8, 16]
    tall = clip.transpose(-1, -2)  # 40 rows, 24 columns: the crops move down the rows
    assert [round(float(three_crop(tall, 24, i)[0, 0, 0, 0]) * 255) for i in range(3)] == [0, 8, 16]
    with pytest.raises(ValueError, match="larger"):
        center_crop(clip, 30)


def test_normalize_values():
    clip = torch.full((3, 1, 2, 2), 0.5)
    out = normalize(clip, (0.5, 0.25, 0.0), (1.0, 0.5, 2.0))
    assert torch.allclose(out[:, 0, 0, 0], torch.tensor([0.0, 0.5, 0.25]))


def test_eval_transform_from_config_shapes_and_normalisation():
    transform = eval_transform(_config())
    out = transform(_columns_video())
    assert out.shape == (3, 4, 20, 20)
    # green channel is 1.0 everywhere: (1 - 0.4) / 0.2 = 3
    assert torch.allclose(out[1], torch.full_like(out[1], 3.0), atol=1e-5)
    three = eval_transform(_config(), num_crops=3)
    assert [three(_columns_video(), i).shape for i in range(3)] == [(3, 4, 20, 20)] * 3
    assert not torch.equal(three(_columns_video(), 0), three(_columns_video(), 2))


def test_eval_short_side_follows_the_config_unless_the_crop_is_overridden():
    torchvision_recipe = get_config("r2plus1d_18")  # resize 128x171, centre crop 112
    assert eval_transform(torchvision_recipe).short_side == (128, 128)
    assert eval_transform(torchvision_recipe).resize == (128, 171)  # which takes precedence
    assert eval_transform(torchvision_recipe, crop=64).short_side == (64, 64)
    assert eval_transform(torchvision_recipe, short_side=150).short_side == (150, 150)
    assert eval_transform(get_config("x3d_m")).short_side == (256, 256)  # PyTorchVideo: short side = crop


def test_train_transform_random_and_flip_option():
    transform = train_transform(_config())
    assert transform.crop == 16 and transform.short_side == (18, 23)
    torch.manual_seed(0)
    outs = [transform(_columns_video()) for _ in range(8)]
    assert all(o.shape == (3, 4, 16, 16) for o in outs)
    assert len({round(float(o[0].mean()), 4) for o in outs}) > 1  # different crops / flips
    no_flip = train_transform(_config(), flip=False, short_side=(24, 24))
    for _ in range(10):
        red = no_flip(_columns_video())[0, 0, 0]
        assert bool((red[1:] > red[:-1]).all())  # columns always increase left to right


def test_plain_arguments_and_errors():
    transform = train_transform(crop=8, mean=(0.0,) * 3, std=(1.0,) * 3)
    assert transform(_columns_video()).shape == (3, 4, 8, 8)
    with pytest.raises(ValueError, match="crop"):
        train_transform(mean=(0.0,) * 3, std=(1.0,) * 3)
    with pytest.raises(ValueError, match="smaller than the crop"):
        VideoTransform(crop=20, mean=(0,) * 3, std=(1,) * 3, short_side=(10, 10), training=False)
    with pytest.raises(ValueError, match="num_crops"):
        eval_transform(_config(), num_crops=2)
