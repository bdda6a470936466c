"""``make demo``: the main job, offline, on CPU in about 2 minutes on 2 idle cores (most of it fine-tuning).

1. Fine-tunes a slim X3D-XS on generated motion videos (``configs/finetune/synthetic_x3d.yaml``; published
   checkpoints cannot be downloaded offline, so the weights are learnt here).
2. Builds the continual model from those weights and streams a generated video whose motion changes
   class every 8 clips (long against the continual model's receptive field), printing the prediction at
   every step and the share that matches the class on screen at its centre frame, checks step mode against
   clip mode and writes a plot of the class probabilities over time (``runs/demo/stream_probs.png``).
3. Prints a FLOPs table: per clip for regular models, per frame for their continual counterparts.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import torch

from cozoo.data.synthetic import write_synthetic_stream
from cozoo.data.transforms import eval_transform
from cozoo.data.video import iter_frames
from cozoo.factory import create_model, get_config
from cozoo.flops import convention, count_flops
from cozoo.inference.plots import plot_probabilities
from cozoo.inference.video import FramePrediction
from cozoo.training import finetune, load_config, load_finetuned

RECIPE = Path(__file__).resolve().parent.parent / "configs" / "finetune" / "synthetic_x3d.yaml"
PLOT = Path("runs") / "demo" / "stream_probs.png"  # kept after the demo (relative to the working directory)
# Each segment is an independent 16-frame video of its class, as in training; a class runs for RUN_CLIPS
# segments (128 frames, 64 model steps), long against the continual model's receptive field (26 steps), so
# most predictions see one class only (`class_runs` and tests/test_demo.py check it).
RUN_CLIPS = 8
SEGMENTS = [(label, 16) for label in ("growing", "moving_right", "shrinking", "rotating_cw")
            for _ in range(RUN_CLIPS)]


def class_runs(segments: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Consecutive segments of one class merged: ``[(class, frames), ...]``."""
    runs: list[tuple[str, int]] = []
    for label, frames in segments:
        if runs and runs[-1][0] == label:
            runs[-1] = (label, runs[-1][1] + frames)
        else:
            runs.append((label, frames))
    return runs


def main() -> None:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        # The demo streams a video itself: the recipe's streaming of the validation set is skipped.
        config = load_config(RECIPE, [f"output_dir={tmp}/run", "train.progress=false",
                                      "train.continual_eval=false"])
        print(f"[1/3] fine-tuning {config.model.name} (slim) on generated motion videos ...", flush=True)
        start = time.perf_counter()
        result = finetune(config)
        print(f"      {config.train.epochs} epochs in {time.perf_counter() - start:.0f} s, "
              f"val accuracy {result.final_val_acc:.2f} (chance {1 / len(result.label_map):.2f})")
        model, classes = load_finetuned(result.output_dir / "best.pt", continual=True)
        model.eval()
        _stream(model, classes, config, Path(tmp))
    _print_flops()


def _stream(model: torch.nn.Module, classes: list[str], config, folder: Path) -> None:
    data = config.data
    source = get_config(config.model.name)
    crop = data.test_crop
    transform = eval_transform(crop=crop, mean=source.mean, std=source.std, short_side=crop)
    video, truth = write_synthetic_stream(folder / "demo.mp4", SEGMENTS, size=data.synthetic.size, seed=7)
    print(f"[2/3] streaming {video.name}: {len(truth)} frames, every {data.sampling_rate} frame(s) fed to "
          f"co{config.model.name} (receptive field {model.receptive_field} steps; each prediction stands for "
          f"the clip of its source network starting {model.delay} steps back)")
    stream = model.stream()
    frames, outputs, correct, start = [], [], 0, time.perf_counter()
    plotted: list[FramePrediction] = []
    for index, frame in enumerate(iter_frames(video)):
        if index % data.sampling_rate:
            continue
        x = transform(frame.unsqueeze(0))[:, 0].unsqueeze(0)
        frames.append(x)
        prediction = stream.push(x)
        if prediction is None:
            continue
        outputs.append(prediction.logits)
        # the source clip's middle, in video frames (the lower of the two middle frames of an even clip)
        centre = math.floor(prediction.centre_frame * data.sampling_rate)
        clip = f"{prediction.clip_first * data.sampling_rate}-{prediction.clip_last * data.sampling_rate}"
        probs = prediction.logits.softmax(-1)[0]
        label = classes[int(probs.argmax())]
        correct += label == truth[centre]
        plotted.append(FramePrediction(index, len(frames) - 1, prediction.logits[0],
                                       prediction.first_frame * data.sampling_rate,
                                       prediction.clip_first * data.sampling_rate,
                                       prediction.clip_last * data.sampling_rate))
        print(f"      frame {index:3d}  clip {clip:>7s} centre frame {centre:3d} truth {truth[centre]:12s} "
              f"predicted {label:12s} p={float(probs.max()):.2f}")
    elapsed = time.perf_counter() - start
    rate = correct / max(len(outputs), 1)
    print(f"      {len(outputs)} predictions, {correct} ({rate:.0%}) match the class on screen at their "
          f"centre frame; "
          f"{len(frames) / elapsed:.0f} frames/s")
    with torch.no_grad():
        clip = model(torch.stack(frames, dim=2))
    gap = (torch.stack(outputs, dim=2) - clip).abs().max().item()
    print(f"      step mode vs clip mode over the same frames: max |difference| {gap:.1e}")
    path = plot_probabilities(plotted, classes, PLOT, top=len(classes), fps=15.0,
                              title=f"co{config.model.name} streaming {video.name}")
    print(f"      wrote {path}: class probabilities over time")


def _print_flops() -> None:
    print("[3/3] GMACs at the test crop and clip length, counted as by `cozoo flops` and published figures:")
    print(f"      {convention('train')}")
    print(f"      {'model':8s} {'per clip':>9s} {'continual per frame':>20s} {'ratio':>7s}")
    for regular_name in ("x3d_xs", "x3d_s", "x3d_m"):
        regular = create_model(regular_name).eval()
        continual = create_model(f"co{regular_name}").eval()
        config = regular.cozoo_config
        clip = torch.randn(1, 3, config.frames, config.test_crop, config.test_crop)
        per_clip = count_flops(regular, clip, batchnorm="train").gmacs
        per_frame = count_flops(continual, clip[:, :, 0], batchnorm="train").gmacs
        print(f"      {regular_name:8s} {per_clip:9.3f} {per_frame:20.3f} {per_clip / per_frame:6.1f}x")


if __name__ == "__main__":
    main()
