import pytest
import torch
import torch.nn.functional as F

from cozoo.registry import create_model, get_config
from cozoo.weights.converters import CheckpointMismatchError, convert_state_dict, load_state_dict_strict

# The port's layers: (name, weight shape) with fc6 a Linear over 512*1*4*4 features.
PORT_SHAPES = {
    "conv1": (64, 3, 3, 3, 3),
    "conv2": (128, 64, 3, 3, 3),
    "conv3a": (256, 128, 3, 3, 3),
    "conv3b": (256, 256, 3, 3, 3),
    "conv4a": (512, 256, 3, 3, 3),
    "conv4b": (512, 512, 3, 3, 3),
    "conv5a": (512, 512, 3, 3, 3),
    "conv5b": (512, 512, 3, 3, 3),
    "fc6": (4096, 8192),
    "fc7": (4096, 4096),
    "fc8": (487, 4096),
}


def _port_state_dict() -> dict[str, torch.Tensor]:
    """Random weights in the port's layout, scaled (He-style) so activations keep a sensible size."""
    state = {}
    for name, shape in PORT_SHAPES.items():
        fan_in = torch.tensor(shape[1:]).prod().item()
        state[f"{name}.weight"] = torch.randn(shape) * (2.0 / fan_in) ** 0.5
        state[f"{name}.bias"] = torch.randn(shape[0]) * 0.01
    return state


def _port_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The port's eval-mode forward, written layer by layer, returning the logits before its softmax."""

    def conv(h: torch.Tensor, name: str) -> torch.Tensor:
        return F.relu(F.conv3d(h, state[f"{name}.weight"], state[f"{name}.bias"], padding=1))

    h = F.max_pool3d(conv(x, "conv1"), (1, 2, 2), (1, 2, 2))
    h = F.max_pool3d(conv(h, "conv2"), 2, 2)
    h = F.max_pool3d(conv(conv(h, "conv3a"), "conv3b"), 2, 2)
    h = F.max_pool3d(conv(conv(h, "conv4a"), "conv4b"), 2, 2)
    h = F.max_pool3d(conv(conv(h, "conv5a"), "conv5b"), 2, 2, padding=(0, 1, 1))
    h = h.view(-1, 8192)
    h = F.relu(F.linear(h, state["fc6.weight"], state["fc6.bias"]))
    h = F.relu(F.linear(h, state["fc7.weight"], state["fc7.bias"]))
    return F.linear(h, state["fc8.weight"], state["fc8.bias"])


def test_matches_functional_port_after_conversion():
    torch.manual_seed(0)
    state = _port_state_dict()
    model = create_model("c3d").eval()
    load_state_dict_strict(model, convert_state_dict("c3d_pickle", "c3d", state))
    clip = torch.rand(1, 3, 16, 112, 112) * 255 - 100
    with torch.no_grad():
        expected, got = _port_forward(state, clip), model(clip)
    assert got.shape == (1, 487)
    assert expected.std() > 1e-2
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 1e-5 * scale


def test_parameter_count():
    expected = sum(torch.Size(s).numel() + s[0] for s in PORT_SHAPES.values())
    assert expected == 79_991_015
    assert sum(p.numel() for p in create_model("c3d").parameters()) == expected


def test_config():
    cfg = get_config("c3d")
    assert (cfg.frames, cfg.train_crop, cfg.test_crop, cfg.num_classes) == (16, 112, 112, 487)
    # Normalisation (x / 255 - mean) / std must give back raw 0-255 values.
    assert all(abs((0.5 - m) / s - 127.5) < 1e-9 for m, s in zip(cfg.mean, cfg.std, strict=True))


def test_converter_strict():
    state = {k: torch.zeros(1) for k in ("conv1.weight", "conv1.bias", "fc9.weight")}
    with pytest.raises(CheckpointMismatchError, match=r"fc9\.weight"):
        convert_state_dict("c3d_pickle", "c3d", state)
    model = create_model("c3d")
    partial = {k: v for k, v in model.state_dict().items() if k != "conv2.bias"}
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): conv2\.bias"):
        load_state_dict_strict(model, convert_state_dict("c3d_pickle", "c3d", partial))
    partial["conv2.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointMismatchError, match=r"conv2\.bias: checkpoint \(7,\)"):
        load_state_dict_strict(model, convert_state_dict("c3d_pickle", "c3d", partial))


def test_port_state_dict_loads_as_is():
    """Same names and shapes as the port: a plain strict load_state_dict works without conversion."""
    torch.manual_seed(0)
    create_model("c3d").load_state_dict(_port_state_dict(), strict=True)


def test_wrong_frame_size_is_named_in_clip_and_step_mode():
    """fc6 fixes C3D's input to 112 x 112 frames: other sizes fail at the flatten, saying so (not in fc6)."""
    needs = r"C3D needs 112 x 112 frames \(16 per clip\): the flattened maps should be"
    with torch.no_grad():
        with pytest.raises(ValueError, match=needs + r" \(512, 1, 4, 4\), got \(512, 1, 3, 3\)"):
            create_model("c3d")(torch.zeros(1, 3, 16, 64, 64))
        continual = create_model("coc3d").eval()
        with pytest.raises(ValueError, match=needs + r" \(512, 4, 4\), got \(512, 3, 3\)"):
            continual(torch.zeros(1, 3, continual.first_output + 1, 64, 64))
        with pytest.raises(ValueError, match=needs):
            for _ in range(continual.first_output + 1):
                continual.forward_step(torch.zeros(1, 3, 64, 64))
