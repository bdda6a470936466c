import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import torch

import cozoo
from cozoo import registry
from cozoo.labels import class_names
from cozoo.models import registry as model_registry
from cozoo.weights.manifest import (
    ManifestError,
    has_pretrained,
    load_manifest,
    manifest_entry,
    published_figures,
    weights_name,
)

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = json.loads((ROOT / "weights_manifest.json").read_text())
SCHEMA = json.loads((resources.files("cozoo") / "weights" / "schema.json").read_text())
PTV_BASE = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/"

# From ../shared/co3d_results_table.md: file, 30-view top1/top5, GFLOPs, params (PyTorchVideo model zoo),
# and the Co3D paper's 1-clip top-1.
PUBLISHED = {
    "x3d_xs": ("X3D_XS.pyth", 69.12, 88.63, 0.91, 3.79, 59.37),
    "x3d_s": ("X3D_S.pyth", 73.33, 91.27, 2.96, 3.79, 64.71),
    "x3d_m": ("X3D_M.pyth", 75.94, 92.72, 6.72, 3.79, 67.24),
    "x3d_l": ("X3D_L.pyth", 77.44, 93.31, 26.64, 6.15, 69.29),
    "i3d_r50": ("I3D_8x8_R50.pyth", 73.27, 90.70, 37.53, 28.04, 63.98),
    "slow_r50": ("SLOW_8x8_R50.pyth", 74.58, 91.63, 54.52, 32.45, 67.42),
    "slowfast_r50": ("SLOWFAST_8x8_R50.pyth", 76.94, 92.69, 65.71, 34.57, 68.45),
    "slowfast_r50_4x16": ("SLOWFAST_4x16_R50.pyth", 75.34, 91.89, 36.69, 34.48, 67.06),
    "r2plus1d_r50": ("R2PLUS1D_16x4_R50.pyth", 76.01, 92.23, 76.45, 28.11, None),
}


def test_manifest_matches_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(MANIFEST)


def test_schema_rejects_bad_entries():
    validator = jsonschema.Draft202012Validator(SCHEMA)
    entry = MANIFEST["models"]["x3d_xs"]
    bad = [
        {**entry, "format": "onnx"},
        {**entry, "hash": {**entry["hash"], "policy": "sha256"}},  # policy sha256 needs a sha256
        {**entry, "hash": {**entry["hash"], "policy": "sha256_prefix", "sha256_prefix": "XYZ"}},
        {**entry, "source": {**entry["source"], "url": "ftp://example.org/x"}},
        {k: v for k, v in entry.items() if k != "license"},
    ]
    for case in bad:
        assert not validator.is_valid({**MANIFEST, "models": {"x3d_xs": case}})


def test_package_ships_the_top_level_manifest():
    assert load_manifest() == MANIFEST


def test_every_published_variant_has_an_entry():
    expected = set(PUBLISHED) | {"r2plus1d_18", "c3d"}
    assert set(MANIFEST["models"]) == expected
    for name in expected:
        assert name in cozoo.list_models(), name
    assert set(cozoo.list_models(pretrained=True)) >= expected
    assert "cnn_lstm" in cozoo.list_models(pretrained=False)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_pytorchvideo_entries_match_the_published_table(name):
    filename, top1, top5, gflops, params, co3d_top1 = PUBLISHED[name]
    entry = MANIFEST["models"][name]
    assert entry["source"]["filename"] == filename
    assert entry["source"]["url"] == PTV_BASE + filename
    assert entry["format"] == "pytorchvideo"
    assert entry["hash"] == {**entry["hash"], "policy": "unpublished", "sha256": None, "sha256_prefix": None}
    thirty_view = entry["accuracy"][0]
    assert (thirty_view["top1"], thirty_view["top5"], thirty_view["views"]) == (top1, top5, 30)
    assert (entry["gflops"], entry["params_m"]) == (gflops, params)
    one_clip = [rec["top1"] for rec in entry["accuracy"] if rec["views"] == 1 and "model" not in rec]
    assert one_clip == ([co3d_top1] if co3d_top1 is not None else [])


def test_torchvision_and_c3d_entries():
    r2 = MANIFEST["models"]["r2plus1d_18"]
    prefix = re.fullmatch(r"r2plus1d_18-([0-9a-f]{8})\.pth", r2["source"]["filename"]).group(1)
    assert r2["hash"]["policy"] == "sha256_prefix" and r2["hash"]["sha256_prefix"] == prefix
    assert r2["source"]["url"] == "https://download.pytorch.org/models/" + r2["source"]["filename"]
    assert (r2["accuracy"][0]["top1"], r2["accuracy"][0]["top5"], r2["gflops"]) == (67.463, 86.175, 40.519)
    c3d = MANIFEST["models"]["c3d"]
    assert c3d["source"]["url"] is None and c3d["source"]["official"] is False  # import only
    assert (c3d["format"], c3d["dataset"], c3d["num_classes"]) == ("c3d_pickle", "sports1m", 487)


