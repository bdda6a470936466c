"""Shared test helpers: non-trivial normalisation so equivalence checks mean something, and a local
HTTP server for the download tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from socketserver import BaseRequestHandler

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
