"""Video file I/O with PyAV: probe, decode selected frames, stream frames one by one, write H.264 MP4.

Frames are numbered 0, 1, 2, ... in decoding (presentation) order. Decoded frames are RGB ``uint8``
tensors: a clip is ``(T, H, W, 3)``, a single frame ``(H, W, 3)``. Every failure names the file: a missing
file raises ``FileNotFoundError``, an unreadable one ``VideoDecodeError``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

PathLike = str | os.PathLike


class VideoDecodeError(RuntimeError):
    """A video file exists but cannot be opened or decoded (corrupt, truncated, no video stream)."""

    def __init__(self, path: PathLike, reason: str) -> None:
        super().__init__(f"cannot decode video {os.fspath(path)!r}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


class VideoEndedEarly(VideoDecodeError):
    """Decoding ended well before a requested frame: the file holds fewer decodable frames than its
    container declares (truncated, or cut without re-encoding). ``decoded_frames`` is how many it holds."""

    def __init__(self, path: PathLike, decoded_frames: int, requested: int) -> None:
        super().__init__(path, f"the video ends after {decoded_frames} decodable frames, before requested "
                         f"frame {requested} (truncated, or its container overstates its length)")
        self.decoded_frames = decoded_frames


@dataclass(frozen=True)
class VideoInfo:
    """Basic facts about a video's first video stream (``width`` and ``height`` as coded, before any
    rotation the stream's metadata asks for)."""

    path: str
    num_frames: int
    fps: float
    width: int
    height: int


@contextmanager
def _open_stream(path: PathLike) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """Open ``path`` for reading; yield the container and its first video stream (threaded decoding)."""
    if not os.path.isfile(path):
        what = "expected a video file, got a directory" if os.path.isdir(path) else "video file not found"
        raise FileNotFoundError(f"{what}: {os.fspath(path)!r}")
    try:
        container = av.open(os.fspath(path))
    except (av.FFmpegError, OSError) as err:
        raise VideoDecodeError(path, str(err)) from err
    try:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield container, stream
    except (av.FFmpegError, OSError) as err:
        raise VideoDecodeError(path, str(err)) from err
    finally:
        container.close()


def _count_packets(path: PathLike) -> int:
    """Count video packets by demuxing (no decoding), for containers that do not store a frame count."""
    with _open_stream(path) as (container, stream):
        return sum(1 for packet in container.demux(stream) if packet.size > 0)


def probe_video(path: PathLike) -> VideoInfo:
    """Frame count, frame rate and size of a video, read from the container (no full decode)."""
    with _open_stream(path) as (_, stream):
        num_frames = stream.frames
        rate = stream.average_rate or stream.guessed_rate
        info = VideoInfo(
            path=os.fspath(path),
            num_frames=num_frames,
            fps=float(rate) if rate else 0.0,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
        )
    if info.num_frames <= 0:
        counted = _count_packets(path)
        info = VideoInfo(info.path, counted, info.fps, info.width, info.height)
    if info.num_frames <= 0:
        raise VideoDecodeError(path, "video stream has no frames")
    return info


#: Frames a container's count may overstate the decodable frames by (e.g. a last B-frame group).
FRAME_COUNT_SLACK = 2


def read_frames(path: PathLike, indices: Sequence[int] | None = None) -> torch.Tensor:
    """Decode the frames at ``indices`` (any order, repeats allowed) as a ``(T, H, W, 3)`` uint8 tensor.

    ``None`` decodes every frame. Decoding runs from the start of the file and stops after the largest
    requested index. Container frame counts can overstate the decodable frames by a frame or two: an
    index up to `FRAME_COUNT_SLACK` past the last decodable frame gets that frame. Further past, the file
    ended early and `VideoEndedEarly` says how many frames it holds (sample within those); a file that
    fails to decode, or has no decodable frame, raises ``VideoDecodeError``. Frames keep the first frame's
    size (a stream that changes resolution part-way is scaled back to it) and are turned upright by the
    stream's rotation metadata.
    """
    if indices is not None:
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError("read_frames: indices is empty")
        if min(indices) < 0:
            raise ValueError(f"read_frames: negative frame index {min(indices)}")
    wanted = None if indices is None else set(indices)
    last_wanted = None if indices is None else max(indices)
    decoded: dict[int, np.ndarray] = {}
    last_index = -1
    with _open_stream(path) as (container, stream):
        last_frame = None
        converter = RGBConverter()
        for index, frame in enumerate(container.decode(stream)):
            if wanted is None or index in wanted:
                decoded[index] = converter(frame)
            last_index, last_frame = index, frame
            if last_wanted is not None and index >= last_wanted:
                break
        if last_frame is None:
            raise VideoDecodeError(path, "no frame could be decoded")
        if last_wanted is not None and last_index + FRAME_COUNT_SLACK < last_wanted:
            raise VideoEndedEarly(path, last_index + 1, last_wanted)
        if last_index not in decoded:  # the file ended just before the largest requested index
            decoded[last_index] = converter(last_frame)
    order = range(last_index + 1) if indices is None else (min(i, last_index) for i in indices)
    return torch.from_numpy(np.stack([decoded[i] for i in order]))


def iter_frames(path: PathLike) -> Iterator[torch.Tensor]:
    """Yield the frames of a video one by one as ``(H, W, 3)`` uint8 tensors (for streaming inference)."""
    with _open_stream(path) as (container, stream):
        converter = RGBConverter()
        for frame in container.decode(stream):
            yield torch.from_numpy(converter(frame))


class RGBConverter:
    """Decoded frames to upright RGB arrays of the first frame's size.

    One reformatter serves every frame: it keeps its conversion context between frames of one size and
    format, where ``frame.to_ndarray(format=...)`` sets one up per frame (most of the decoding time of a
    small video)."""

    def __init__(self) -> None:
        self.size: tuple[int, int] | None = None
        self.reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        if self.size is None:
            self.size = (frame.width, frame.height)
        width, height = self.size
        if (frame.width, frame.height) == self.size:
            image = self.reformatter.reformat(frame, format="rgb24").to_ndarray()
        else:
            image = self.reformatter.reformat(frame, width, height, "rgb24").to_ndarray()
        quarter_turns = round(getattr(frame, "rotation", 0) / 90) % 4  # counterclockwise, display matrix
        return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


def write_video(path: PathLike, frames: torch.Tensor | np.ndarray, fps: float = 15.0, crf: int = 18) -> Path:
    """Write ``(T, H, W, 3)`` uint8 RGB frames as an H.264 (libx264, yuv420p) MP4; returns the path.

    H and W must be even (a yuv420p requirement). Parent folders are created. The same frames always give
    the same bytes (single-threaded x264 without mbtree), so synthetic datasets are reproducible.
    """
    array = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"write_video: expected frames of shape (T, H, W, 3), got {tuple(array.shape)}")
    if array.dtype != np.uint8:
        raise ValueError(f"write_video: expected uint8 frames, got {array.dtype}")
    num_frames, height, width, _ = array.shape
    if num_frames == 0:
        raise ValueError("write_video: no frames to write")
    if height % 2 or width % 2:
        raise ValueError(f"write_video: H.264 yuv420p needs even height and width, got {height}x{width}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # mbtree rate control made tiny videos differ from run to run (as did multi-threading).
        stream.options = {"crf": str(crf), "preset": "veryfast", "x264-params": "mbtree=0"}
        stream.codec_context.thread_count = 1
        for image in array:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
