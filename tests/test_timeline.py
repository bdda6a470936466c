"""The frame-rate rule (`cozoo.timeline`) shared by clip sampling, `cozoo stream` and the ONNX runner."""

from __future__ import annotations

import pytest

from cozoo.timeline import (
    StepTimeline,
    frames_per_step,
    samples_by_time,
    step_frame,
    steps_at_frame,
    video_frame_at,
)


def test_near_rates_sample_by_index_and_far_ones_by_time() -> None:
    assert not samples_by_time(30.0, None) and not samples_by_time(None, 30.0)
    assert not samples_by_time(29.9995, 30.0)  # within 0.001 fps: by frame index
    assert samples_by_time(29.97, 30.0) and samples_by_time(60.0, 30.0)


def test_by_index_every_rate_th_frame() -> None:
    assert frames_per_step(6, 30.0, 30.0) == 6.0
    assert [step_frame(k, 6, 30.0, None) for k in range(4)] == [0, 6, 12, 18]
    assert [steps_at_frame(i, 3, 30.0, None) for i in range(7)] == [1, 0, 0, 1, 0, 0, 1]


@pytest.mark.parametrize(("fps", "rate"), [(60.0, 2), (25.0, 1), (24.0, 5), (29.97, 6)])
def test_by_time_takes_the_frame_on_screen_at_each_instant(fps: float, rate: int) -> None:
    """Step k takes the frame shown at k * rate / 30 s; a frame is taken by as many steps as instants
    fall while it is on screen (a 25 fps frame can be taken twice on a 30 fps timeline, a 60 fps one not
    at all)."""
    target = 30.0
    assert frames_per_step(rate, fps, target) == pytest.approx(rate * fps / target)
    frames = [step_frame(k, rate, fps, target) for k in range(300)]
    assert frames == [int(k * rate / target * fps + 1e-6) for k in range(300)]
    assert frames == [video_frame_at(k * rate, fps, target) for k in range(300)]
    last = frames[-1]
    counts = [frames.count(i) for i in range(last)]
    assert [steps_at_frame(i, rate, fps, target) for i in range(last)] == counts


def test_step_timeline_reads_its_streamers_rates() -> None:
    """`StepTimeline` answers with the functions above for the rates its holder has at the moment."""
    holder = StepTimeline()
    holder.sampling_rate, holder.fps, holder.target_fps = 2, 60.0, 30.0
    assert holder.by_time and holder.frames_per_step == 4.0
    assert [holder.video_frame(k) for k in range(3)] == [0, 4, 8]
    assert [holder._steps_at(i) for i in range(5)] == [1, 0, 0, 0, 1]
    holder.fps = 30.0  # a new video at the target rate: by frame index
    assert not holder.by_time and [holder.video_frame(k) for k in range(3)] == [0, 2, 4]
