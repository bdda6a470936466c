"""The streams-per-device and precision-agreement benchmarks (benchmarks/streams.py, precision_agreement.py):
tiny crops on CPU, no timing assertions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import cozoo
from cozoo.data.kinetics import build_label_map
from cozoo.training.checkpoint import FORMAT
from cozoo.training.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def benchmarks(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import precision_agreement, streams

    return streams, precision_agreement


def test_precision_sets_tf32_only_for_tf32_and_restores_it(benchmarks) -> None:
    streams, _ = benchmarks
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with streams.precision("tf32") as dtype:
        assert dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32
    with streams.precision("fp32"):
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    with streams.precision("bf16") as dtype:
        assert dtype == torch.bfloat16
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        with streams.precision("int8"):
            pass


def test_streams_table_counts_capacities_that_keep_up(benchmarks, one_thread, tmp_path: Path) -> None:
    streams, _ = benchmarks
    out = tmp_path / "streams.json"
    streams.main(["--device", "cpu", "--models", "x3d_xs", "--crop", "32", "--capacities", "1,2",
                  "--precisions", "fp32,bf16", "--seconds", "0.01", "--quiet", "--out", str(out)])
    result = json.loads(out.read_text())
    assert not list(tmp_path.glob("*.tmp"))
    assert [(e["model"], e["precision"]) for e in result["results"]] == [("cox3d_xs", "fp32"),
                                                                         ("cox3d_xs", "bf16")]
    for entry in result["results"]:
        assert "error" not in entry, entry
        assert entry["push_budget_ms"] == pytest.approx(1e3 * entry["sampling_rate"] / 30)
        rows = entry["capacities"]
        assert all(row["frames_per_s"] > 0 for row in rows.values())
        fitting = [int(c) for c, row in rows.items() if row["ms_per_push"] <= entry["push_budget_ms"]]
        assert entry["realtime_streams"] == max(fitting, default=0)
        assert ("stopped" in entry) == (len(rows) < 2 or rows["2"]["ms_per_push"] > entry["push_budget_ms"])


def _synthetic_checkpoint(path: Path) -> list[str]:
    """A slim X3D-XS with random weights saved as the synthetic recipe's fine-tuning checkpoint."""
    recipe = load_config(ROOT / "configs" / "finetune" / "synthetic_x3d.yaml")
    classes = list(recipe.data.synthetic.classes)
    torch.manual_seed(0)
    model = cozoo.create_model("x3d_xs", num_classes=len(classes), **recipe.model.kwargs).eval()
    torch.save({"format": FORMAT, "model": model.state_dict(), "label_map": build_label_map(classes),
                "config": recipe.as_dict()}, path)
    return classes


def test_agreement_streams_every_video_as_a_lone_stream_would(benchmarks, one_thread, tmp_path: Path) -> None:
    """Prepared videos decode to the recipe's inputs; the pool's top-1 per step equals each video streamed
    alone; fp32 agrees with itself and a reduced precision is scored on the same predictions."""
    _, agreement = benchmarks
    classes = _synthetic_checkpoint(tmp_path / "best.pt")
    data = tmp_path / "data"
    agreement.prepare(tmp_path / "best.pt", data, videos_per_class=1, segments=4, seed=5)
    listing = json.loads((data / "videos.json").read_text())
    assert sorted(item["label"] for item in listing) == sorted(classes)

    model, _ = agreement.load_finetuned(data / "model.pt", continual=True)
    config = agreement.FinetuneConfig.from_dict(agreement.load_checkpoint(data / "model.pt")["config"])
    videos, labels, rate = agreement.load_videos(data, config)
    assert rate == 2 and videos.shape == (len(classes), 4 * 16 // 2, 3, 28, 28)
    pooled = agreement.stream_all(model, videos, cuda_graphs=False)
    for i, video in enumerate(videos):
        stream = model.stream()
        alone = [stream.push(frame[None]) for frame in video]
        assert [-1 if p is None else int(p.logits.argmax(-1)) for p in alone] == pooled[i].tolist()

    result = agreement.measure(data, torch.device("cpu"), ["fp32", "bf16"])
    assert result["predictions"] == int((pooled >= 0).sum()) > 0
    assert result["precisions"]["fp32"] == {**result["precisions"]["fp32"], "agreement_with_fp32": 1.0,
                                            "disagreements": 0}
    bf16 = result["precisions"]["bf16"]
    assert bf16["agreement_with_fp32"] == pytest.approx(1 - bf16["disagreements"] / result["predictions"])


def test_before_after_table_pairs_each_models_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`benchmarks/before_after.py` merges each side's per-model runs and tabulates speed-up over the clip
    (the faster clip timing) and its ratio to the FLOPs reduction."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import before_after

    def run(step: float, clip: float, again: float) -> dict:
        modes = {"step": {"latency_ms": step}, "clip": {"latency_ms": clip, "latency_repeat_ms": again}}
        entry = {"continual_name": "cox3d_s", "flops": {"reduction": 10.0}, "modes": modes}
        return {"date": "d", "device": {"type": "cpu"}, "versions": {"torch": "t"},
                "settings": {"models": ["x3d_s"]}, "models": {"x3d_s": entry}}

    for side, result in (("before", run(20.0, 100.0, 90.0)), ("after", run(10.0, 95.0, 99.0))):
        (tmp_path / side / "x3d_s").mkdir(parents=True)
        (tmp_path / side / "x3d_s" / "cpu.json").write_text(json.dumps(result))
        before_after.merge_side(tmp_path, side, ["x3d_s"])
        assert not (tmp_path / side).exists()
    sides = [json.loads((tmp_path / f"cpu_{side}.json").read_text()) for side in ("before", "after")]
    row = before_after.table(*sides).splitlines()[-1]
    assert row == "| cox3d_s | 20.0 | 10.0 | 90.0 / 95.0 | 4.50 | 9.50 | 10.00 | 0.45 | 0.95 |"
