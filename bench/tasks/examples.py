"""Examples: the unit every downstream stage works on."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.specs import Role, TaskSpec, canonical_json, sha256_text


def example_uid(inputs: tuple[str, ...], label: str) -> str:
    """Content hash of one example (inputs and label name), stable across row order and runs."""
    return sha256_text(canonical_json([list(inputs), label]))[:16]


@dataclass(frozen=True)
class Example:
    """One labelled example of a task split.

    ``idx`` is the position in its split (the store's key for per-example rows); ``inputs`` holds one
    text or a (first, second) pair in model input order; ``label`` indexes ``TaskSpec.labels``.
    """

    idx: int
    uid: str
    inputs: tuple[str, ...]
    label: int


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
