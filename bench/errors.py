"""One exception family for user errors.

Anything a user can cause (bad spec, missing asset, wrong model folder) raises a ``BenchError`` whose
message is a single line; the CLI prints it and exits with code 2. Everything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class BenchError(Exception):
    """A user-facing error: its message is one line, the CLI exits with code 2."""

    def __init__(self, message: str) -> None:
        # Collapse newlines so the CLI contract (one line) holds whatever the caller passed.
        super().__init__(" ".join(str(message).split()))


class SpecError(BenchError):
    """A task/model/run spec is malformed or refers to something that does not exist."""


class DataError(BenchError):
    """A data source cannot be read, is empty, or lacks a declared column or label."""


class AssetError(BenchError):
    """A pinned asset is missing, or its content does not match the manifest hash."""


class ModelError(BenchError):
    """A model cannot be loaded, or its labels cannot be aligned with a task's."""
