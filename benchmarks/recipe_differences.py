"""Size of what remains between cozoo's default evaluation and each publisher's, on synthetic videos
(cozoo.data.synthetic) with random weights (randomised batch-norm statistics): no checkpoint or dataset is
needed, so the figures say how far the pipelines are apart, not what accuracy they reach.

    PYTHONPATH=. python benchmarks/recipe_differences.py [--videos 16] [--out benchmarks/results/]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import torch
from torchvision.models.video import R2Plus1D_18_Weights
from tqdm import tqdm

import cozoo
from cozoo.data.synthetic import DEFAULT_CLASSES, render_clip
from cozoo.data.transforms import eval_transform
from cozoo.registry import get_config
from cozoo.training.checkpoint import write_text_atomic
from cozoo.weights.converters import convert_state_dict, load_state_dict_strict

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pytorchvideo.models import hub


def _videos(count: int, frames: int, size: tuple[int, int]) -> list[torch.Tensor]:
    return [torch.from_numpy(render_clip(DEFAULT_CLASSES[i % len(DEFAULT_CLASSES)], frames, size, seed=i))
            for i in range(count)]


def r2plus1d_transform(videos: list[torch.Tensor]) -> dict[str, float]:
    """Normalised inputs: cozoo's recipe vs torchvision's transform, and the aspect-keeping resize it
    replaced vs torchvision's."""
    config = get_config("r2plus1d_18")
    reference = R2Plus1D_18_Weights.KINETICS400_V1.transforms()
    recipe = kept = 0.0
    for video in videos:
        expected = reference(video.permute(0, 3, 1, 2))
        recipe = max(recipe, (eval_transform(config)(video) - expected).abs().max().item())
        kept = max(kept, (eval_transform(config, short_side=128)(video) - expected).abs().max().item())
    return {"max_abs_input_diff_recipe": recipe, "max_abs_input_diff_aspect_kept": kept}


def x3d_head(videos: list[torch.Tensor], name: str) -> dict[str, float]:
    """PyTorchVideo's hub model (windowed head, softmax averaged over windows, as published) against
    cozoo's default (same windows, logits averaged) and cozoo's former global pool, at the test crop."""
    torch.manual_seed(0)
    reference = getattr(hub, name)(pretrained=False)
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    reference.eval()
    state = convert_state_dict("pytorchvideo", "x3d", reference.state_dict())
    windowed, global_pool = cozoo.create_model(name).eval(), cozoo.create_model(name, head_window=None).eval()
    load_state_dict_strict(windowed, state)
    load_state_dict_strict(global_pool, state)
    transform = eval_transform(get_config(name))
    agree_w = agree_g = 0
    prob_w = prob_g = 0.0
    with torch.no_grad():
        for video in tqdm(videos, desc=name, file=sys.stderr):
            clip = transform(video).unsqueeze(0)
            expected = reference(clip)  # probabilities
            ours, old = windowed(clip).softmax(1), global_pool(clip).softmax(1)
            agree_w += int(ours.argmax() == expected.argmax())
            agree_g += int(old.argmax() == expected.argmax())
            prob_w = max(prob_w, (ours - expected).abs().max().item())
            prob_g = max(prob_g, (old - expected).abs().max().item())
    n = len(videos)
    return {"top1_agreement_windows_logit_mean": agree_w / n, "top1_agreement_global_pool": agree_g / n,
            "max_abs_prob_diff_windows_logit_mean": prob_w, "max_abs_prob_diff_global_pool": prob_g}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    wide = _videos(args.videos, 4, (200, 356))  # 16:9, larger than every test crop
    results = {
        "videos": args.videos, "weights": "random (randomised batch-norm statistics)",
        "torch": torch.__version__,
        "r2plus1d_18_transform": r2plus1d_transform(wide),
        "x3d_xs_head_at_182": x3d_head(wide, "x3d_xs"),
    }
    write_text_atomic(args.out / "recipe_differences.json", json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
