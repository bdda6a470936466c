"""Shared test helpers: non-trivial normalisation so equivalence checks mean something, and a local
HTTP server for the download tests, and a video that still opens when cut short."""

from __future__ import annotations

import os
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from socketserver import BaseRequestHandler

import av
import numpy as np
import torch
from torch import nn


def calibrate(model: nn.Module, inputs: object) -> nn.Module:
    """Random BatchNorm affine and classifier weights, then BatchNorm running statistics set to the batch
    statistics of ``inputs`` (one training-mode forward with momentum 1). Returns the model in eval mode."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm3d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.normal_(module.bias, 0.0, 0.2)
            module.momentum = 1.0
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.05)
            nn.init.normal_(module.bias, 0.0, 0.1)
    model.train()
    with torch.no_grad():
        model(inputs)
    return model.eval()


def randomise_batchnorm(model: nn.Module) -> None:
    """Random running statistics and affine parameters for every BatchNorm3d (no forward needed)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm3d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)


@contextmanager
def serve_http(handler: Callable[..., BaseRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """An HTTP server on 127.0.0.1 (a free port) answering with ``handler`` from a background thread; shut
    down and closed on exit."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def faststart_video(path: Path, frames: int = 12) -> Path:
    """An MP4 of noise whose index (moov) precedes the data: cut short, it still opens and declares
    ``frames``. The same bytes on every run (single-threaded x264 without mbtree), so damage lands alike."""
    images = np.random.default_rng(0).integers(0, 256, (frames, 32, 48, 3), dtype=np.uint8)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast", "x264-params": "mbtree=0"}
        stream.codec_context.thread_count = 1
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def garbled_video(path: Path) -> Path:
    """A 12-frame MP4 whose frame 0 decodes but whose decoding fails part-way: the second half of the file
    overwritten with noise (same length, so the container still declares 12 frames)."""
    data = bytearray(faststart_video(path).read_bytes())
    start, end = len(data) // 2, len(data) - 16
    data[start:end] = np.random.default_rng(1).bytes(end - start)
    path.write_bytes(bytes(data))
    return path


_TORCH_BLOCKER = textwrap.dedent("""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
            return None
    sys.meta_path.insert(0, Block())
""")


def torch_blocked_env(folder: Path, root: Path) -> dict[str, str]:
    """Environment for a subprocess in which ``import torch`` fails (a ``sitecustomize`` written to
    ``folder``) and ``root``'s cozoo is imported: for checking that torch-free parts stay so."""
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(_TORCH_BLOCKER)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(root)])}
