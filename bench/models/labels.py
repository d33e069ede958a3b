"""Align a model's output labels with a task's labels, by name and never by position.

A model trained on the same classes in another order, or a 3-way NLI model on a 2-way task, is
handled by a 0/1 matrix that routes each model label's probability to one task label. Nothing is
guessed: names must match (up to case and separators), or the task declares aliases, or the user
passes an explicit map.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.errors import ModelError

_SEPARATORS = re.compile(r"[\s\-_]+")


def normalise_label(name: str) -> str:
    """Case and separators do not distinguish labels: ``Not_Entailment`` == ``not entailment``."""
    return _SEPARATORS.sub("", name).lower()


def _fmt(names: Sequence[str]) -> str:
    return "[" + ", ".join(names) + "]"


@dataclass(frozen=True)
class LabelAlignment:
    """Model labels routed to task labels.

    ``matrix[i, j] == 1`` when model label ``i`` counts as task label ``j``; each row has exactly
    one 1 and each column at least one. ``rules`` records why each model label was mapped
    (``override``, ``name`` or ``alias``).
    """

    model_labels: list[str]
    task_labels: list[str]
    matrix: np.ndarray
    mapping: dict[str, str]
    rules: dict[str, str] = field(default_factory=dict)

    @property
    def is_identity(self) -> bool:
        """Same labels in the same order: probabilities pass through unchanged."""
        return self.matrix.shape[0] == self.matrix.shape[1] and bool(
            np.array_equal(self.matrix, np.eye(self.matrix.shape[0]))
        )

    def to_task_probs(self, logits: np.ndarray) -> np.ndarray:
        """Softmax over model labels, then sum the probabilities routed to each task label."""
        z = np.asarray(logits, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != len(self.model_labels):
            raise ValueError(
                f"logits of shape {z.shape} do not match {len(self.model_labels)} model labels"
            )
        z = z - z.max(axis=1, keepdims=True)
        probs = np.exp(z)
        probs /= probs.sum(axis=1, keepdims=True)
        out: np.ndarray = probs @ self.matrix
        return out


def _suggestion(model_labels: Sequence[str], task_labels: Sequence[str]) -> str:
    # The syntax, shown on the first pair only: a positional guess is exactly what must not happen.
    first = f"{model_labels[0]}={task_labels[0]}" if model_labels and task_labels else "A=b"
    return f"pass a label map (--label-map {first},...)"


def align_labels(
    model_labels: list[str],
    task_labels: list[str],
    aliases: dict[str, str] | None = None,
    override: dict[str, str] | None = None,
) -> LabelAlignment:
    """Map every model label to a task label.

    An explicit ``override`` (model label -> task label) must cover every model label and is used
    alone. Otherwise each model label maps to the task label with the same normalised name, else
    through the task's declared ``aliases``. Every model label must land somewhere (an unmapped
    label would silently drop probability mass) and every task label must receive one.
    """
    task_by_norm = {normalise_label(t): t for t in task_labels}
    mapping: dict[str, str] = {}
    rules: dict[str, str] = {}

    if override:
        override_by_norm = {normalise_label(k): v for k, v in override.items()}
        model_norms = {normalise_label(m) for m in model_labels}
        unknown = [k for k in override if normalise_label(k) not in model_norms]
        if unknown:
            raise ModelError(
                f"label map names {_fmt(unknown)}, which are not model labels {_fmt(model_labels)}"
            )
        for m in model_labels:
            target = override_by_norm.get(normalise_label(m))
            if target is None:
                raise ModelError(
                    f"label map does not cover model label {m!r}; map every model label "
                    f"{_fmt(model_labels)} to one of {_fmt(task_labels)}"
                )
            task = task_by_norm.get(normalise_label(target))
            if task is None:
                raise ModelError(
                    f"label map sends {m!r} to {target!r}, which is not a task label "
                    f"{_fmt(task_labels)}"
                )
            mapping[m], rules[m] = task, "override"
    else:
        alias_by_norm = {normalise_label(k): v for k, v in (aliases or {}).items()}
        for m in model_labels:
            norm = normalise_label(m)
            if norm in task_by_norm:
                mapping[m], rules[m] = task_by_norm[norm], "name"
            elif norm in alias_by_norm:
                target = task_by_norm.get(normalise_label(alias_by_norm[norm]))
                if target is None:
                    raise ModelError(
                        f"task alias sends {m!r} to {alias_by_norm[norm]!r}, which is not a task "
                        f"label {_fmt(task_labels)}"
                    )
                mapping[m], rules[m] = target, "alias"
        unmapped = [m for m in model_labels if m not in mapping]
        if len(unmapped) == len(model_labels):
            raise ModelError(
                f"model labels {_fmt(model_labels)} do not match task labels {_fmt(task_labels)}; "
                + _suggestion(model_labels, task_labels)
            )
        if unmapped:
            raise ModelError(
                f"model labels {_fmt(unmapped)} match no task label in {_fmt(task_labels)} "
                "(their probability would be dropped); add task label_aliases or "
                + _suggestion(model_labels, task_labels)
            )

    starved = [t for t in task_labels if t not in mapping.values()]
    if starved:
        raise ModelError(
            f"task labels {_fmt(starved)} receive no model label from {_fmt(model_labels)}; "
            + _suggestion(model_labels, task_labels)
        )
    matrix = np.zeros((len(model_labels), len(task_labels)), dtype=np.float64)
    column = {t: j for j, t in enumerate(task_labels)}
    for i, m in enumerate(model_labels):
        matrix[i, column[mapping[m]]] = 1.0
    return LabelAlignment(list(model_labels), list(task_labels), matrix, mapping, rules)
