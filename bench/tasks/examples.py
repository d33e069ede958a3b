"""Examples: the unit every downstream stage works on."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.specs import Role, TaskSpec, canonical_json, sha256_text


def example_uid(inputs: tuple[str, ...], label: str, choices: tuple[str, ...] = ()) -> str:
    """Content hash of one example (inputs, label name or target, and a multiple-choice
    example's options), stable across row order and runs."""
    parts: list[object] = [list(inputs), label]
    if choices:
        parts.append(list(choices))
    return sha256_text(canonical_json(parts))[:16]


@dataclass(frozen=True)
class Example:
    """One labelled example of a task split.

    ``idx`` is the position in its split (the store's key for per-example rows); ``inputs`` holds one
    text or a (first, second) pair in model input order; ``label`` indexes ``TaskSpec.labels``,
    or, in a multiple-choice task, the example's own ``choices``. A generation task's example has
    its reference answer in ``target`` and label -1.
    """

    idx: int
    uid: str
    inputs: tuple[str, ...]
    label: int
    choices: tuple[str, ...] = ()
    target: str = ""
    # The source this example shares with others (the task's ``cluster_by`` or split
    # ``group_by`` value), "" when it stands alone; not part of its identity.
    cluster: str = ""


@dataclass(frozen=True)
class TaskData:
    """A task's spec with its examples per split and a hash of all of it."""

    spec: TaskSpec
    splits: dict[Role, list[Example]] = field(default_factory=dict)
    data_hash: str = ""

    def split(self, role: Role) -> list[Example]:
        from bench.errors import DataError

        examples = self.splits.get(role, [])
        if not examples:
            raise DataError(f"task {self.spec.name!r} has no examples in its {role!r} split")
        return examples


def gold_answer(spec: TaskSpec, example: Example) -> str:
    """The correct answer as text: the label name, the right option, or the target."""
    if spec.kind == "multiple_choice":
        return example.choices[example.label]
    if spec.kind == "generation":
        return example.target
    return spec.labels[example.label]
