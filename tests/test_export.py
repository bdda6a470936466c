"""ONNX export of every continual model's step: onnxruntime (CPU) against the eager PyTorch step, from
frame 0 (warm-up included), batch 1 and 3 from one dynamic-batch export; final state tensors too."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import randomise_batchnorm
from torch import nn

import cozoo
from cozoo.export.onnx import export_onnx
from cozoo.export.step import ExportError, StateLayout
from cozoo.fuse import fuse_conv_bn
from cozoo.runtime import MetadataError, OnnxStepper

CONTINUAL = cozoo.list_models("co*")
FRAME_SIZE = {"coc3d": 112}  # C3D's fc6 fixes its input size
# Quick ones run with `-m "not slow"`; CI runs them all. Together: a per-frame CNN, a recurrent head, a
# residual network with a temporal stride (two phases) and X3D.
QUICK = {"colate_fusion", "cocnn_lstm", "cox3d_xs", "coi3d_r50"}


def _session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run_onnx(session, metadata, frames):
    """Step ``frames`` (T, N, 3, H, W) through the session from initial state; (valid, logits) per step
    and the final state by name."""
    state = {s["name"]: np.full([frames.shape[1] if d is None else d for d in s["shape"]], s["initial"],
                                dtype=s["dtype"]) for s in metadata["state"]}
    names = [o.name for o in session.get_outputs()]
    steps = []
    for frame in frames:
        out = dict(zip(names, session.run(None, {"frame": frame.numpy(), **state}), strict=True))
        state = {s["name"]: out[s["output"]] for s in metadata["state"]}
        steps.append((bool(out["valid"]), out["logits"]))
    return steps, state


def _close(actual, expected, what):
    scale = max(float(np.abs(expected).max()), 1e-6)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale, err_msg=what)


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in QUICK else [pytest.mark.slow])
                                  for n in CONTINUAL])
def test_exported_step_equals_eager_step(name, tmp_path, one_thread):
    torch.manual_seed(0)
    model = cozoo.create_model(name, num_classes=5)
    randomise_batchnorm(model)
    model = fuse_conv_bn(model.eval())  # as cozoo export does by default; both sides run this model
    size = FRAME_SIZE.get(name, 32)
    exported = export_onnx(model, tmp_path, name, size, dynamic_batch=True, progress=False)
    metadata = json.loads(exported.metadata_path.read_text())
    assert metadata["schedule"]["first_output"] == model.first_output
    assert metadata["phases"]["count"] == model.stride
    session = _session(exported.onnx_path)
    steps = model.first_output + 2 * model.stride + 1
    layout = StateLayout(model)
    for batch in (1, 3):
        frames = torch.randn(steps, batch, 3, size, size)
        onnx_steps, onnx_state = _run_onnx(session, metadata, frames)
        model.reset()
        with torch.no_grad():
            eager = [model.forward_step(frame) for frame in frames]
        assert [v for v, _ in onnx_steps] == [e is not None for e in eager]
        assert sum(e is not None for e in eager) == 3
        for t, ((_, logits), expected) in enumerate(zip(onnx_steps, eager, strict=True)):
            if expected is not None:
                _close(logits, expected.numpy(), f"{name} batch {batch} step {t}")
        for tensor, value in zip(layout.tensors, layout.read(), strict=True):
            _close(onnx_state[tensor.name], value.numpy(), f"{name} batch {batch} state {tensor.name}")


def test_metadata_describes_the_graph(tmp_path):
    model = cozoo.create_model("colate_fusion", num_classes=3, widths=(4, 8)).eval()
    exported = export_onnx(model, tmp_path, "tiny", 16, batch=2, class_names=["a", "b", "c"],
                           weights={"source": "here", "sha256": "0" * 64}, progress=False)
    metadata = json.loads(exported.metadata_path.read_text())
    assert metadata["labels"] == ["a", "b", "c"] and metadata["batch"] == 2
    assert metadata["inputs"][0] == {"name": "frame", "shape": [2, 3, 16, 16], "dtype": "float32"}
    assert [s["name"] for s in metadata["state"]] == ["state.step", "state.pool.cache"]
    assert all(s["initial"] == 0 for s in metadata["state"])
    assert metadata["schedule"] == {"receptive_field": 8, "temporal_padding": 0, "delay": 7,
                                    "first_output": 7, "stride": 1, "source_clip": 8, "recurrent": False}
    assert metadata["opset"] == 18 and metadata["weights"]["sha256"] == "0" * 64
    assert not list(tmp_path.glob(".*tmp"))  # written atomically: no temporary left
    stepper = OnnxStepper(exported.onnx_path, threads=1)
    with pytest.raises(ValueError, match=r"expected a frame of shape \(2, 3, 16, 16\), got \(1, 3, 16, 16\)"):
        stepper.step(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(TypeError, match="frames must be float32.*float64"):
        stepper.step(np.zeros((2, 3, 16, 16)))
    with pytest.raises(TypeError, match="numpy array"):
        stepper.step([[0.0]])


def test_runner_refuses_metadata_that_does_not_match_the_onnx_file(tmp_path):
    model = cozoo.create_model("colate_fusion", num_classes=3, widths=(4, 8)).eval()
    exported = export_onnx(model, tmp_path, "tiny", 16, progress=False)
    metadata = json.loads(exported.metadata_path.read_text())
    metadata["inputs"][0]["shape"] = [1, 3, 32, 32]
    exported.metadata_path.write_text(json.dumps(metadata))
    with pytest.raises(MetadataError, match=r"input 'frame' is tensor\(float\) \[1, 3, 16, 16\] in the ONNX "
                       r"file but float32 \[1, 3, 32, 32\] in the metadata"):
        OnnxStepper(exported.onnx_path)
    metadata["inputs"] = metadata["inputs"][:1] + metadata["inputs"][2:]
    exported.metadata_path.write_text(json.dumps(metadata))
    with pytest.raises(MetadataError, match="does not match the ONNX file's inputs.*lacks"):
        OnnxStepper(exported.onnx_path)
    exported.metadata_path.write_text("{}")
    with pytest.raises(MetadataError, match="not a cozoo export metadata file"):
        OnnxStepper(exported.onnx_path)
    exported.metadata_path.unlink()
    with pytest.raises(FileNotFoundError, match="metadata file not found"):
        OnnxStepper(exported.onnx_path)


def test_unexportable_models_are_refused_clearly(tmp_path):
    with pytest.raises(ExportError, match="not a continual model.*to_continual"):
        export_onnx(cozoo.create_model("x3d_xs").eval(), tmp_path, "x", 32, progress=False)
    with pytest.raises(ExportError, match="training mode"):
        export_onnx(cozoo.create_model("colate_fusion", widths=(4,)), tmp_path, "x", 32, progress=False)
    model = cozoo.create_model("colate_fusion", num_classes=3, widths=(4, 8)).eval()
    with pytest.raises(ExportError, match="float32 model on the CPU"):
        export_onnx(model.double(), tmp_path, "x", 16, progress=False)

    class Unexportable(nn.Module):  # data-dependent Python control flow: torch.export cannot trace it
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    model = cozoo.continual.to_continual(nn.Sequential(nn.Conv3d(3, 4, (2, 1, 1)), nn.ReLU())).eval()
    model[1].__class__ = type("CoOdd", (type(model[1]),), {"forward": Unexportable.forward})
    with pytest.raises(ExportError, match=r"\(phase 0 of 1\): torch.onnx.export failed: "):
        export_onnx(model, tmp_path, "odd", 8, progress=False)
    assert not list(tmp_path.glob("odd*"))


def test_stream_state_names_the_state_batch_first_and_refuses_other_names():
    model = cozoo.create_model("cocnn_lstm", num_classes=3, widths=(4, 8), hidden_size=6).eval()
    with torch.no_grad():
        for _ in range(2):
            model.forward_step(torch.randn(5, 3, 16, 16))
    layout = StateLayout(model)
    assert [(t.name, t.shape) for t in layout.tensors] == [("state.lstm.h", (5, 1, 6)),
                                                          ("state.lstm.c", (5, 1, 6))]
    h, c = layout.read()
    torch.testing.assert_close(h.transpose(0, 1), model.lstm.__dict__["_hc"][0])
    with pytest.raises(KeyError, match=r"CoFrameLSTM holds state \['c', 'h'\], got \['h'\]"):
        model.lstm.load_stream_state({"h": h})
    layout.load([torch.zeros_like(h), torch.zeros_like(c)])
    assert not model.lstm.__dict__["_hc"][0].any()
