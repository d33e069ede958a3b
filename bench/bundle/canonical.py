"""Canonical JSON for bundles: one byte sequence per value, so hashes mean something.

Keys sorted, no whitespace, UTF-8 text unescaped, integers without a decimal point and floats as
Python's ``repr`` writes them (the shortest text that reads back as the same double: ``0.1``,
``1.0``, ``1e-05``); NaN and infinities are refused, since JSON has no way to write them. The same
rules as ``bench.specs.canonical_json`` plus the refusal of non-finite numbers.

Reading is as strict: a constant such as ``NaN``, a key given twice in one object (which a reader
could resolve either way) or nesting beyond ``MAX_DEPTH`` is refused.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

# Deeper than any manifest or row; far below where the JSON parser's recursion would fail.
MAX_DEPTH = 64


class JSONFormatError(ValueError):
    """Text that is not the JSON a bundle may hold (one line, for an error message)."""


# One encoder and one row decoder, made once: a bundle holds many thousands of rows.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def dumps(data: Any) -> str:
    """Canonical JSON text of ``data`` (see the module docstring); ValueError on NaN or inf."""
    return _ENCODER.encode(data)


def _no_constants(name: str) -> Any:
    raise JSONFormatError(f"{name} is not a JSON number")


_ROW_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            from bench.errors import shown

            raise JSONFormatError(f"key {shown(key, 40)} appears twice in one object")
        out[key] = value
    return out


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of parsed JSON, iteratively (no recursion to exhaust)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return deepest


@contextlib.contextmanager
def _as_format_errors() -> Iterator[None]:
    """The parser's failures as a JSONFormatError with a short reason."""
    try:
        yield
    except JSONFormatError:
        raise
    except RecursionError:
        raise JSONFormatError(f"nested more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise JSONFormatError(
            f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None


def loads_flat(text: str) -> Any:
    """Parse one bundle row: as strict as ``loads`` for constants and depth, in C speed (no
    Python hook per object). A key given twice is not refused here: the row then differs from
    its canonical text, which the reader checks."""
    with _as_format_errors():
        return _ROW_DECODER.decode(text)


def loads(text: str) -> Any:
    """Parse bundle JSON strictly; JSONFormatError with a short reason when it is not."""
    with _as_format_errors():
        value = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_unique_keys)
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise JSONFormatError(f"nested more than {MAX_DEPTH} levels deep")
    return value
