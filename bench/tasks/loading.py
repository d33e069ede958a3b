"""From a task spec to labelled examples: label mapping, splits, limits and content hashes."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.errors import DataError, listing, shown
from bench.specs import ROLES, Role, SplitPlan, TaskSpec, canonical_json, sha256_text
from bench.tasks.examples import Example, TaskData, example_uid


def _unit_interval(seed: int, key: str) -> float:
    """A uniform number in [0, 1) derived from (seed, key): order-independent randomness."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _label_name(spec: TaskSpec, row: dict[str, Any]) -> str | None:
    """The task label of a raw row, or None when the spec says to drop the row."""
    if spec.label_threshold is not None:
        rule = spec.label_threshold
        raw = row.get(rule.column)
        try:
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            raise DataError(
                f"task {spec.name!r}: column {shown(rule.column, 40)} holds {shown(raw, 40)}, "
                "not a number"
            ) from None
        if math.isnan(value) or value == rule.threshold:
            return None
        return rule.below if value < rule.threshold else rule.above
    raw = row.get(spec.label_column)
    if raw is None:
        return None
    key = str(raw)
    if spec.label_map:
        if key not in spec.label_map:
            known = listing(sorted(spec.label_map), 6, 20)
            raise DataError(
                f"task {spec.name!r}: dataset label {shown(key, 40)} is not in label_map "
                f"(known: {known})"
            )
        return spec.label_map[key]
    if key in spec.labels:
        return key
    if isinstance(raw, int) and not isinstance(raw, bool):
        # Integer class ids (HF ClassLabel) index the label list only when the task says so: a
        # list written in another order than the data's ids would invert every result.
        if not spec.labels_are_indices:
            example = ", ".join(f'"{i}": {name}' for i, name in enumerate(spec.labels[:2]))
            raise DataError(
                f"task {spec.name!r}: dataset label {raw} is an integer; say which label it is "
                f"with a label_map (e.g. label_map: {{{example}}}) or, if the ids are positions "
                "in labels, set labels_are_indices: true"
            )
        if 0 <= raw < len(spec.labels):
            return spec.labels[raw]
        raise DataError(
            f"task {spec.name!r}: dataset label {raw} is not a position in labels "
            f"(0..{len(spec.labels) - 1}; labels_are_indices is set)"
        )
    raise DataError(
        f"task {spec.name!r}: dataset label {shown(key, 40)} is not one of the task labels "
        f"({listing(spec.labels, 6, 20)}); add a label_map"
    )


def _check_columns(spec: TaskSpec, rows: list[dict[str, Any]], where: str) -> None:
    needed = list(spec.inputs)
    needed.append(spec.label_threshold.column if spec.label_threshold else spec.label_column)
    if spec.choices_column is not None:
        needed.append(spec.choices_column)
    columns = set(rows[0])
    missing = [c for c in needed if c not in columns]
    if missing:
        if len(columns) < 2:
            # A file that is not a table (a text file read as csv, say) "parses" as one column
            # named after its first line; quoting it would print the first line of whatever file
            # the path points at. No task can use a single column anyway.
            have = "it has a single column; is the file really in the declared format?"
        else:
            have = f"columns: {listing(sorted(columns), 6, 24)}"
        raise DataError(
            f"task {spec.name!r}: column {shown(missing[0], 40)} not found in {where} ({have})"
        )


def _group_value(row: dict[str, Any], path: str, task: str) -> str:
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise DataError(
                f"task {task!r}: split group_by field {shown(path, 40)} is missing in a row"
            )
        value = value[part]
    return canonical_json(value)


def _choices(spec: TaskSpec, row: dict[str, Any]) -> tuple[str, ...]:
    """A multiple-choice row's options, in file order: a list, or a mapping's keys."""
    assert spec.choices_column is not None
    raw = row.get(spec.choices_column)
    if isinstance(raw, dict):
        options = tuple(str(k) for k in raw)
    elif isinstance(raw, list) and all(isinstance(v, (str, int, float)) for v in raw):
        options = tuple(str(v) for v in raw)
    else:
        raise DataError(
            f"task {spec.name!r}: column {shown(spec.choices_column, 30)} must hold a list of "
            f"options or a mapping option -> score, got {type(raw).__name__}"
        )
    if len(options) < 2 or len(set(options)) != len(options):
        raise DataError(
            f"task {spec.name!r}: an example has {len(options)} options in "
            f"{shown(spec.choices_column, 30)} ({listing(options, 4, 20)}); it needs 2 or more, "
            "all distinct"
        )
    return options


# (inputs, label name or target, split key, options, cluster)
Row = tuple[tuple[str, ...], str, str, tuple[str, ...], str]


def _to_pairs(spec: TaskSpec, rows: list[dict[str, Any]]) -> list[Row]:
    """(inputs, label name or target, split key, options, cluster) per usable row."""
    out = []
    group_by = spec.splits.group_by
    cluster_by = spec.cluster_by or group_by
    for row in rows:
        if spec.kind == "classification":
            label = _label_name(spec, row)
        else:
            raw = row.get(spec.label_column)
            label = None if raw is None else str(raw)
        values = [row.get(col) for col in spec.inputs]
        # Rows without text cannot be classified; they are dropped, not guessed.
        if label is None or any(v is None or str(v).strip() == "" for v in values):
            continue
        choices: tuple[str, ...] = ()
        if spec.kind == "multiple_choice":
            choices = _choices(spec, row)
            if label not in choices:
                raise DataError(
                    f"task {spec.name!r}: the answer {shown(label, 40)} is not one of the "
                    f"example's options ({listing(choices, 4, 20)})"
                )
        inputs = tuple(str(v) for v in values)
        key = _group_value(row, group_by, spec.name) if group_by else canonical_json(list(inputs))
        # Examples that share a source (a passage, a claim's revisions) are not independent:
        # paired comparisons resample them together.
        cluster = _group_value(row, cluster_by, spec.name) if cluster_by else ""
        out.append((inputs, label, key, choices, cluster))
    return out


