"""Which input frames a continual model's prediction stands for, read off the model's structure.

The prediction a continual model emits at step ``t`` (0-based index of the frame just fed) is stamped with

* ``first_frame .. last_frame``: the frames its receptive field spans, ``t - receptive_field + 1 .. t``
  (from 0 on: in a padded warm-up the earlier part of the field is the source's zero padding; a recurrent
  model's field reaches back to frame 0);
* the *source clip* ``clip_first .. clip_last``: the clip which, fed to the regular (source) network, has
  its global pool average the same source positions as the prediction does. It starts at ``t - delay``
  and is ``clip_length`` frames long (the global pool's window in input frames, or the model's stride
  without a pool), e.g. frames t-40 .. t-28 for CoX3D-S (the 13 frames whose pooled features it averages);
  for a recurrent model it is every frame so far;
* ``centre_frame``: that clip's middle, ``(clip_first + clip_last) / 2`` (t - 34 for CoX3D-S; a half frame
  for clips of even length).

``delay = receptive_field - temporal_padding - 1`` keeps continual-inference's meaning: the step at which
the first output appears when the stream starts from the source's zero padding (``warmup="padded"``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cozoo.continual.base import ContinualModule, Schedule


@dataclass(frozen=True)
class FrameStamp:
    """The input frames one prediction stands for (see the module docstring); all 0-based frame indices."""

    first_frame: int
    last_frame: int
    clip_first: int
    clip_last: int

    @property
    def centre_frame(self) -> float:
        return (self.clip_first + self.clip_last) / 2


class Stamped:
    """``last_frame`` and ``centre_frame`` of an output stamped with ``frame_index`` (the frame just pushed),
    ``clip_first`` and ``clip_last`` (its source clip): shared by a stream's `Prediction` and a video's
    ``FramePrediction``."""

    frame_index: int
    clip_first: int
    clip_last: int

    @property
    def last_frame(self) -> int:
        return self.frame_index

    @property
    def centre_frame(self) -> float:
        return (self.clip_first + self.clip_last) / 2


@dataclass(frozen=True)
class Timing:
    """A model's alignment: enough to stamp the output of any step (`stamp`)."""

    receptive_field: int
    temporal_padding: int
    clip_length: int
    recurrent: bool = False

    @property
    def delay(self) -> int:
        return self.receptive_field - self.temporal_padding - 1

    def stamp(self, step: int) -> FrameStamp:
        """The frames the output emitted at ``step`` stands for."""
        if self.recurrent:
            return FrameStamp(0, step, 0, step)
        clip_first = step - self.delay
        return FrameStamp(max(step - self.receptive_field + 1, 0), step, clip_first,
                          clip_first + self.clip_length - 1)


def timing(model: nn.Module) -> Timing:
    """The `Timing` of a continual model (a single output stream)."""
    if not isinstance(model, ContinualModule):
        raise TypeError(f"{type(model).__name__} is not continual; convert it with to_continual()")
    schedule = model._schedule(Schedule(), bind=False)
    if not isinstance(schedule, Schedule):
        raise TypeError(f"{type(model).__name__} outputs several pathways; a prediction needs one stream")
    recurrent = any(getattr(m, "recurrent", False) for m in model.modules())
    return Timing(schedule.receptive_field, schedule.padding, schedule.span, recurrent)
