"""timm's features/heads interface on every family, regular and continual: forward_head(forward_features(x))
is forward(x); pre-logits features are the classifier's input; num_classes=0 gives them out; a features
stream equals clip mode's pre-logits features on the frames it stamps."""

import pytest
import torch
from helpers import randomise_batchnorm
from torch import nn

import cozoo
from cozoo.continual import timing, to_continual
from cozoo.models.resnet3d import create_resnet3d

# (name, builder kwargs, clip (T, size)); tiny widths where the builder takes them
FAMILIES = {
    "x3d": ("x3d_xs", {"width_factor": 0.5, "depth_factor": 0.3, "head_width": 24}, (4, 32)),
    "resnet3d": ("i3d_r50", {}, (8, 32)),
    "r2plus1d": ("r2plus1d_18", {}, (8, 32)),
    "slowfast": ("slowfast_r50", {}, (32, 32)),
    "c3d": ("c3d", {}, (16, 112)),
    "late_fusion": ("late_fusion", {"widths": (8, 16)}, (4, 32)),
    "early_fusion": ("early_fusion", {"widths": (8, 16), "frames": 3}, (4, 32)),
    "cnn_lstm": ("cnn_lstm", {"widths": (8, 16), "hidden_size": 12}, (4, 32)),
    "cnn_lstm_m2m": ("cnn_lstm", {"widths": (8, 16), "hidden_size": 12, "many_to_many": True}, (4, 32)),
}
STREAMED = ["x3d", "resnet3d", "slowfast", "late_fusion", "cnn_lstm", "cnn_lstm_m2m"]
# CoC3D's first clip-mode output needs 78 frames of 112 x 112 (over a minute on one core): its split is the
# regular C3D's (tested above) through the same container code as the others.
CONTINUAL = [family for family in FAMILIES if family != "c3d"]


def _regular(family: str, num_classes: int = 5) -> nn.Module:
    name, kwargs, _ = FAMILIES[family]
    torch.manual_seed(0)
    model = cozoo.create_model(name, num_classes=num_classes, **kwargs)
    randomise_batchnorm(model)
    return model.eval()


def _clip(family: str, frames: int | None = None) -> torch.Tensor:
    _, _, (t, size) = FAMILIES[family]
    return torch.randn(1, 3, frames or t, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("family", list(FAMILIES))
@torch.no_grad()
def test_regular_features_and_head(family):
    model = _regular(family)
    x = _clip(family)
    features = model.forward_features(x)
    torch.testing.assert_close(model.forward_head(features), model(x), rtol=0, atol=0)
    pre = model.forward_head(features, pre_logits=True)
    classifier = model.get_classifier()
    expected = classifier(pre.transpose(1, -1)).transpose(1, -1) if pre.dim() == 3 else classifier(pre)
    torch.testing.assert_close(expected, model(x))  # the classifier's input, independently applied
    assert pre.shape[1] == model.num_features
    # num_classes=0 at creation: the same weights give the pre-logits features
    name, kwargs, _ = FAMILIES[family]
    headless = cozoo.create_model(name, num_classes=0, **kwargs).eval()
    assert headless.num_classes == 0 and not any(isinstance(m, nn.Linear) and m is headless.get_classifier()
                                                 for m in headless.modules())
    headless.load_state_dict({k: v for k, v in model.state_dict().items()
                              if not k.startswith(model.classifier_name + ".")})
    torch.testing.assert_close(headless(x), pre)
    # reset_classifier: a fresh classifier of another width, features unchanged
    model.reset_classifier(7)
    assert model(x).shape[1] == 7 and model.num_classes == 7
    torch.testing.assert_close(model.forward_head(features, pre_logits=True), pre)


def test_num_classes_out_of_range_is_refused():
    with pytest.raises(ValueError, match="num_classes must be a whole number >= 0"):
        cozoo.create_model("x3d_xs", num_classes=-1)
    with pytest.raises(ValueError, match="num_classes must be a whole number >= 0"):
        _regular("x3d").reset_classifier(-2)


@pytest.mark.parametrize("family", CONTINUAL)
@torch.no_grad()
def test_continual_features_and_head(family):
    model = to_continual(_regular(family), pool_window=FAMILIES[family][2][0]).eval()
    x = _clip(family, model.first_output + 2 * model.stride + 1)
    features = model.forward_features(x)
    torch.testing.assert_close(model.forward_head(features), model(x), rtol=0, atol=0)
    pre = model.forward_head(features, pre_logits=True)
    assert pre.shape[:2] == (1, model.num_features) and pre.shape[2] == model(x).shape[2]
    model.reset_classifier(0)
    torch.testing.assert_close(model(x), pre)


@pytest.mark.parametrize("family", STREAMED)
@torch.no_grad()
def test_stream_features_equal_clip_features_on_stamped_frames(family):
    model = to_continual(_regular(family), pool_window=FAMILIES[family][2][0]).eval()
    steps = model.first_output + 2 * model.stride + 1
    x = _clip(family, steps)
    clip = model.forward_head(model.forward_features(x), pre_logits=True)  # (1, F, outputs)
    stream = model.stream(features=True)
    predictions = [p for p in (stream.push(x[:, :, t]) for t in range(steps)) if p is not None]
    assert [p.frame_index for p in predictions] == list(range(model.first_output, steps, model.stride))
    recurrent = timing(model).recurrent  # its source clip is every frame so far
    assert all(p.logits is None and p.clip_first == (0 if recurrent else p.frame_index - model.delay)
               for p in predictions)
    stacked = torch.stack([p.features for p in predictions], dim=2)
    torch.testing.assert_close(stacked, clip, rtol=1e-4, atol=1e-5)
    # the logits stream of the same model is the classifier applied to those features
    plain = model.stream()
    logits = [p.logits for p in (plain.push(x[:, :, t]) for t in range(steps)) if p is not None]
    torch.testing.assert_close(torch.stack(logits, 2), model(x), rtol=1e-4, atol=1e-5)


def test_features_stream_needs_a_zoo_model():
    from cozoo.continual import CoSequential, Stream

    plain = to_continual(nn.Sequential(nn.Conv3d(3, 4, 1))).eval()
    assert isinstance(plain, CoSequential)
    with pytest.raises(TypeError, match="no forward_step_features"):
        Stream(plain, features=True)


def test_head_split_of_a_custom_resnet():
    model = create_resnet3d(num_classes=3, stem_temporal_kernel=1, conv_a_temporal_kernels=((1,),) * 4,
                            depths=(1, 1, 1, 1), stem_width=4).eval()
    x = torch.randn(2, 3, 2, 32, 32)
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, 4 * 8 * 4, 2, 1, 1)
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), model(x))
