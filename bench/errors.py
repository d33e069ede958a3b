"""One exception family for user errors.

Anything a user can cause (bad spec, missing asset, wrong model folder) raises a ``BenchError`` whose
message is a single line; the CLI prints it and exits with code 2. Everything else is a bug and keeps
its traceback.

Error text echoes user data (a value from a spec, a label from a data file), and that data can be
arbitrarily large: a YAML alias bomb under 1 KB expands to millions of characters. ``shown`` and
``listing`` bound what one value or one list may contribute, and ``one_line`` bounds the whole
message, so an error is always short to build and short to read.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable
from typing import Any

# The CLI prints ``error: `` + the message; the whole line stays under 300 characters.
MAX_MESSAGE = 290


def _bounded_repr(limit: int) -> reprlib.Repr:
    # reprlib walks at most maxlevel levels and maxlist/maxdict items per level, so even a value
    # that expands to millions of nodes (shared YAML aliases) is rendered in bounded time.
    r = reprlib.Repr()
    r.maxlevel = 3
    r.maxlist = r.maxtuple = r.maxset = r.maxfrozenset = r.maxdeque = r.maxdict = 4
    r.maxstring = max(limit, 8)
    r.maxother = r.maxlong = 40
    return r


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for an error message, at most about ``limit`` characters, in bounded time."""
    try:
        if isinstance(value, str) and len(value) <= limit:
            text = repr(value)
        else:
            text = _bounded_repr(limit).repr(value)
    except ValueError:
        # int.__repr__ refuses more than 4300 digits.
        return f"<{type(value).__name__} too large to show>"
    if len(text) > limit + 2:
        text = text[: limit - 3] + "..." + text[-2:]
    return text


def listing(names: Iterable[Any], limit: int = 8, width: int = 40) -> str:
    """``a, b, c, ... (+N more)``: at most ``limit`` names, each cut to ``width`` characters."""
    items = list(names)
    out = []
    for name in items[:limit]:
        text = str(name)
        out.append(text if len(text) <= width else text[: width - 3] + "...")
    more = len(items) - limit
    return ", ".join(out) + (f", ... (+{more} more)" if more > 0 else "")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``did you mean 'x'? `` for a near miss among ``choices`` (difflib), else empty."""
    import difflib

    if len(name) > 200:  # no near miss, and difflib is quadratic in length
        return ""
    close = difflib.get_close_matches(name, list(choices), n=2, cutoff=0.6)
    return f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """Whitespace collapsed to single spaces, cut in the middle beyond ``limit`` characters (the
    start names what the error is about, the end usually says what to do)."""
    text = " ".join(str(message).split())
    if len(text) <= limit:
        return text
    tail = limit // 4
    return text[: limit - tail - 5] + " ... " + text[-tail:]


class BenchError(Exception):
    """A user-facing error: its message is one line, the CLI exits with code 2."""

    def __init__(self, message: str) -> None:
        # One short line whatever the caller passed: the CLI contract.
        super().__init__(one_line(message))


class SpecError(BenchError):
    """A task/model/run spec is malformed or refers to something that does not exist."""


class DataError(BenchError):
    """A data source cannot be read, is empty, or lacks a declared column or label."""


class AssetError(BenchError):
    """A pinned asset is missing, or its content does not match the manifest hash."""


class AssetUnavailableError(AssetError):
    """The package index no longer offers a pinned asset's distribution (a release deleted from
    PyPI): no retry will help, only a copy of the archive (``BENCH_ASSET_ARCHIVES``) or a mirror.
    Told apart from other download failures so that work needing the asset can be left out,
    saying why, instead of failing everything around it."""


class ModelError(BenchError):
    """A model cannot be loaded, or its labels cannot be aligned with a task's."""
