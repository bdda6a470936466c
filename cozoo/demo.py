"""``make demo``: the main job, offline. Builds a continual X3D, streams a generated video frame by frame,
prints per-frame predictions and a FLOPs table (per clip for the regular model, per frame for the continual).

Weights are random (checkpoints cannot be downloaded offline; with network access use
``create_model("cox3d_s", pretrained=True)``), so the predicted classes are arbitrary: the demo shows the
mechanics, and checks that the streamed outputs equal the clip-mode outputs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

import cozoo
from cozoo.data.synthetic import write_synthetic_stream
from cozoo.data.video import iter_frames
from cozoo.labels import class_names

MODEL = "cox3d_xs"
FRAME_SIZE = 96


def _prepare(frame: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) uint8 -> normalised (1, 3, H, W) float."""
    return ((frame.permute(2, 0, 1).float() / 255 - mean) / std).unsqueeze(0)


def main() -> None:
    torch.manual_seed(0)
    model = cozoo.create_model(MODEL).eval()
    config = model.cozoo_config
    names = class_names(config.dataset)
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    print(f"{MODEL}: receptive field {model.receptive_field} frames, delay {model.delay}, "
          f"first output after {model.first_output + 1} frames (random weights, offline demo)")

    with tempfile.TemporaryDirectory() as tmp:
        video, truth = write_synthetic_stream(
            Path(tmp) / "demo.mp4", [("moving_right", 40), ("moving_left", 40)], size=FRAME_SIZE
        )
        print(f"generated {video.name}: {len(truth)} frames of {FRAME_SIZE}x{FRAME_SIZE}")
        stream = model.stream()
        frames, outputs, start = [], [], time.perf_counter()
        for frame in iter_frames(video):
            x = _prepare(frame, mean, std)
            frames.append(x)
            prediction = stream.push(x)
            if prediction is None:
                continue
            outputs.append(prediction.logits)
            top = prediction.logits.softmax(-1)[0].topk(3)
            shown = ", ".join(f"{names[i]} {p:.3f}" for p, i in zip(top.values, top.indices, strict=True))
            print(f"frame {prediction.frame_index:3d} (truth {truth[prediction.frame_index]}): {shown}")
        elapsed = time.perf_counter() - start
    print(f"streamed {len(frames)} frames in {elapsed:.2f} s ({len(frames) / elapsed:.1f} frames/s on CPU)")
    with torch.no_grad():
        clip = model(torch.stack(frames, dim=2))
    gap = (torch.stack(outputs, dim=2) - clip).abs().max().item()
    print(f"max |step - clip| over {clip.shape[2]} outputs: {gap:.2e}")
    _print_flops()


def _print_flops() -> None:
    from cozoo.flops import count_flops

    print("\nGMACs (fvcore convention: one multiply-accumulate = one FLOP)")
    print(f"{'model':12s} {'per clip':>10s} {'continual per frame':>20s} {'ratio':>7s}")
    for regular_name in ("x3d_xs", "x3d_s"):
        regular = cozoo.create_model(regular_name).eval()
        continual = cozoo.create_model(f"co{regular_name}").eval()
        config = regular.cozoo_config
        clip = torch.randn(1, 3, config.frames, config.test_crop, config.test_crop)
        per_clip = count_flops(regular, clip).gmacs
        per_frame = count_flops(continual, clip[:, :, 0]).gmacs
        print(f"{regular_name:12s} {per_clip:10.3f} {per_frame:20.3f} {per_clip / per_frame:6.1f}x")


if __name__ == "__main__":
    main()
