"""``cozoo stream --out VIDEO.mp4``: the input video with the latest prediction drawn on each frame.

The overlay is a dark panel in the top-left corner (`overlay_box`): one line per top-k class (label and
probability) above a bar whose length is the probability (the probability strip). Before the model's
first output the panel says so. Frames are written with their own timestamps (a live source's dropped
frames leave gaps in time, not a faster video) to a temporary file renamed into place at `close` (also on
Ctrl-C), so the MP4 is always finalised.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

LINE, BAR = 12, 3  # pixels per text line (PIL's built-in font is 11 px high) and per probability bar
ROW = LINE + BAR + 2


def _scale(height: int) -> int:
    """Overlay size factor: 1 up to 480-line frames, then one more per 360 lines (legible at 1080p)."""
    return max(1, round(height / 360))


@lru_cache(maxsize=8)
def _font(scale: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default() if scale == 1 else ImageFont.load_default(size=10 * scale)


def overlay_box(width: int, height: int, rows: int) -> tuple[int, int, int, int]:
    """The panel ``(left, top, right, bottom)`` (right/bottom exclusive) holding ``rows`` classes."""
    scale = _scale(height)
    return 0, 0, min(width, 200 * scale), min(height, (4 + max(rows, 1) * ROW) * scale)


def draw_overlay(image: np.ndarray, top: Sequence[tuple[str, float]] | None, rows: int) -> np.ndarray:
    """A copy of the ``(H, W, 3)`` uint8 frame with the panel drawn: ``top`` is ``(label, probability)``
    pairs, highest first (None: no prediction yet). Pixels outside `overlay_box` are unchanged."""
    height, width = image.shape[:2]
    left, top_px, right, bottom = overlay_box(width, height, rows)
    scale, font = _scale(height), _font(_scale(height))
    canvas = Image.fromarray(image)
    panel = canvas.crop((left, top_px, right, bottom))
    panel = Image.blend(panel, Image.new("RGB", panel.size), 0.65)  # darken, keep a hint of the scene
    draw = ImageDraw.Draw(panel)
    if top is None:
        draw.text((3 * scale, 2 * scale), "warming up...", fill=(255, 255, 255), font=font)
    else:
        for row, (label, prob) in enumerate(top[:rows]):
            y = (2 + row * ROW) * scale
            draw.text((3 * scale, y), f"{prob:6.1%}  {label}", fill=(255, 255, 255), font=font)
            bar = (y + LINE * scale, y + (LINE + BAR) * scale - 1)
            end = panel.width - 4 * scale
            draw.rectangle((3 * scale, bar[0], end, bar[1]), fill=(70, 70, 70))  # the bar's track
            draw.rectangle((3 * scale, bar[0], 3 * scale + round(prob * (end - 3 * scale)), bar[1]),
                           fill=(80, 220, 120))
    canvas.paste(panel, (left, top_px))
    return np.asarray(canvas)


class AnnotatedWriter:
    """H.264 MP4 writer of annotated frames at the input's frame rate, timed by the frames' timestamps.

    Odd widths or heights lose their last column or row (yuv420p needs even sizes). ``crf`` 0 is lossless
    in YUV (used by tests to compare pixels exactly).
    """

    def __init__(self, path: str | os.PathLike, fps: float, crf: int = 18) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"--out {os.fspath(path)!r} is a directory; give an .mp4 file name")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.path.with_name(f".{self.path.name}.partial")
        self.rate = Fraction(fps if fps > 0 else 25.0).limit_denominator(1001)
        self.crf = crf
        self._container = av.open(os.fspath(self._partial), "w", format="mp4")
        self._stream: av.video.stream.VideoStream | None = None
        self._first_pts: float | None = None
        self._last = -1
        self.frames = 0

    def write(self, image: np.ndarray, pts: float | None) -> None:
        """Append ``image`` shown at ``pts`` seconds (None: one frame after the previous)."""
        height, width = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
        if self._stream is None:
            self._stream = self._container.add_stream("libx264", rate=self.rate)
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
            self._stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        if pts is not None and self._first_pts is None:
            self._first_pts = pts
        tick = self._last + 1
        if pts is not None:
            tick = max(tick, round((pts - self._first_pts) * self.rate))  # type: ignore[operator]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]), format="rgb24")
        frame.pts, frame.time_base = tick, 1 / self.rate
        self._container.mux(self._stream.encode(frame))
        self._last = tick
        self.frames += 1

    def close(self) -> Path | None:
        """Flush the encoder, finalise the MP4 and move it into place; None if no frame was written."""
        if self._container is None:
            return None
        container, self._container = self._container, None
        if self._stream is not None:
            container.mux(self._stream.encode())
        container.close()
        if self._stream is None:
            self._partial.unlink(missing_ok=True)
            return None
        os.replace(self._partial, self.path)
        return self.path
