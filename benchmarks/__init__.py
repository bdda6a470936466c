"""Benchmarks: continual step mode vs regular clip mode vs continual-inference (see run.py)."""
