import re

import numpy as np
import pytest
import torch
from torch import nn

from cozoo import registry
from cozoo.models import registry as model_registry
from cozoo.registry import ModelConfig, UnknownModelError


def _tiny_builder(num_classes: int = 400, width: int = 4) -> nn.Module:
    return nn.Sequential(nn.Conv3d(3, width, 1), nn.Flatten(2), nn.Linear(8, num_classes))


@pytest.fixture
def tiny_registered():
    cfg = ModelConfig(name="_tiny_test_model", family="test", builder=_tiny_builder, frames=2,
                      sampling_rate=1, train_crop=2, test_crop=2, num_classes=7)
    registry.register_model(cfg)
    yield cfg
    model_registry._REGISTRY.pop(cfg.name)


def test_create_model_uses_config_and_kwargs(tiny_registered):
    model = registry.create_model("_tiny_test_model", width=5)
    assert model[0].out_channels == 5
    assert model[2].out_features == 7
    assert model.cozoo_config is tiny_registered


def test_unknown_name_lists_close_matches(tiny_registered):
    with pytest.raises(UnknownModelError, match="_tiny_test_model"):
        registry.create_model("_tiny_test_modl")


def test_list_models_wildcard(tiny_registered):
    assert "_tiny_test_model" in registry.list_models("_tiny*")
    assert registry.list_models("_no_such_prefix*") == []
    assert registry.list_models("X3D_S*") == registry.list_models("x3d_s*") == ["x3d_s"]


def test_create_model_refuses_bad_class_counts_and_pretrained_values(tiny_registered):
    for bad in (0, -1, 1.5, "10", True):
        with pytest.raises(ValueError, match=f"num_classes must be a whole number .*, got {bad!r}"):
            registry.create_model("_tiny_test_model", num_classes=bad)
    for bad in (1, "", 2.0):
        message = f"must be True/False or a checkpoint path, got {bad!r}"
        with pytest.raises(ValueError, match=re.escape(message)):
            registry.create_model("_tiny_test_model", pretrained=bad)


def test_config_reports_the_class_count_built(tiny_registered):
    model = registry.create_model("_tiny_test_model", num_classes=np.int64(3), pretrained=None)
    assert model[2].out_features == model.cozoo_config.num_classes == 3
    assert registry.get_config("_tiny_test_model").num_classes == 7


def test_continual_config_reports_the_pool_window_built():
    model = registry.create_model("cox3d_s", pool_window=64)
    assert model.cozoo_config.frames == 64 and model.cozoo_config.name == "cox3d_s"
    assert registry.get_config("cox3d_s").frames == 13


def test_reset_classifier_replaces_only_last_linear(tiny_registered):
    model = registry.create_model("_tiny_test_model")
    conv_weight = model[0].weight.clone()
    registry.reset_classifier(model, 3)
    assert model[2].out_features == 3
    assert torch.equal(model[0].weight, conv_weight)


def test_reset_classifier_without_linear_raises():
    with pytest.raises(ValueError, match="no nn.Linear"):
        registry.reset_classifier(nn.Conv3d(1, 1, 1), 3)


def test_model_info_of_continual_model_has_schedule_and_weights():
    import cozoo

    info = cozoo.model_info("cox3d_s")
    assert info["source"] == "x3d_s" and info["continual"]
    assert info["schedule"]["receptive_field"] == 69 and info["schedule"]["delay"] == 40
    assert info["schedule"]["source_clip"] == 13  # a prediction pools the features of 13 frames
    assert info["weights"]["name"] == "x3d_s"


def test_top_level_to_continual_is_the_converter():
    import cozoo
    from cozoo.continual import ContinualModule

    model = cozoo.to_continual(cozoo.create_model("x3d_xs"))
    assert isinstance(model, ContinualModule) and model.receptive_field == 60


@pytest.mark.parametrize("name", ["x3d_xs", "cox3d_xs"])
def test_pretrained_with_new_num_classes_resets_only_the_classifier(name, tmp_path):
    import cozoo

    torch.manual_seed(0)
    source = cozoo.create_model("x3d_xs")
    path = tmp_path / "x3d_xs_finetuned.pt"
    torch.save(source.state_dict(), path)
    model = cozoo.create_model(name, pretrained=str(path), num_classes=7)
    assert model.head.fc.out_features == 7
    own = model.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("head.fc."):
            assert torch.equal(own[key], value), key


def test_pretrained_from_a_finetuning_checkpoint_keeps_its_classes_or_resets_them(tmp_path):
    """A `cozoo finetune` checkpoint ({"model": ..., "label_map": ...}) of 4 classes: loading it keeps its
    classifier (for its 4 classes, or when no count is asked), or resets only that for other classes."""
    import cozoo

    torch.manual_seed(0)
    trained = cozoo.create_model("late_fusion", num_classes=4, widths=(4, 8)).eval()
    path = tmp_path / "best.pt"
    torch.save({"model": trained.state_dict(), "label_map": {"a": 0, "b": 1, "c": 2, "d": 3}}, path)
    clip = torch.randn(1, 3, 8, 32, 32)
    for num_classes in (4, None):
        model = cozoo.create_model("late_fusion", pretrained=str(path), num_classes=num_classes,
                                   widths=(4, 8)).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(clip), trained(clip))
    other = cozoo.create_model("late_fusion", pretrained=str(path), num_classes=6, widths=(4, 8))
    assert registry.classifier(other)[1].out_features == 6
    head = registry.classifier(trained)[0]
    kept = {k: v for k, v in trained.state_dict().items() if not k.startswith(head)}
    assert all(torch.equal(other.state_dict()[k], v) for k, v in kept.items())


def test_a_published_layout_file_of_other_classes_loads_with_its_class_count(tmp_path):
    """A torchvision-layout R(2+1)D-18 fine-tuned to 10 classes: converted first, then its classifier's
    size is taken, both through create_model(pretrained=...) and through evaluate.load_model."""
    from torchvision.models.video import r2plus1d_18

    import cozoo
    from cozoo.evaluation.evaluate import load_model

    torch.manual_seed(0)
    reference = r2plus1d_18(num_classes=10).eval()
    path = tmp_path / "r2plus1d_18_ten.pth"
    torch.save(reference.state_dict(), path)
    clip = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        expected = reference(clip)
        for model in (cozoo.create_model("r2plus1d_18", pretrained=str(path), num_classes=10).eval(),
                      load_model("r2plus1d_18", checkpoint=path).model):
            torch.testing.assert_close(model(clip), expected, rtol=1e-4, atol=1e-5)
