"""Fetching, verifying, converting and caching checkpoints, against a real HTTP server on 127.0.0.1.

A throwaway model (registered here, with a converter registered here) stands in for a real family so the
download machinery is tested on its own; tests/test_weights_x3d.py runs the same path with X3D-XS.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from helpers import serve_http
from safetensors.torch import load_file
from torch import nn

from cozoo import cli, registry
from cozoo.commands.parsers import add_weights
from cozoo.models import registry as model_registry
from cozoo.weights import converters
from cozoo.weights.converters import CheckpointMismatchError
from cozoo.weights.download import DownloadError, OfflineError, VerificationError
from cozoo.weights.load import WeightsFormatError, fetch, import_checkpoint
from cozoo.weights.manifest import ManifestError, has_pretrained, manifest_entry

NAME = "_wtest_tiny"
FAMILY = "_wtest"
HF_COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Server:
    """A small HTTP server: ``files`` maps a path to a body; ``modes`` can make a path misbehave."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, str] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _respond(self, send_body: bool) -> None:
                server.requests.append(f"{self.command} {self.path}")
                body = server.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                mode = server.modes.pop(self.path, "ok")  # a failure happens once, then the file is served
                self.send_response(200)
                if mode == "html":  # e.g. a login page served in place of the file
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("X-Repo-Commit", HF_COMMIT)
                self.end_headers()
                if not send_body:
                    return
                if mode == "interrupt":  # announce the full length, send half, drop the connection
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._respond(True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._respond(False)

            def log_message(self, *args: object) -> None:
                pass

        self.handler = Handler
        self.httpd: ThreadingHTTPServer  # set while the `server` fixture serves

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def gets(self) -> int:
        return sum(r.startswith("GET") for r in self.requests)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    with serve_http(srv.handler) as srv.httpd:
        yield srv


def _tiny_builder(num_classes: int = 5, width: int = 4) -> nn.Module:
    return nn.Sequential(nn.Conv3d(3, width, 1), nn.AdaptiveAvgPool3d(1), nn.Flatten(1),
                         nn.Linear(width, num_classes))


def _official_state(seed: int) -> dict[str, torch.Tensor]:
    """The throwaway model's weights in an 'official' layout that needs converting."""
    torch.manual_seed(seed)
    model = _tiny_builder()
    return {k.replace("0.", "stem.").replace("3.", "head."): v for k, v in model.state_dict().items()}


def _convert(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    unknown = [k for k in state if not k.startswith(("stem.", "head."))]
    if unknown:
        raise CheckpointMismatchError(f"unexpected keys: {unknown}")
    return {k.replace("stem.", "0.").replace("head.", "3."): v for k, v in state.items()}


def _pyth_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    torch.save({"model_state": state, "epoch": 1}, buf)
    return buf.getvalue()


def _entry(url: str | None, filename: str, policy: str = "unpublished", digest: str | None = None,
           hf: dict | None = None) -> dict:
    return {
        "architecture": "tiny", "format": "pytorchvideo", "size_bytes": None, "dataset": "kinetics400",
        "labels": "kinetics400", "num_classes": 5, "accuracy": [], "gflops": None, "gflops_protocol": "-",
        "params_m": 0.001, "citations": [{"key": "x", "text": "x"}],
        "license": {"spdx": None, "note": "test"},
        "source": {"filename": filename, "url": url, "hf": hf, "official": True, "publisher": "test"},
        "hash": {"policy": policy, "sha256": digest if policy == "sha256" else None,
                 "sha256_prefix": digest if policy == "sha256_prefix" else None, "note": "test"},
        "preprocessing": {"frames": 2, "sampling_rate": 1, "train_crop": 4, "test_crop": 4,
                          "pixel_scale": 255.0, "mean": [0.45] * 3, "std": [0.225] * 3,
                          "channel_order": "RGB"},
    }


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Server):
    """COZOO_HOME and COZOO_MANIFEST in tmp_path, the throwaway model and converter registered."""
    for var in ("COZOO_OFFLINE", "HF_HUB_OFFLINE", "COZOO_WEIGHTS_BASE_URL", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("COZOO_HOME", str(home))
    manifest = tmp_path / "manifest.json"
    monkeypatch.setenv("COZOO_MANIFEST", str(manifest))
    registry.register_model(registry.ModelConfig(
        name=NAME, family=FAMILY, builder=_tiny_builder, frames=2, sampling_rate=1, train_crop=4, test_crop=4,
        num_classes=5))
    converters.register_converter("pytorchvideo", FAMILY)(_convert)

    def write(**entry_kwargs) -> None:
        entry = _entry(**{"url": f"{server.base}/TINY.pyth", "filename": "TINY.pyth", **entry_kwargs})
        manifest.write_text(json.dumps({"schema_version": 1, "label_sets": {}, "models": {NAME: entry}}))

    write()
    try:
        yield home / "weights" / NAME, write
    finally:
        model_registry._REGISTRY.pop(NAME)
        converters._CONVERTERS.pop(("pytorchvideo", FAMILY))


def _reference_output(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    model = _tiny_builder().eval()
    with torch.no_grad():
        return model(_clip())


def _clip() -> torch.Tensor:
    return torch.linspace(-1, 1, 2 * 3 * 2 * 4 * 4).reshape(2, 3, 2, 4, 4)


def _cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_fetch_downloads_verifies_converts_and_caches(env, server):
    cache, _ = env
    server.files["/TINY.pyth"] = _pyth_bytes(_official_state(seed=1))
    assert has_pretrained(NAME) and manifest_entry(NAME)["source"]["filename"] == "TINY.pyth"
    path = fetch(NAME, progress=False)
    assert path == cache / f"{NAME}.safetensors"
    assert _cache_files(cache) == ["TINY.pyth", f"{NAME}.safetensors"]
    assert set(load_file(str(path))) == set(_tiny_builder().state_dict())
    assert server.gets() == 1

    model = registry.create_model(NAME, pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(model(_clip()), _reference_output(seed=1))
    fetch(NAME, progress=False)
    assert server.gets() == 1  # cached: no further request


def test_cached_weights_load_without_server(env, server):
    server.files["/TINY.pyth"] = _pyth_bytes(_official_state(seed=2))
    fetch(NAME, progress=False)
    server.files.clear()
    server.httpd.shutdown()  # any network access would now fail
    model = registry.create_model(NAME, pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(model(_clip()), _reference_output(seed=2))


def test_interrupted_download_leaves_nothing_and_retry_succeeds(env, server):
    cache, _ = env
    server.files["/TINY.pyth"] = _pyth_bytes(_official_state(seed=3))
    server.modes["/TINY.pyth"] = "interrupt"
    with pytest.raises(DownloadError, match=r"connection ended after \d+ of \d+ bytes"):
        fetch(NAME, progress=False)
    assert _cache_files(cache) == []
    fetch(NAME, progress=False)
    assert _cache_files(cache) == ["TINY.pyth", f"{NAME}.safetensors"]


def test_corrupt_download_is_rejected_by_format_check(env, server):
    cache, _ = env
    good = _pyth_bytes(_official_state(seed=4))
    server.files["/TINY.pyth"] = good[:100] + bytes(len(good) - 100)  # complete length, damaged content
    with pytest.raises(WeightsFormatError, match="not a PyTorch checkpoint"):
        fetch(NAME, progress=False)
    assert _cache_files(cache) == []
    server.files["/TINY.pyth"] = good
    fetch(NAME, progress=False)


def test_wrong_full_hash_is_rejected(env, server):
    cache, write = env
    good = _pyth_bytes(_official_state(seed=5))
    write(policy="sha256", digest=hashlib.sha256(b"something else").hexdigest())
    server.files["/TINY.pyth"] = good
    with pytest.raises(VerificationError, match="does not match the published sha256"):
        fetch(NAME, progress=False)
    assert _cache_files(cache) == []
    write(policy="sha256", digest=hashlib.sha256(good).hexdigest())
    fetch(NAME, progress=False)
    assert _cache_files(cache) == ["TINY.pyth", f"{NAME}.safetensors"]


def test_sha256_prefix_policy_like_torchvision(env, server):
    good = _pyth_bytes(_official_state(seed=6))
    prefix = hashlib.sha256(good).hexdigest()[:8]
    name = f"tiny-{prefix}.pth"
    write = env[1]
    write(url=f"{server.base}/{name}", filename=name, policy="sha256_prefix", digest=prefix)
    server.files[f"/{name}"] = good[:-1] + bytes([good[-1] ^ 1])  # one flipped bit
    with pytest.raises(VerificationError, match=f"published sha256 prefix .*expected {prefix}"):
        fetch(NAME, progress=False)
    server.files[f"/{name}"] = good
    fetch(NAME, progress=False)


def test_pinned_sha256_argument(env, server):
    good = _pyth_bytes(_official_state(seed=7))
    server.files["/TINY.pyth"] = good
    with pytest.raises(VerificationError, match="requested sha256"):
        fetch(NAME, progress=False, sha256="0" * 64)
    assert fetch(NAME, progress=False, sha256=hashlib.sha256(good).hexdigest()).is_file()


def test_a_pin_that_differs_from_the_cached_file_keeps_it_and_says_so(env, server, monkeypatch):
    cache, _ = env
    good = _pyth_bytes(_official_state(seed=7))
    server.files["/TINY.pyth"] = good
    converted = fetch(NAME, progress=False)
    cached = sorted(p.name for p in cache.rglob("*") if p.is_file())
    monkeypatch.setenv("COZOO_OFFLINE", "1")  # no download is attempted either
    with pytest.raises(VerificationError, match=f"has sha256 {hashlib.sha256(good).hexdigest()}, not the "
                       f"requested {'0' * 64}; it was kept"):
        fetch(NAME, progress=False, sha256="0" * 64)
    converted.unlink()  # only the published file left: the same answer, and it stays too
    with pytest.raises(VerificationError, match="TINY.pyth of '_wtest_tiny' has sha256 .* it was kept"):
        fetch(NAME, progress=False, sha256="0" * 64)
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == sorted(set(cached) - {converted.name})
    assert server.gets() == 1


def test_wrong_file_format(env, server):
    cache, _ = env
    buf = io.BytesIO()
    torch.save(_official_state(seed=8), buf)  # a plain state dict, not {"model_state": ...}
    server.files["/TINY.pyth"] = buf.getvalue()
    with pytest.raises(WeightsFormatError, match="not a PyTorchVideo checkpoint: no 'model_state'"):
        fetch(NAME, progress=False)
    server.files["/TINY.pyth"] = b"<html>404 page of a misconfigured mirror</html>"
    with pytest.raises(WeightsFormatError, match="not a PyTorch checkpoint"):
        fetch(NAME, progress=False)
    server.files["/TINY.pyth"] = _pyth_bytes({"other.weight": torch.zeros(1)})  # another model's checkpoint
    with pytest.raises(CheckpointMismatchError, match="other.weight"):
        fetch(NAME, progress=False)
    assert _cache_files(cache) == []


def test_checkpoint_with_code_is_refused(env, server):
    """A pickle that would build arbitrary objects is never unpickled (weights_only)."""
    buf = io.BytesIO()
    torch.save({"model_state": _official_state(seed=9), "extra": Server}, buf)
    server.files["/TINY.pyth"] = buf.getvalue()
    with pytest.raises(WeightsFormatError, match="weights_only=True"):
        fetch(NAME, progress=False)


def test_html_page_local_path_and_unsafe_file_name_are_refused(env, server):
    cache, write = env
    server.files["/TINY.pyth"] = _pyth_bytes(_official_state(seed=21))
    server.modes["/TINY.pyth"] = "html"
    with pytest.raises(DownloadError, match="serves an HTML page, not a checkpoint"):
        fetch(NAME, progress=False)
    with pytest.raises(DownloadError, match="cozoo weights import NAME PATH"):
        fetch(NAME, url="/home/me/TINY.pyth", progress=False)
    assert _cache_files(cache) == []
    write(filename="../TINY.pyth")
    with pytest.raises(ManifestError, match="source.filename must be a plain file name"):
        fetch(NAME, progress=False)


def test_http_error_is_clear(env, server):
    with pytest.raises(DownloadError, match="HTTP Error 404.*Without network access, copy TINY.pyth to this "
                       "machine and run `cozoo weights import _wtest_tiny"):
        fetch(NAME, progress=False)


def test_url_overrides(env, server, monkeypatch):
    cache, write = env
    write(url="https://example.invalid/never-used.pyth")
    server.files["/mirror/TINY.pyth"] = _pyth_bytes(_official_state(seed=10))
    monkeypatch.setenv("COZOO_WEIGHTS_BASE_URL", f"{server.base}/mirror/")
    fetch(NAME, progress=False)
    server.files["/one/x.pyth"] = _pyth_bytes(_official_state(seed=11))
    monkeypatch.setenv("COZOO_WEIGHTS_URL__WTEST_TINY", f"{server.base}/one/x.pyth")
    fetch(NAME, progress=False, force=True)
    assert server.requests[-1] == "GET /one/x.pyth"
    server.files["/arg.pyth"] = _pyth_bytes(_official_state(seed=12))
    fetch(NAME, progress=False, force=True, url=f"{server.base}/arg.pyth")
    model = registry.create_model(NAME, pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(model(_clip()), _reference_output(seed=12))


def test_hugging_face_source_through_hf_endpoint(env, server, monkeypatch):
    cache, write = env
    hf = {"repo_id": "org/tiny", "filename": "TINY.pyth", "revision": HF_COMMIT}
    write(url=None, hf=hf)
    server.files[f"/org/tiny/resolve/{HF_COMMIT}/TINY.pyth"] = _pyth_bytes(_official_state(seed=13))
    monkeypatch.setenv("HF_ENDPOINT", server.base)
    fetch(NAME, progress=False)
    assert f"GET /org/tiny/resolve/{HF_COMMIT}/TINY.pyth" in server.requests
    assert _cache_files(cache) == ["TINY.pyth", f"{NAME}.safetensors"]  # no huggingface_hub leftovers


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "COZOO_OFFLINE"])
def test_offline_with_empty_cache(env, server, monkeypatch, var):
    monkeypatch.setenv(var, "1")
    server.files["/TINY.pyth"] = _pyth_bytes(_official_state(seed=14))
    with pytest.raises(OfflineError, match=rf"{var}=1.*TINY\.pyth.*`cozoo weights import {NAME} "):
        registry.create_model(NAME, pretrained=True)
    assert server.requests == []


def test_offline_uses_cache(env, server, monkeypatch):
    server.files["/TINY.pyth"] = _pyth_bytes(_official_state(seed=15))
    fetch(NAME, progress=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    registry.create_model(NAME, pretrained=True)
    assert server.gets() == 1


def test_damaged_conversion_is_rebuilt_from_cached_source_offline(env, server, monkeypatch):
    cache, _ = env
    server.files["/TINY.pyth"] = _pyth_bytes(_official_state(seed=16))
    converted = fetch(NAME, progress=False)
    converted.write_bytes(converted.read_bytes()[:50])
    monkeypatch.setenv("COZOO_OFFLINE", "1")
    model = registry.create_model(NAME, pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(model(_clip()), _reference_output(seed=16))
    assert server.gets() == 1


def test_import_verifies_and_converts(env, server, tmp_path, monkeypatch):
    cache, _ = env
    monkeypatch.setenv("COZOO_OFFLINE", "1")
    bad = tmp_path / "bad.pyth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsFormatError):
        import_checkpoint(NAME, bad)
    assert _cache_files(cache) == []
    good = tmp_path / "copied-by-hand.pyth"
    good.write_bytes(_pyth_bytes(_official_state(seed=17)))
    with pytest.warns(UserWarning, match="imported copied-by-hand.pyth as '_wtest_tiny', whose published "
                      "file is TINY.pyth"):
        import_checkpoint(NAME, good)
    assert _cache_files(cache) == ["TINY.pyth", f"{NAME}.safetensors"]
    model = registry.create_model(NAME, pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(model(_clip()), _reference_output(seed=17))
    assert server.requests == []


def test_import_refuses_a_safetensors_file_and_a_malformed_pin(env, tmp_path):
    converted = tmp_path / "x.safetensors"
    converted.write_bytes(b"whatever")
    with pytest.raises(WeightsFormatError, match="is a safetensors file: `weights import` takes the"):
        import_checkpoint(NAME, converted)
    with pytest.raises(ValueError, match="64 hexadecimal digits, got 'nothex'"):
        import_checkpoint(NAME, converted, sha256="nothex")
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        fetch(NAME, progress=False, sha256="ab" * 31)


def test_a_download_is_kept_when_the_callers_architecture_does_not_fit_it(env, server):
    cache, _ = env
    server.files["/TINY.pyth"] = _pyth_bytes(_official_state(seed=19))
    with pytest.raises(CheckpointMismatchError, match=r"builder arguments \{'width': 6\} change the"):
        registry.create_model(NAME, pretrained=True, width=6)
    assert _cache_files(cache) == ["TINY.pyth", f"{NAME}.safetensors"]  # verified and converted: kept
    model = registry.create_model(NAME, pretrained=True).eval()
    assert server.gets() == 1
    with torch.no_grad():
        assert torch.equal(model(_clip()), _reference_output(seed=19))


def test_leftovers_of_killed_downloads_are_removed_once_stale(env, server):
    cache, _ = env
    cache.mkdir(parents=True)
    old_partial, fresh_partial = cache / ".TINY.pyth.abc.partial", cache / ".TINY.pyth.def.partial"
    old_staging = cache / ".hf-xyz"
    (old_staging / "deep").mkdir(parents=True)
    for path in (old_partial, fresh_partial, old_staging / "deep" / "f.incomplete"):
        path.write_bytes(b"x")
    for path in (old_partial, old_staging, old_staging / "deep", old_staging / "deep" / "f.incomplete"):
        os.utime(path, (1.0, 1.0))
    server.files["/TINY.pyth"] = _pyth_bytes(_official_state(seed=20))
    fetch(NAME, progress=False)
    assert _cache_files(cache) == [fresh_partial.name, "TINY.pyth", f"{NAME}.safetensors"]


def test_pretrained_path_official_and_native_layouts(env, tmp_path):
    official = tmp_path / "any_name.pyth"
    official.write_bytes(_pyth_bytes(_official_state(seed=18)))
    model = registry.create_model(NAME, pretrained=str(official)).eval()
    with torch.no_grad():
        assert torch.equal(model(_clip()), _reference_output(seed=18))
    native = tmp_path / "native.pt"
    torch.save(model.state_dict(), native)
    again = registry.create_model(NAME, pretrained=str(native)).eval()
    with torch.no_grad():
        assert torch.equal(again(_clip()), _reference_output(seed=18))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        registry.create_model(NAME, pretrained=str(tmp_path / "missing.pyth"))


def _cli(monkeypatch, *argv: str) -> int:
    monkeypatch.setattr(cli, "_COMMANDS", (add_weights,))
    return cli.main(list(argv))


def test_cli_fetch_import_list(env, server, tmp_path, monkeypatch, capsys):
    server.files["/TINY.pyth"] = good = _pyth_bytes(_official_state(seed=19))
    assert _cli(monkeypatch, "weights", "fetch", NAME, "--quiet") == 0
    out = capsys.readouterr().out
    assert f"{NAME}.safetensors" in out and hashlib.sha256(good).hexdigest() in out
    assert _cli(monkeypatch, "weights", "list") == 0
    assert any(line.startswith(NAME) and " yes " in line for line in capsys.readouterr().out.splitlines())
    assert _cli(monkeypatch, "weights", "fetch", NAME, "--quiet", "--url", f"{server.base}/OTHER.pyth") == 0
    assert "already cached, so --url was not used (add --force" in capsys.readouterr().out
    assert server.gets() == 1
    assert _cli(monkeypatch, "weights", "import", NAME, str(tmp_path / "nope.pyth")) == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.setenv("COZOO_OFFLINE", "1")
    assert _cli(monkeypatch, "weights", "fetch", NAME, "--force") == 2
    assert "cozoo weights import" in capsys.readouterr().err
