"""Video sources for live inference: a file, a network URL PyAV can open, or a capture device.

`parse_source` tells them apart from the text a user types; `read_source` decodes one frame at a time
and, for a network source, reopens it when it drops (bounded retries, each logged), tagging the frames of
each new connection with the next ``segment`` number so the consumer restarts the model's warm-up.
A live source is opened without probing the whole stream (`cozoo.data.video.probe_video` counts packets
when a container stores no frame count, which never ends on a live stream).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Literal

import av
import torch

from cozoo.data.video import FRAME_COUNT_SLACK, RGBConverter, VideoDecodeError, probe_video

SourceKind = Literal["file", "network", "device"]

#: URL schemes read as network streams (anything FFmpeg's network protocols open).
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp", "hls")
#: ``FORMAT:DEVICE`` prefixes for capture devices (Linux, macOS, Windows).
DEVICE_FORMATS = ("v4l2", "avfoundation", "dshow")


@dataclass(frozen=True)
class SourceSpec:
    """What to open: ``url`` for `av.open`, with ``format`` (None lets FFmpeg guess) and ``options``."""

    text: str
    kind: SourceKind
    url: str
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        """Network streams and devices run in real time: they are never buffered without bound."""
        return self.kind != "file"


def parse_source(text: str, rtsp_transport: Literal["tcp", "udp", "auto"] = "tcp") -> SourceSpec:
    """A file path, a network URL (``rtsp://...``, ``tcp://...``, see `NETWORK_SCHEMES`), a Linux capture
    device (``/dev/video0``), ``FORMAT:DEVICE`` (``v4l2:/dev/video1``, ``avfoundation:0``,
    ``dshow:video=Integrated Camera``) or a bare camera number (``0``: the platform's first camera).

    RTSP media comes over TCP by default (no packet loss, passes NAT); ``"udp"`` asks for RTP over UDP,
    ``"auto"`` lets FFmpeg try UDP first and fall back to TCP."""
    scheme, sep, _ = text.partition("://")
    if sep:
        if scheme.lower() not in NETWORK_SCHEMES:
            raise ValueError(f"unsupported URL scheme {scheme!r} in {text!r}; use one of "
                             f"{', '.join(NETWORK_SCHEMES)}, a file or a capture device")
        rtsp = scheme.lower().startswith("rtsp") and rtsp_transport != "auto"
        options = {"rtsp_transport": rtsp_transport} if rtsp else {}
        return SourceSpec(text, "network", text, None, options)
    prefix, sep, device = text.partition(":")
    if sep and prefix in DEVICE_FORMATS:
        return SourceSpec(text, "device", device, prefix)
    if text.startswith("/dev/video"):
        if not os.path.exists(text):
            raise FileNotFoundError(f"capture device not found: {text!r}")
        return SourceSpec(text, "device", text, "v4l2")
    if text.isdigit():
        return _camera_number(text)
    if not os.path.isfile(text):
        what = "expected a video file, got a directory" if os.path.isdir(text) else "video file not found"
        raise FileNotFoundError(f"{what}: {text!r}")
    return SourceSpec(text, "file", text)


def _camera_number(text: str) -> SourceSpec:
    if sys.platform.startswith("linux"):
        return SourceSpec(text, "device", f"/dev/video{text}", "v4l2")
    if sys.platform == "darwin":
        return SourceSpec(text, "device", text, "avfoundation")
    raise ValueError(f"camera {text}: on this platform name the device, e.g. 'dshow:video=Integrated Camera'")


@dataclass(frozen=True)
class SourceFrame:
    """One decoded frame. ``index`` counts frames since the source was first opened (across reconnects),
    ``segment_index`` since the current connection (``segment``: 0, then +1 per reconnect); ``pts`` is its
    presentation time in seconds (None if unknown), ``arrived`` the `time.monotonic` at which it was
    decoded, ``fps`` the stream's declared rate (0 if unknown)."""

    index: int
    segment: int
    segment_index: int
    pts: float | None
    image: torch.Tensor
    arrived: float
    fps: float


@dataclass
class ReconnectPolicy:
    """How a dropped network source is reopened: up to ``retries`` attempts in a row, waiting ``delay``
    seconds before the first and doubling up to ``max_delay``; ``timeout``: seconds an open or a read may
    block before the connection counts as dropped."""

    retries: int = 5
    delay: float = 0.5
    max_delay: float = 5.0
    timeout: float = 10.0


def _open(spec: SourceSpec, timeout: float) -> av.container.InputContainer:
    container = av.open(spec.url, format=spec.format, options=dict(spec.options), timeout=timeout)
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(spec.text, "no video stream")
    return container


def _decode(container: av.container.InputContainer) -> Iterator[tuple[torch.Tensor, float | None, float]]:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 0.0
    converter = RGBConverter()
    for frame in container.decode(stream):
        yield torch.from_numpy(converter(frame)), frame.time, fps


def declared_frames(spec: SourceSpec) -> int | None:
    """Frames a file declares (for a progress bar and the truncation check); None for a live source."""
    return probe_video(spec.url).num_frames if spec.kind == "file" else None


def read_source(
    spec: SourceSpec,
    policy: ReconnectPolicy | None = None,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True),
    stop: threading.Event | None = None,
    warnings_out: list[str] | None = None,
) -> Generator[SourceFrame, None, None]:
    """Decode ``spec`` frame by frame. A file or device ends at its end (a file that fails to open or
    decode raises `VideoDecodeError`; one that ends well short of its declared length adds a line to
    ``warnings_out``). A network source that fails or ends is reopened after ``policy``'s delay, up to
    ``policy.retries`` failed attempts in a row; then it ends (logged). ``stop`` ends it between frames."""
    policy = policy or ReconnectPolicy()
    stop = stop or threading.Event()
    declared = declared_frames(spec)
    index, segment, failures = 0, 0, 0
    delay = policy.delay
    while not stop.is_set():
        segment_index = 0
        error: Exception | None = None
        try:
            container = _open(spec, policy.timeout)
        except (av.FFmpegError, OSError) as err:
            container, error = None, err
        if container is not None:
            try:
                for image, pts, fps in _decode(container):
                    yield SourceFrame(index, segment, segment_index, pts, image, time.monotonic(), fps)
                    index += 1
                    segment_index += 1
                    failures, delay = 0, policy.delay
                    if stop.is_set():
                        break
            except (av.FFmpegError, OSError) as err:
                error = err
            finally:
                container.close()
        if stop.is_set():
            return
        if spec.kind != "network":
            if error is not None or index == 0:
                raise VideoDecodeError(spec.text, str(error) if error else "no frame could be decoded")
            if declared is not None and index + FRAME_COUNT_SLACK < declared and warnings_out is not None:
                warnings_out.append(f"{spec.text!r}: decoding ended after {index} of the {declared} frames "
                                    "the file declares (truncated?)")
            return
        if segment_index:  # frames came, then the connection dropped: the next one is a new segment
            segment += 1
        failures += 1
        why = _why(error, policy.timeout)
        if failures > policy.retries:
            log(f"{spec.text}: {why}; giving up after {policy.retries} reconnection attempts")
            if index == 0:
                raise VideoDecodeError(spec.text, str(error) if error else "no frame could be decoded")
            return
        log(f"{spec.text}: {why}; reconnecting in {delay:g} s (attempt {failures}/{policy.retries})")
        stop.wait(delay)
        delay = min(delay * 2, policy.max_delay)


def _why(error: Exception | None, timeout: float) -> str:
    """A dropped connection's cause in words (FFmpeg reports a timeout as an "immediate exit")."""
    if error is None:
        return "stream ended"
    if isinstance(error, av.ExitError):
        return f"no data for {timeout:g} s"
    return str(error)
