import pytest
import torch

from cozoo.data.samplers import (
    RandomClipSampler,
    UniformClipSampler,
    clip_indices,
    clip_span,
    max_start,
    resampled_length,
    to_video_frames,
)


def test_span_and_indices():
    assert clip_span(8, 4) == 29
    assert clip_indices(3, 4, 2, 100) == [3, 5, 7, 9]
    assert max_start(100, 8, 4) == 71
    assert max_start(10, 8, 4) == 0


def test_short_video_repeats_last_frame():
    # 5-frame video, clip of 4 frames every 2: 0, 2, 4, then 6 -> last frame 4.
    assert clip_indices(0, 4, 2, 5) == [0, 2, 4, 4]
    assert RandomClipSampler(4, 2)(5) == [0, 2, 4, 4]
    assert UniformClipSampler(4, 2, 3)(5, 2) == [0, 2, 4, 4]
    assert RandomClipSampler(3, 1)(1) == [0, 0, 0]


def test_exact_fit_has_single_start():
    sampler = RandomClipSampler(4, 3)
    assert all(sampler(10) == [0, 3, 6, 9] for _ in range(20))


def test_random_start_covers_all_fitting_starts():
    sampler = RandomClipSampler(4, 2)  # span 7, video 10 -> starts 0..3
    generator = torch.Generator().manual_seed(0)
    starts = {sampler(10, generator=generator)[0] for _ in range(200)}
    assert starts == {0, 1, 2, 3}
    assert RandomClipSampler(4, 2)(10, generator=torch.Generator().manual_seed(3)) == RandomClipSampler(4, 2)(
        10, generator=torch.Generator().manual_seed(3)
    )


def test_uniform_clips_spread_from_first_to_last_start():
    sampler = UniformClipSampler(4, 2, clips_per_video=3)  # max start 93 on a 100-frame video
    assert [sampler.start(100, k) for k in range(3)] == [0, 46, 93]
    assert sampler(100, 2) == [93, 95, 97, 99]
    assert UniformClipSampler(4, 2).start(100, 0) == 46  # single clip: centre
    with pytest.raises(ValueError, match="clip_index"):
        sampler(100, 3)


@pytest.mark.parametrize(
    "make",
    [lambda: RandomClipSampler(0, 1), lambda: UniformClipSampler(4, 0), lambda: UniformClipSampler(4, 1, 0),
     lambda: RandomClipSampler(4, 1, 2)],
)
def test_invalid_parameters_raise(make):
    with pytest.raises(ValueError):
        make()


def test_invalid_video_lengths_raise():
    with pytest.raises(ValueError, match="no frames"):
        clip_indices(0, 4, 1, 0)
    with pytest.raises(ValueError, match="outside"):
        clip_indices(10, 4, 1, 10)


def test_time_based_sampling_maps_a_target_fps_timeline_to_video_frames():
    assert resampled_length(300, 30.0, 30.0) == 300
    assert resampled_length(250, 25.0, 30.0) == 300  # 10 s either way
    assert resampled_length(600, 60.0, 30.0) == 300
    assert resampled_length(1, 60.0, 30.0) == 1
    assert to_video_frames([0, 1, 2, 3], 30.0, 30.0, 300) == [0, 1, 2, 3]
    assert to_video_frames([0, 1, 2, 3, 6], 25.0, 30.0, 250) == [0, 0, 1, 2, 5]  # on screen at k/30 s
    assert to_video_frames([0, 1, 2, 299], 60.0, 30.0, 600) == [0, 2, 4, 598]
    assert to_video_frames([299], 29.97, 30.0, 299) == [298]  # clamped to the last frame
    with pytest.raises(ValueError, match="frame rates must be positive"):
        to_video_frames([0], 0.0, 30.0, 10)
