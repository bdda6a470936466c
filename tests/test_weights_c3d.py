"""C3D: the community port's c3d.pickle is a torch.save'd state dict in the legacy (pre-1.6, non-zip)
serialization. torch.load(weights_only=True) reads it without running any pickled code."""

import collections

import pytest
import torch

from cozoo import create_model
from cozoo.weights.download import DownloadError
from cozoo.weights.load import fetch, import_checkpoint, read_checkpoint


def test_legacy_serialization_reads_with_weights_only(tmp_path):
    torch.manual_seed(0)
    state = collections.OrderedDict(
        [("conv1.weight", torch.randn(2, 3, 3, 3, 3)), ("conv1.bias", torch.zeros(2))]
    )
    path = tmp_path / "c3d.pickle"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    with open(path, "rb") as f:
        assert f.read(2) != b"PK"  # not the zip container of torch >= 1.6
    loaded, fmt = read_checkpoint(path, "c3d_pickle")
    assert fmt == "c3d_pickle" and set(loaded) == set(state)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_c3d_has_no_download_and_names_the_import_command(tmp_path, monkeypatch):
    monkeypatch.setenv("COZOO_HOME", str(tmp_path))
    for var in ("COZOO_OFFLINE", "HF_HUB_OFFLINE", "COZOO_MANIFEST", "COZOO_WEIGHTS_BASE_URL",
                "COZOO_WEIGHTS_URL_C3D"):
        monkeypatch.delenv(var, raising=False)
    hint = r"no official download.*`cozoo weights import c3d /path/to/c3d\.pickle`"
    with pytest.raises(DownloadError, match=hint):
        fetch("c3d", progress=False)
    assert not any(tmp_path.rglob("*.partial"))


@pytest.mark.slow
def test_import_port_checkpoint_end_to_end(tmp_path, monkeypatch):
    """A full-size C3D state dict saved like the port's file imports offline and loads bit-exactly."""
    monkeypatch.setenv("COZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COZOO_OFFLINE", "1")
    monkeypatch.delenv("COZOO_MANIFEST", raising=False)
    torch.manual_seed(0)
    state = create_model("c3d").state_dict()
    port_file = tmp_path / "c3d.pickle"
    torch.save(collections.OrderedDict(state), port_file, _use_new_zipfile_serialization=False)
    import_checkpoint("c3d", port_file)
    model = create_model("c3d", pretrained=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
