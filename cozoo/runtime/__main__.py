"""``python -m cozoo.runtime MODEL.onnx VIDEO``: per-frame top-k predictions of an exported model, as
``cozoo stream`` prints them, with onnxruntime (no PyTorch)."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from cozoo.runtime.metadata import MetadataError
from cozoo.runtime.runner import FramePrediction, OnnxVideoStreamer


def _print(prediction: FramePrediction, labels: list[str], k: int, note: str = "") -> None:
    probs = prediction.probs
    shown = ", ".join(f"{labels[i]} {probs[i]:.3f}" for i in np.argsort(-probs)[: max(1, k)])
    where = (f"frame {prediction.frame_index:5d} (clip {prediction.clip_first}-{prediction.clip_last}, "
             f"centre {prediction.centre_frame:g})")
    print(f"{where}: {shown}{note}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cozoo.runtime", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="exported .onnx file (its .json metadata beside it)")
    parser.add_argument("video", help="video file")
    parser.add_argument("--top-k", type=int, default=5, help="classes printed per prediction (default 5)")
    parser.add_argument("--pad", action="store_true", help="for a video shorter than the warm-up: repeat its "
                        "last frame until the first prediction (as cozoo stream --pad)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: default)")
    args = parser.parse_args(argv)
    try:
        streamer = OnnxVideoStreamer(args.model, threads=args.threads)
        start, count = time.perf_counter(), 0
        for prediction in streamer.stream_video(args.video):
            count += 1
            _print(prediction, streamer.labels, args.top_k)
        if not count and args.pad:
            prediction = streamer.pad_until_output()
            if prediction is not None:
                count += 1
                _print(prediction, streamer.labels, args.top_k, f"  [after {streamer.padded} repeats of the "
                       "last frame]")
        elapsed = max(time.perf_counter() - start, 1e-9)
    except (OSError, ValueError, TypeError, MetadataError) as err:
        print(f"cozoo.runtime: error: {err}", file=sys.stderr)
        return 2
    print(f"{streamer.frames_read} frames decoded, {streamer.steps} model steps, {count} predictions in "
          f"{elapsed:.2f} s ({streamer.frames_read / elapsed:.1f} frames/s)")
    if not count:
        print(f"cozoo.runtime: no prediction: the first needs {streamer.first_output + 1} model steps; pass "
              "--pad to repeat the last frame until then", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