def _assign(plan: SplitPlan, split_key: str) -> Role:
    # The key is the inputs (or the group): duplicated texts, or rows of one group, land in the
    # same split whatever their labels, so they can never leak from train into test.
    u = _unit_interval(plan.seed, split_key)
    acc = 0.0
    chosen: Role = "test"
    for role in ROLES:
        frac = plan.fractions.get(role, 0.0)
        if frac <= 0:
            continue
        acc += frac
        chosen = role
        if u < acc:
            return role
    return chosen


Labelled = tuple[tuple[str, ...], str, tuple[str, ...], str]


def _example(spec: TaskSpec, idx: int, item: Labelled) -> Example:
    inputs, label, choices, cluster = item
    uid = example_uid(inputs, label, choices)
    if spec.kind == "multiple_choice":
        return Example(idx, uid, inputs, choices.index(label), choices=choices, cluster=cluster)
    if spec.kind == "generation":
        return Example(idx, uid, inputs, -1, target=label, cluster=cluster)
    return Example(idx, uid, inputs, spec.labels.index(label), cluster=cluster)


def _examples(spec: TaskSpec, pairs: list[Labelled], role: Role) -> list[Example]:
    every = [_example(spec, i, item) for i, item in enumerate(pairs)]
    kept = sample_examples(every, spec.splits.limits.get(role), spec.splits.seed)
    # Positions are renumbered after the cap: idx is the example's place in the split as used.
    return [replace(ex, idx=pos) for pos, ex in enumerate(kept)]


def build_task_data(
    spec: TaskSpec,
    raw: dict[str, list[dict[str, Any]]],
    origins: Mapping[str, Path] | None = None,
) -> TaskData:
    """Turn raw rows (keyed by role, or by "all" for one pool) into a ``TaskData``.

    ``origins`` names the file each key's rows came from, for error messages."""
    if not any(raw.values()):
        raise DataError(f"task {spec.name!r}: the data source gave no rows")
    by_role: dict[Role, list[Labelled]] = {}
    for key, rows in raw.items():
        if rows:
            where = str(origins[key]) if origins and key in origins else f"the {key!r} data"
            _check_columns(spec, rows, where)
        usable = _to_pairs(spec, rows)
        if key == "all":
            for inputs, label, split_key, choices, cluster in usable:
                role = _assign(spec.splits, split_key)
                by_role.setdefault(role, []).append((inputs, label, choices, cluster))
        elif key in ROLES:
            by_role.setdefault(key, []).extend((i, lab, c, g) for i, lab, _, c, g in usable)
        else:
            raise DataError(f"task {spec.name!r}: unknown split role {shown(key, 30)}")
    if not any(by_role.values()):
        raise DataError(f"task {spec.name!r}: no usable examples after label mapping")
    splits = {role: _examples(spec, by_role[role], role) for role in ROLES if by_role.get(role)}
    digest = canonical_json(
        {"spec": spec.canonical(), "splits": {r: [e.uid for e in ex] for r, ex in splits.items()}}
    )
    return TaskData(spec=spec, splits=splits, data_hash=sha256_text(digest))


def load_task_data(spec: TaskSpec, base_dir: Path | None = None) -> TaskData:
    """Read a task's source and build its examples."""
    from bench.tasks.sources import local_files, read_source

    raw = read_source(spec.source, base_dir)
    return build_task_data(spec, raw, local_files(spec.source, base_dir))


def sample_examples(examples: Sequence[Example], n: int | None, seed: int) -> list[Example]:
    """A seeded, order-independent sample of ``n`` examples, kept in split order.

    Used for ``--limit``: a prefix of a file sorted by label (VADER's movie snippets are) would
    be a biased sample.
    """
    if n is None or n >= len(examples):
        return list(examples)
    ranked = sorted(examples, key=lambda ex: _unit_interval(seed, "limit:" + ex.uid))
    return sorted(ranked[:n], key=lambda ex: ex.idx)


def label_counts(examples: Sequence[Example], k: int) -> list[int]:
    counts = [0] * k
    for ex in examples:
        counts[ex.label] += 1
    return counts


# Below this many examples a test split's accuracy has a 95% CI wider than about +-10 points.
SMALL_SPLIT = 100


def small_split_warning(data: TaskData, role: Role = "test") -> str | None:
    """A one-line warning when ``role`` has fewer than ``SMALL_SPLIT`` examples, else None.

    Printed by ``bench tasks show`` and before a run on that split: a small split gives wide
    intervals, and a surprisingly small one usually means the data was split where it should not
    have been.
    """
    n = len(data.splits.get(role, []))
    if n == 0 or n >= SMALL_SPLIT:
        # An empty split is not a warning: using it is an error of its own.
        return None
    return (
        f"warning: task {data.spec.name!r} has only {n} {role} example(s); results on fewer than "
        f"{SMALL_SPLIT} have wide confidence intervals"
    )


def split_summary(data: TaskData) -> list[str]:
    """One line per split: its size and, for a classification task, how many examples carry each
    label (multiple-choice and generation answers come from the data: the size alone)."""
    spec = data.spec
    lines = []
    for role in ROLES:
        examples = data.splits.get(role, [])
        line = f"{role}: n={len(examples)}"
        if spec.kind == "classification" and examples:
            counts = label_counts(examples, len(spec.labels))
            line += " (" + ", ".join(f"{n} {c}" for n, c in zip(spec.labels, counts, strict=True))
            line += ")"
        lines.append(line)
    return lines
