"""Inference on videos (kept light: import the submodules you need, e.g. `cozoo.inference.extract`)."""
