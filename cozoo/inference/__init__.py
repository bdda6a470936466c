"""Inference-side tools built on the continual models (pools of streams, ...); submodules load on use."""
