"""End to end with a real model: a PyTorchVideo X3D-XS checkpoint in the official ``.pyth`` format, served
over HTTP on 127.0.0.1, fetched through the manifest entry of ``x3d_xs`` (URL overridden by env var)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from helpers import randomise_batchnorm, serve_http
from pytorchvideo.models import hub
from torch import nn

from cozoo import create_model
from cozoo.weights.download import OfflineError
from cozoo.weights.load import import_checkpoint

# X3D-XS: 4 frames at its 160 px training crop, where PyTorchVideo's fixed-size pool is global
CLIP = (1, 3, 4, 160, 160)


def _reference() -> nn.Module:
    """PyTorchVideo's X3D-XS with random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = hub.x3d_xs(pretrained=False)
    randomise_batchnorm(model)
    return model.eval()


class _Server:
    """Serves the files under ``root``; ``requests`` logs each request line."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, fmt: str, *args: object) -> None:
                requests.append(self.requestline)

        self.handler = functools.partial(Handler, directory=str(root))
        self.httpd: ThreadingHTTPServer  # set while the `server` fixture serves


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.Tensor]:
    """The .pyth file and the reference model's softmax output on a fixed clip."""
    root = tmp_path_factory.mktemp("zoo")
    reference = _reference()
    torch.save({"model_state": reference.state_dict(), "epoch": 300}, root / "X3D_XS.pyth")
    torch.manual_seed(1)
    clip = torch.randn(CLIP)
    with torch.no_grad():
        return root / "X3D_XS.pyth", reference(clip)  # PyTorchVideo's head ends with softmax


@pytest.fixture
def server(published, tmp_path, monkeypatch) -> Iterator[_Server]:
    for var in ("COZOO_OFFLINE", "HF_HUB_OFFLINE", "COZOO_MANIFEST", "COZOO_WEIGHTS_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COZOO_HOME", str(tmp_path / "home"))
    srv = _Server(published[0].parent)
    with serve_http(srv.handler) as srv.httpd:
        monkeypatch.setenv("COZOO_WEIGHTS_URL_X3D_XS", f"http://127.0.0.1:{srv.httpd.server_port}/X3D_XS.pyth")
        yield srv


def _probs(model: nn.Module) -> torch.Tensor:
    torch.manual_seed(1)
    clip = torch.randn(CLIP)
    with torch.no_grad():
        return model.eval()(clip).softmax(dim=1)


def test_pretrained_x3d_xs_reproduces_reference(published, server, tmp_path):
    model = create_model("x3d_xs", pretrained=True)
    assert torch.allclose(_probs(model), published[1], atol=1e-6)
    cache = tmp_path / "home" / "weights" / "x3d_xs"
    assert sorted(p.name for p in cache.iterdir()) == ["X3D_XS.pyth", "x3d_xs.safetensors"]
    assert (cache / "X3D_XS.pyth").read_bytes() == published[0].read_bytes()
    assert len(server.requests) == 1

    again = create_model("x3d_xs", pretrained=True)  # from the cache, no request
    assert len(server.requests) == 1
    assert torch.equal(_probs(again), _probs(model))
    continual = create_model("cox3d_xs", pretrained=True)  # a continual variant reuses its source's weights
    assert len(server.requests) == 1
    for key, value in model.state_dict().items():
        assert torch.equal(continual.state_dict()[key], value), key


def test_offline_import_and_path(published, server, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"X3D_XS\.pyth.*cozoo weights import x3d_xs"):
        create_model("x3d_xs", pretrained=True)
    direct = create_model("x3d_xs", pretrained=str(published[0]))
    assert torch.allclose(_probs(direct), published[1], atol=1e-6)
    import_checkpoint("x3d_xs", published[0])
    imported = create_model("x3d_xs", pretrained=True)
    assert torch.equal(_probs(imported), _probs(direct))
    assert server.requests == []
