"""Per-example rows in a bundle: one canonical JSON object per line, in example order.

The fields are those of the store's row types (``PredictionRow``, ``PromptRow``, ``AttackRow``);
each line is the leaf its Merkle hash is taken of. Reading checks every line strictly: its type
per field (no ``"3"`` for 3, no 1 for a probability written 1.0), no unknown or missing field,
and that it is written canonically, so one row has exactly one byte form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.bundle import canonical, merkle
from bench.records import AttackRow, PredictionRow, PromptRow
from bench.store import ATTACK_TABLE, PREDICTION_TABLE, PROMPT_TABLE, RowTable

# The row table of each run kind that has rows (summaries have none).
KIND_TABLES: dict[str, RowTable[Any]] = {
    "eval": PREDICTION_TABLE,
    "prompt": PROMPT_TABLE,
    "attack": ATTACK_TABLE,
}
TABLES: dict[str, RowTable[Any]] = {t.name: t for t in KIND_TABLES.values()}


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    idx: int = Field(ge=0)
    uid: str


class PredictionRowModel(_Row):
    label: int
    pred: int
    probs: list[float]
    logits: list[float]


class PromptRowModel(_Row):
    label: int
    pred: int
    pred_norm: int
    scores: list[float]
    prompt: str
    output: str
    answer: str
    target: str
    correct: bool
    correct_norm: bool
    shots: list[str]
    choices: list[str]


class AttackRowModel(_Row):
    label: int
    status: Literal["succeeded", "failed", "skipped"]
    original: list[str]
    perturbed: list[str]
    original_pred: int
    perturbed_pred: int
    original_scores: list[float]
    perturbed_scores: list[float]
    queries: int = Field(ge=0)
    words_changed: int = Field(ge=0)
    words_total: int = Field(ge=0)


_MODELS: dict[str, tuple[type[_Row], type[Any], tuple[str, ...]]] = {
    # table -> (checker, row type, fields that hold lists of floats)
    "predictions": (PredictionRowModel, PredictionRow, ("probs", "logits")),
    "prompt_examples": (PromptRowModel, PromptRow, ("scores",)),
    "attack_examples": (AttackRowModel, AttackRow, ("original_scores", "perturbed_scores")),
}


def row_json(row: Any) -> str:
    """A store row (dataclass) as its canonical JSON line (no newline)."""
    data = dataclasses.asdict(row)
    for key, value in data.items():
        if isinstance(value, tuple):
            data[key] = list(value)
    return canonical.dumps(data)


@dataclass(frozen=True)
class ParsedRows:
    """A rows file read back: the rows (store types), their leaf hashes, and what was wrong
    (``problems``: one line each, naming the example)."""

    rows: list[Any]
    leaves: list[str]
    problems: list[str]


def _type_problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    where = ".".join(str(p) for p in first.get("loc", ())[:3]) or "row"
    return f"field '{where}': {first.get('msg', 'invalid')}"


def parse_rows(data: bytes, table: str, where: str) -> ParsedRows:
    """Check and read a rows file (``where`` names it in problems)."""
    checker, row_type, float_fields = _MODELS[table]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ParsedRows([], [], [f"{where} is not UTF-8 text"])
    lines = text.split("\n")
    problems: list[str] = []
    if lines and lines[-1] == "":
        lines.pop()
    elif text:
        problems.append(f"{where} does not end with a newline (truncated?)")
    rows: list[Any] = []
    leaves: list[str] = []
    for number, line in enumerate(lines, 1):
        leaves.append(merkle.leaf(line.encode("utf-8")))
        try:
            value = canonical.loads_flat(line)
        except canonical.JSONFormatError as exc:
            problems.append(f"{where} line {number}: {exc}")
            continue
        if not isinstance(value, dict):
            problems.append(f"{where} line {number}: a row must be a JSON object")
            continue
        try:
            checker.model_validate(value)
        except ValidationError as exc:
            problems.append(f"{where} line {number}: {_type_problem(exc)}")
            continue
        ints = [f for f in float_fields if any(type(x) is not float for x in value[f])]
        if ints:
            problems.append(
                f"{where} line {number}: field '{ints[0]}' holds a number written as an integer "
                "(floats are written with a decimal point or exponent)"
            )
            continue
        if canonical.dumps(value) != line:
            problems.append(
                f"{where} line {number}: not canonical JSON (sorted keys, no spaces, shortest "
                "float text)"
            )
            continue
        rows.append(row_type(**value))
    return ParsedRows(rows, leaves, problems)


def encode_rows(rows: Sequence[Any]) -> tuple[bytes, list[str]]:
    """Rows as a rows file (one canonical line each) and their leaf hashes."""
    lines = [row_json(r) for r in rows]
    leaves = [merkle.leaf(line.encode("utf-8")) for line in lines]
    body = "".join(line + "\n" for line in lines)
    return body.encode("utf-8"), leaves


def leaves_file(leaves: Sequence[str]) -> bytes:
    return "".join(h + "\n" for h in leaves).encode("ascii")


def parse_leaves(data: bytes) -> list[str] | None:
    """A leaves file's hashes, or None if it is not one hex SHA-256 per line."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    lines = text.split("\n")
    if lines[-1] != "":
        return None
    lines.pop()
    if any(len(h) != 64 or any(c not in "0123456789abcdef" for c in h) for h in lines):
        return None
    return lines
