"""End to end: fine-tune a slim X3D on generated videos (CPU), clearly above chance; the continual model
streams the validation videos from the same weights."""

import json

import torch

from cozoo.training import load_checkpoint, load_config, load_finetuned
from cozoo.training.loop import finetune

RECIPE = "configs/finetune/synthetic_x3d.yaml"


def test_synthetic_recipe_learns_and_streams(tmp_path):
    config = load_config(RECIPE, [f"output_dir={tmp_path}", "train.progress=false"])
    caller_state = torch.get_rng_state()
    result = finetune(config)
    assert torch.equal(torch.get_rng_state(), caller_state)  # the run leaves the global RNG alone

    chance = 1 / len(result.label_map)
    assert len(result.label_map) == 4 and len(result.metrics) == config.train.epochs
    assert result.final_val_acc >= 2 * chance, result.metrics[-1]
    assert result.best_val_acc >= result.final_val_acc
    assert result.metrics[-1]["train_loss"] < result.metrics[0]["train_loss"]

    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records[:-1]] == list(range(1, config.train.epochs + 1))
    continual = records[-1]
    assert continual["event"] == "continual_eval" and continual == result.continual
    assert continual["continual_videos"] == 32 and 0.0 <= continual["continual_val_acc"] <= 1.0
    print(f"val acc {result.final_val_acc:.3f} (best {result.best_val_acc:.3f}), "
          f"continual streaming acc {continual['continual_val_acc']:.3f}")

    best = load_checkpoint(tmp_path / "best.pt")
    assert best["best_val_acc"] == result.best_val_acc
    assert max(r["val_acc"] for r in records[:-1]) == result.best_val_acc
    regular, classes = load_finetuned(tmp_path / "last.pt")
    continual_model, same_classes = load_finetuned(tmp_path / "last.pt", continual=True)
    assert classes == same_classes == sorted(result.label_map)
    # Same weights: the continual model in clip mode with the source's padding is the regular model.
    continual_model.set_source_padding(True)
    clip = torch.randn(2, 3, 8, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(continual_model(clip).flatten(1), regular(clip), rtol=1e-4, atol=1e-5)
