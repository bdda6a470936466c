"""The evaluation modes (torch-free, so the CLI parser can offer them without importing the evaluator)."""

MODES = ("clip", "multiview", "stream", "co3d")
DEFAULT_MODES = ("clip", "multiview", "stream")
