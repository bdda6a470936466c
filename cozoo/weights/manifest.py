"""Access to ``weights_manifest.json`` (placeholder until the weights issue fills it in)."""

from __future__ import annotations

from typing import Any


def manifest_entry(name: str) -> dict[str, Any] | None:
    return None


def has_pretrained(name: str) -> bool:
    return manifest_entry(name) is not None