@pytest.mark.parametrize("name", sorted(MANIFEST["models"]))
def test_entry_agrees_with_model_config(name):
    entry, config = MANIFEST["models"][name], registry.get_config(name)
    prep = entry["preprocessing"]
    assert (prep["frames"], prep["sampling_rate"]) == (config.frames, config.sampling_rate)
    assert (prep["train_crop"], prep["test_crop"]) == (config.train_crop, config.test_crop)
    # the publisher's recipe is the config's default
    assert prep.get("target_fps") == config.target_fps
    assert prep["crop_rounding"] == config.crop_rounding
    assert tuple(prep["resize"]) == config.test_resize if "resize" in prep else config.test_resize is None
    assert prep["pixel_scale"] == 255.0
    assert prep["mean"] == pytest.approx(list(config.mean)) and prep["std"] == pytest.approx(list(config.std))
    assert (entry["num_classes"], entry["dataset"]) == (config.num_classes, config.dataset)
    labels = MANIFEST["label_sets"][entry["labels"]]
    assert labels["num_classes"] == entry["num_classes"] == len(class_names(entry["labels"]))
    keys = {c["key"] for c in entry["citations"]}
    assert all(rec["citation"] in keys for rec in entry["accuracy"])


def test_variants_and_continual_models_share_the_checkpoint():
    assert weights_name("r2plus1d_18_8f") == "r2plus1d_18"
    assert manifest_entry("r2plus1d_18_8f")["source"]["filename"] == "r2plus1d_18-91a641e6.pth"
    config = registry.ModelConfig(name="_co_test_x3d", family="x3d", builder=lambda num_classes: None,
                                  frames=4, sampling_rate=12, train_crop=160, test_crop=182, source="x3d_xs")
    registry.register_model(config)
    try:
        assert manifest_entry("_co_test_x3d")["name"] == "x3d_xs"
        assert has_pretrained("_co_test_x3d")
    finally:
        model_registry._REGISTRY.pop(config.name)
    assert manifest_entry("no_such_model") is None and not has_pretrained("cnn_lstm")


def test_model_info_carries_published_figures():
    info = cozoo.model_info("x3d_m")
    assert info["weights"]["gflops"] == 6.72 and info["weights"]["accuracy"][0]["top1"] == 75.94
    figures = published_figures("x3d_m")
    assert figures["params_m"] == 3.79 and figures["citations"][0]["key"] == "feichtenhofer2020x3d"
    assert [r["top1"] for r in figures["accuracy"]] == [75.94, 67.24]  # 30 views; Co3D's 1 clip


@pytest.mark.parametrize(("name", "top1"), [
    ("cox3d_s", 60.18), ("cox3d_s_64", 67.33), ("cox3d_m", 62.80), ("cox3d_m_64", 71.03), ("cox3d_l", 63.03),
    ("cox3d_l_64", 71.61), ("coi3d_r50", 59.58), ("coi3d_r50_64", 56.86), ("coslow_r50", 65.90),
    ("coslow_r50_64", 73.05),
])
def test_continual_models_carry_their_own_published_accuracy(name, top1):
    """The Co3D table's continual accuracies (one frame step, weights transferred from the checkpoint)
    belong to the continual model, not to the regular model whose checkpoint it shares."""
    figures = cozoo.model_info(name)["published"]
    assert [r["top1"] for r in figures["accuracy"]] == [top1] and figures["gflops"] is None
    assert figures["accuracy"][0]["citation"] == "hedegaard2022co3d"
    # measured on the Co3D early output (padded warm-up, step delay): `cozoo eval --modes co3d`
    assert figures["accuracy"][0]["eval_mode"] == "co3d"


def test_a_variant_carries_its_own_figures():
    figures = published_figures("r2plus1d_18_8f")
    assert [(r["top1"], r["gflops"]) for r in figures["accuracy"]] == [(53.52, 20.35)]
    assert figures["gflops"] is None and published_figures("r2plus1d_18")["gflops"] == 40.519


def test_manifest_override_and_errors(tmp_path, monkeypatch):
    custom = tmp_path / "m.json"
    custom.write_text(json.dumps({"schema_version": 1, "label_sets": {},
                                  "models": {"x3d_xs": MANIFEST["models"]["x3d_xs"]}}))
    monkeypatch.setenv("COZOO_MANIFEST", str(custom))
    assert has_pretrained("x3d_xs") and not has_pretrained("x3d_m")
    broken = {**MANIFEST["models"]["x3d_xs"], "hash": {"policy": "md5"}}
    custom.write_text(json.dumps({"models": {"x3d_xs": broken}}))
    with pytest.raises(ManifestError, match=r"'x3d_xs': hash.policy must be one of"):
        manifest_entry("x3d_xs")
    custom.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        manifest_entry("x3d_xs")
    monkeypatch.setenv("COZOO_MANIFEST", str(tmp_path / "missing.json"))
    with pytest.raises(ManifestError, match="cannot be read"):
        manifest_entry("x3d_xs")


def test_renamed_checkpoints_get_batchnorm_counters_they_lack() -> None:
    from cozoo.weights.converters.keys import map_keys

    state = {"bn.running_mean": torch.zeros(2), "bn.running_var": torch.ones(2), "fc.weight": torch.ones(1)}
    out = map_keys(state, lambda key: f"m.{key}", "test")
    assert set(out) == {f"m.{k}" for k in state} | {"m.bn.num_batches_tracked"}
    assert out["m.bn.num_batches_tracked"].dtype == torch.long
    counted = map_keys({**state, "bn.num_batches_tracked": torch.tensor(7)}, lambda key: key, "test")
    assert int(counted["bn.num_batches_tracked"]) == 7  # present ones are kept
