"""Do reduced-precision steps keep the fp32 step's predictions? Top-1 agreement on synthetic videos.

A model fine-tuned on the synthetic motion recipe (``configs/finetune/synthetic_x3d.yaml``) streams
validation videos it never saw (the recipe's generator, another seed) through a `StreamPool`, all videos
at once, one slot each, in fp32 and in each reduced precision; every prediction's top-1 class is compared
with the fp32 step's prediction for the same frame, and with the video's class.

    # CPU: fine-tune, then write the videos and a copy of the checkpoint into DIR
    cozoo finetune configs/finetune/synthetic_x3d.yaml output_dir=RUN
    python benchmarks/precision_agreement.py prepare --checkpoint RUN/best.pt --out DIR
    # the device: stream them in every precision
    python benchmarks/precision_agreement.py measure --data DIR --device cuda --out agreement.json
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cozoo  # noqa: E402
from benchmarks.streams import PRECISIONS, precision  # noqa: E402
from cozoo.data.synthetic import write_synthetic_stream  # noqa: E402
from cozoo.data.transforms import eval_transform  # noqa: E402
from cozoo.data.video import iter_frames  # noqa: E402
from cozoo.factory import get_config  # noqa: E402
from cozoo.inference.pool import StreamPool  # noqa: E402
from cozoo.inference.video import FrameTransform  # noqa: E402
from cozoo.training.checkpoint import load_checkpoint, write_text_atomic  # noqa: E402
from cozoo.training.config import FinetuneConfig  # noqa: E402
from cozoo.training.data import clip_settings  # noqa: E402
from cozoo.training.loop import load_finetuned  # noqa: E402


def prepare(checkpoint: Path, out: Path, videos_per_class: int, segments: int, seed: int) -> None:
    """Copy the checkpoint and write ``videos_per_class`` unseen videos of each of its classes, each made of
    ``segments`` independent motions of that class as long as the recipe's videos (a motion's speed
    depends on its length: longer ones would be slower than anything the model saw)."""
    state = load_checkpoint(checkpoint)
    config = FinetuneConfig.from_dict(state["config"], validate=False)
    if config.data.synthetic is None:
        raise ValueError(f"{checkpoint} was not fine-tuned on the synthetic recipe")
    size, frames = config.data.synthetic.size, config.data.synthetic.frames
    (out / "videos").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, out / "model.pt")
    listing = []
    for label in sorted(state["label_map"]):
        for i in range(videos_per_class):
            path = out / "videos" / f"{label}_{i:03d}.mp4"
            video_seed = seed + i * 1000 + state["label_map"][label]
            write_synthetic_stream(path, [(label, frames)] * segments, size=size, seed=video_seed)
            listing.append({"path": path.name, "label": label})
    (out / "videos.json").write_text(json.dumps(listing, indent=1) + "\n")


def load_videos(data: Path, config: FinetuneConfig) -> tuple[torch.Tensor, list[str], int]:
    """Every video's model inputs (V, T, 3, crop, crop) (every ``sampling_rate``-th frame, the recipe's
    test transform), their classes and the sampling rate."""
    clips = clip_settings(config.data, get_config(config.model.name))
    transform = FrameTransform(eval_transform(crop=clips.test_crop, mean=clips.mean, std=clips.std,
                                              short_side=clips.test_short_side))
    listing = json.loads((data / "videos.json").read_text())
    videos = []
    for item in listing:
        frames = [transform(frame)[0] for i, frame in enumerate(iter_frames(data / "videos" / item["path"]))
                  if i % clips.sampling_rate == 0]
        videos.append(torch.stack(frames))
    length = min(len(v) for v in videos)
    return torch.stack([v[:length] for v in videos]), [item["label"] for item in listing], clips.sampling_rate


def stream_all(model: torch.nn.Module, videos: torch.Tensor, cuda_graphs: bool) -> torch.Tensor:
    """Top-1 class of every step (-1 where the stream gives no output), (V, T), one pool slot per video."""
    pool = StreamPool(model, capacity=len(videos), cuda_graphs=cuda_graphs)
    ids = [pool.open() for _ in range(len(videos))]
    top1 = torch.full(videos.shape[:2], -1, dtype=torch.long)
    for t in range(videos.shape[1]):
        out = pool.push({stream_id: videos[i, t] for i, stream_id in enumerate(ids)})
        for i, stream_id in enumerate(ids):
            prediction = out[stream_id]
            if prediction is not None:
                top1[i, t] = int(prediction.logits.argmax(-1))
    return top1


def measure(data: Path, device: torch.device, precisions: list[str]) -> dict[str, Any]:
    state = load_checkpoint(data / "model.pt")
    config = FinetuneConfig.from_dict(state["config"], validate=False)
    base, classes = load_finetuned(data / "model.pt", continual=True)
    videos, labels, rate = load_videos(data, config)
    targets = torch.tensor([classes.index(label) for label in labels])
    cuda = device.type == "cuda"
    top1: dict[str, torch.Tensor] = {}
    for name in precisions:
        with precision(name) as dtype:
            model = copy.deepcopy(base).to(device=device, dtype=dtype).eval()
            top1[name] = stream_all(model, videos.to(device=device, dtype=dtype), cuda_graphs=cuda)
    reference = top1["fp32"]
    emitted = reference >= 0
    result: dict[str, Any] = {
        "model": config.model.name, "model_kwargs": config.model.kwargs, "classes": classes,
        "videos": len(videos), "steps_per_video": videos.shape[1], "sampling_rate": rate,
        "predictions": int(emitted.sum()), "precisions": {},
    }
    for name, got in top1.items():
        if not torch.equal(got >= 0, emitted):
            raise RuntimeError(f"{name} emitted outputs on other steps than fp32")
        result["precisions"][name] = {
            "agreement_with_fp32": float((got[emitted] == reference[emitted]).float().mean()),
            "disagreements": int((got[emitted] != reference[emitted]).sum()),
            "accuracy": float((got == targets[:, None])[emitted].float().mean()),
        }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="copy a fine-tuned checkpoint and write unseen validation videos")
    prep.add_argument("--checkpoint", type=Path, required=True)
    prep.add_argument("--out", type=Path, required=True)
    prep.add_argument("--videos-per-class", type=int, default=32)
    prep.add_argument("--segments", type=int, default=8, help="motions (recipe-length videos) per video")
    prep.add_argument("--seed", type=int, default=1_000_000, help="far from the recipe's training seeds")
    meas = sub.add_parser("measure", help="stream the videos in every precision and compare top-1")
    meas.add_argument("--data", type=Path, required=True)
    meas.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    meas.add_argument("--precisions", default="fp32,tf32,bf16,fp16")
    meas.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.checkpoint, args.out, args.videos_per_class, args.segments, args.seed)
        return
    precisions = args.precisions.split(",")
    for name in precisions:
        if name not in PRECISIONS:
            parser.error(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
    if "fp32" not in precisions:
        precisions.insert(0, "fp32")
    device = torch.device(args.device)
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "versions": {"python": platform.python_version(), "torch": torch.__version__,
                           "cozoo": cozoo.__version__},
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              **measure(args.data, device, precisions)}
    write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["precisions"], indent=1))


if __name__ == "__main__":
    main()
