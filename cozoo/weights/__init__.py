"""Pretrained weights: manifest, download and verification, converters, loading."""
