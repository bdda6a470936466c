"""``make demo``: the main job, offline, on CPU in about 90 s on a 2-core machine (most of it fine-tuning).

1. Fine-tunes a slim X3D-XS on generated motion videos (``configs/finetune/synthetic_x3d.yaml``; published
   checkpoints cannot be downloaded offline, so the weights are learnt here).
2. Builds the continual model from those weights and streams a generated video whose motion changes
   class every 9 clips (over twice the continual model's receptive field), printing the prediction at
   every step against the class of the frames it is about (its source clip's; a clip that straddles a
   change of class is counted apart, as ambiguous), checks step mode against clip mode and writes a plot of
   the class probabilities over time (``runs/demo/stream_probs.png``).
3. Prints a FLOPs table: per clip for regular models, per frame for their continual counterparts.

``python -m cozoo.demo --seed N`` repeats it with other training videos, initial weights and stream video;
``--threads N`` sets torch's threads (default 1: the demo's steps are small, and on a shared 2-core machine
two threads made it several times slower).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from cozoo.commands import STEP_THREADS, add_threads_argument, torch_threads
from cozoo.data.synthetic import write_synthetic_stream
from cozoo.data.transforms import eval_transform
from cozoo.data.video import iter_frames
from cozoo.factory import get_config
from cozoo.flops import convention
from cozoo.inference.plots import plot_probabilities
from cozoo.inference.video import FramePrediction
from cozoo.training import finetune, load_config, load_finetuned
from cozoo.training.config import FinetuneConfig
from cozoo.zoo import load_zoo_figures

RECIPE = Path(__file__).resolve().parent.parent / "configs" / "finetune" / "synthetic_x3d.yaml"
PLOT = Path("runs") / "demo" / "stream_probs.png"  # kept after the demo (relative to the working directory)
# The continual model averages its last POOL_WINDOW steps: two training clips (8 steps each), as Co3D's
# longer-window models (e.g. cox3d_s_64) average more than their training clip. Each prediction then stands
# for a 16-step source clip (32 frames: parts of two or three of the stream's independent segments) and, in
# our runs, was steadier across the cuts between segments than with 8. Receptive field: 34 steps.
POOL_WINDOW = 16
# Each segment is an independent 16-frame video of its class, as in training; a class runs for RUN_CLIPS
# segments (144 frames, 72 model steps), over twice the continual model's receptive field, so most
# predictions see one class only (`class_runs` and tests/test_demo.py check it).
RUN_CLIPS = 9
SEGMENTS = [(label, 16) for label in ("growing", "moving_right", "shrinking", "rotating_cw")
            for _ in range(RUN_CLIPS)]
STREAM_SEED = 7  # of the streamed video; ``--seed N`` adds N


def class_runs(segments: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Consecutive segments of one class merged: ``[(class, frames), ...]``."""
    runs: list[tuple[str, int]] = []
    for label, frames in segments:
        if runs and runs[-1][0] == label:
            runs[-1] = (label, runs[-1][1] + frames)
        else:
            runs.append((label, frames))
    return runs


def run_spans(segments: list[tuple[str, int]]) -> list[tuple[int, int, str]]:
    """The video frames of each class run: ``[(first_frame, last_frame, class), ...]`` (for the plot)."""
    spans: list[tuple[int, int, str]] = []
    for label, frames in class_runs(segments):
        start = spans[-1][1] + 1 if spans else 0
        spans.append((start, start + frames - 1, label))
    return spans


def clip_class(truth: Sequence[str], clip_first: int, clip_last: int, sampling_rate: int) -> str | None:
    """The class of the video frames a prediction is about: those its source clip samples (model steps
    ``clip_first .. clip_last``, video frames ``step * sampling_rate``); None when they hold more than one
    class, i.e. the clip straddles a change of class (such a prediction is ambiguous, not scored)."""
    if not 0 <= clip_first <= clip_last or clip_last * sampling_rate >= len(truth):
        raise ValueError(f"source clip steps {clip_first}..{clip_last} (every {sampling_rate} frame(s)) lie "
                         f"outside the {len(truth)} labelled frames")
    classes = {truth[step * sampling_rate] for step in range(clip_first, clip_last + 1)}
    return classes.pop() if len(classes) == 1 else None


@dataclass
class StreamScore:
    """Predictions scored against the class of their source clip's frames (`clip_class`)."""

    predictions: int = 0
    ambiguous: int = 0  # source clip straddles a change of class
    correct: int = 0

    def add(self, truth: str | None, predicted: str) -> str:
        """Count one prediction; returns its verdict: "right", "WRONG" or "ambiguous"."""
        self.predictions += 1
        if truth is None:
            self.ambiguous += 1
            return "ambiguous"
        self.correct += truth == predicted
        return "right" if truth == predicted else "WRONG"

    @property
    def scored(self) -> int:
        return self.predictions - self.ambiguous

    @property
    def rate(self) -> float:
        """Share of the scored (unambiguous) predictions that are right."""
        return self.correct / self.scored if self.scored else 0.0

    def summary(self) -> str:
        return (f"{self.predictions} predictions: {self.ambiguous} have a source clip that straddles a "
                f"change of class (ambiguous, not scored); {self.correct} of the other {self.scored} "
                f"({self.rate:.0%}) name the class of their clip's frames")


