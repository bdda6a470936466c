"""Inference on video: live and file sources, pacing, JSON lines and annotated video output.

Kept light: importing the package imports no submodule (each is imported where it is used).
"""
