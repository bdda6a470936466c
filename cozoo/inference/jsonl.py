"""``cozoo stream --jsonl``: one JSON object per line (schema: ``stream_jsonl.schema.json`` beside this
module), to a file written atomically (a temporary file beside it, renamed at close, also on Ctrl-C) or to
standard output (``-``), flushed line by line."""

from __future__ import annotations

import json
import os
import sys
from importlib import resources
from pathlib import Path
from typing import IO, Any

SCHEMA_NAME = "stream_jsonl.schema.json"


def jsonl_schema() -> dict[str, Any]:
    """The JSON schema every line of ``--jsonl`` output satisfies."""
    return json.loads(resources.files("cozoo.inference").joinpath(SCHEMA_NAME).read_text())


class JsonLines:
    """Writes one object per line to ``target`` (a path, or ``-`` for standard output)."""

    def __init__(self, target: str | os.PathLike) -> None:
        self._to_stdout = os.fspath(target) == "-"
        self.path: Path | None = None if self._to_stdout else Path(target)
        self._file: IO[str]
        if self.path is None:
            self._file = sys.stdout
        else:
            if self.path.is_dir():
                raise ValueError(f"--jsonl {os.fspath(target)!r} is a directory; give a file name")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._partial = self.path.with_name(f".{self.path.name}.partial")
            self._file = self._partial.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Finish the file (renamed into place); standard output is only flushed."""
        if self.path is None:
            self._file.flush()
            return
        if not self._file.closed:
            self._file.close()
            os.replace(self._partial, self.path)