def main(argv: Sequence[str] | None = None, overrides: Sequence[str] = (),
         segments: list[tuple[str, int]] = SEGMENTS, plot: Path | None = PLOT) -> StreamScore:
    """Run the demo; returns the stream's score. ``overrides`` (recipe ``key=value``s), ``segments`` and
    ``plot`` let a test run a shortened demo."""
    parser = argparse.ArgumentParser(prog="python -m cozoo.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the training videos, the initial weights and the streamed video")
    add_threads_argument(parser, default=STEP_THREADS)
    args = parser.parse_args(argv)
    with torch_threads(args):
        return _run(args.seed, overrides, segments, plot)


def _run(seed: int, overrides: Sequence[str], segments: list[tuple[str, int]], plot: Path | None
         ) -> StreamScore:
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        # The demo streams a video itself: the recipe's streaming of the validation set is skipped.
        config = load_config(RECIPE, [f"output_dir={tmp}/run", "train.progress=false",
                                      "train.continual_eval=false", f"seed={seed}",
                                      f"data.synthetic.seed={seed}", *overrides])
        print(f"[1/3] fine-tuning {config.model.name} (slim) on generated motion videos ...", flush=True)
        start = time.perf_counter()
        result = finetune(config)
        print(f"      {config.train.epochs} epochs in {time.perf_counter() - start:.0f} s, clip val accuracy "
              f"{result.final_val_acc:.2f}, best {result.best_val_acc:.2f} (chance "
              f"{1 / len(result.label_map):.2f}): the best epoch's weights are streamed")
        model, classes = load_finetuned(result.output_dir / "best.pt", continual=True,
                                        pool_window=POOL_WINDOW)
        score = stream_demo(model, classes, config, Path(tmp), segments, STREAM_SEED + seed, plot)
    _print_flops()
    return score


def stream_demo(model: torch.nn.Module, classes: list[str], config: FinetuneConfig, folder: Path,
                segments: list[tuple[str, int]], seed: int, plot: Path | None) -> StreamScore:
    """Stream a generated video of ``segments`` through the continual ``model``, print every prediction
    with its verdict and the score, check step mode against clip mode and write the plot to ``plot``."""
    data = config.data
    rate = data.sampling_rate
    source = get_config(config.model.name)
    crop = data.test_crop
    transform = eval_transform(crop=crop, mean=source.mean, std=source.std, short_side=crop)
    video, truth = write_synthetic_stream(folder / "demo.mp4", segments, size=data.synthetic.size, seed=seed)
    print(f"[2/3] streaming {video.name}: {len(truth)} frames, every {rate} frame(s) fed to "
          f"co{config.model.name} (receptive field {model.receptive_field} steps; each prediction stands for "
          f"the clip of its source network starting {model.delay} steps back, and is scored against the "
          f"class of that clip's frames)")
    model.eval()
    stream = model.stream()
    frames, outputs, score, start = [], [], StreamScore(), time.perf_counter()
    plotted: list[FramePrediction] = []
    for index, frame in enumerate(iter_frames(video)):
        if index % rate:
            continue
        x = transform(frame.unsqueeze(0))[:, 0].unsqueeze(0)
        frames.append(x)
        prediction = stream.push(x)
        if prediction is None:
            continue
        outputs.append(prediction.logits)
        expected = clip_class(truth, prediction.clip_first, prediction.clip_last, rate)
        probs = prediction.logits.softmax(-1)[0]
        label = classes[int(probs.argmax())]
        verdict = score.add(expected, label)
        first, last = prediction.clip_first * rate, prediction.clip_last * rate
        on_screen = expected or f"{truth[first]}>{truth[last]}"
        plotted.append(FramePrediction(index, len(frames) - 1, prediction.logits[0],
                                       prediction.first_frame * rate, first, last))
        print(f"      frame {index:3d}  clip {first:3d}-{last:3d}: {on_screen:24s} predicted {label:12s} "
              f"p={float(probs.max()):.2f}  {verdict}")
    elapsed = time.perf_counter() - start
    print(f"      {score.summary()}; {len(frames) / elapsed:.0f} frames/s")
    with torch.no_grad():
        clip = model(torch.stack(frames, dim=2))
    gap = (torch.stack(outputs, dim=2) - clip).abs().max().item()
    print(f"      step mode vs clip mode over the same frames: max |difference| {gap:.1e}")
    if plot is not None:
        path = plot_probabilities(plotted, classes, plot, top=len(classes), fps=15.0,
                                  title=f"co{config.model.name} streaming {video.name}",
                                  truth=run_spans(segments))
        print(f"      wrote {path}: class probabilities over time")
    return score


def _print_flops() -> None:
    figures = load_zoo_figures()
    print("[3/3] GMACs at each model's test crop and clip length (the zoo's stored figures, as `cozoo models "
          "--table` prints them; `cozoo flops` counts them live, as tests/test_zoo.py does for x3d_xs):")
    print(f"      {convention('train')}")
    print(f"      {'model':8s} {'per clip':>9s} {'continual per frame':>20s} {'ratio':>7s}")
    for regular_name in ("x3d_xs", "x3d_s", "x3d_m"):
        per_clip = figures[regular_name]["gflops_clip"]
        per_frame = figures[f"co{regular_name}"]["gflops_frame"]
        print(f"      {regular_name:8s} {per_clip:9.3f} {per_frame:20.3f} {per_clip / per_frame:6.1f}x")


if __name__ == "__main__":
    main()
