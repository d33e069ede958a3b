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


# A model trained without label names (LABEL_0, LABEL_1, ... or bare numbers): only the user knows
# what each means, so a label map is the right fix and the hint may show its syntax.
_GENERIC = re.compile(r"^(label)?\d+$")
# Names that mean the same class. Normalised (see ``normalise_label``).
_SYNONYMS = (
    frozenset({"entailment", "entails", "entailed", "entail"}),
    frozenset({"nonentailment", "notentailment", "noentailment", "notentailed"}),
    frozenset({"contradiction", "contradicts", "contradictory", "contradict"}),
    frozenset({"neutral", "neither"}),
    frozenset({"positive", "pos"}),
    frozenset({"negative", "neg"}),
    frozenset({"yes", "true"}),
    frozenset({"no", "false"}),
)


def _is_generic(name: str) -> bool:
    return bool(_GENERIC.match(normalise_label(name)))


def _related(model_label: str, task_label: str) -> bool:
    """Plausibly the same class: same synonym group, or one name abbreviates the other."""
    m, t = normalise_label(model_label), normalise_label(task_label)
    if m == t or any(m in group and t in group for group in _SYNONYMS):
        return True
    short, long = sorted((m, t), key=len)
    return len(short) >= 3 and long.startswith(short)


def _proposal(
    model_labels: Sequence[str], task_labels: Sequence[str], known: dict[str, str] | None = None
) -> str | None:
    """A ``--label-map`` hint, only when one is plausible: generic model label names (only the
    user knows their meaning), or names that pair up (synonyms, abbreviations). Never a
    positional guess between unrelated names: an NLI model's ``entailment=negative`` is
    nonsense. ``known`` holds the pairs already matched by name or alias."""
    if model_labels and all(_is_generic(m) for m in model_labels):
        # The syntax, shown on the first pair only: the order is the user's to know.
        first = f"{model_labels[0]}={task_labels[0]}" if task_labels else f"{model_labels[0]}=x"
        return f"pass a label map (--label-map {first},...)"
    pairs = dict(known or {})
    guessed = False
    for m in model_labels:
        if m in pairs:
            continue
        candidates = [t for t in task_labels if _related(m, t)]
        if len(candidates) == 1:
            pairs[m], guessed = candidates[0], True
    if not guessed:
        return None
    shown = ",".join(f"{m}={pairs[m]}" for m in model_labels if m in pairs)
    rest = "" if all(m in pairs for m in model_labels) else ",..."
    return f"if the names mean the same, pass a label map (--label-map {shown}{rest})"


def _unrelated(model_labels: Sequence[str], task_labels: Sequence[str]) -> str:
    hint = "the label sets do not correspond (a model trained for another task?)"
    task_norms = {normalise_label(t) for t in task_labels}
    model_norms = {normalise_label(m) for m in model_labels}
    if "entailment" in model_norms and "entailment" not in task_norms:
        hint += "; an NLI model can answer a classification task zero-shot with --adapter nli"
    return hint


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
                + (_proposal(model_labels, task_labels) or _unrelated(model_labels, task_labels))
            )
        if unmapped:
            raise ModelError(
                f"model labels {_fmt(unmapped)} match no task label in {_fmt(task_labels)} "
                "(their probability would be dropped); add task label_aliases for them, or "
                + (
                    _proposal(model_labels, task_labels, mapping)
                    or "a --label-map covering every model label"
                )
            )

    starved = [t for t in task_labels if t not in mapping.values()]
    if starved:
        if override:
            fix = "the label map must send at least one model label to each task label"
        elif len(model_labels) < len(task_labels):
            fix = "the model has no class for them (a model trained for another task?)"
        else:
            fix = "add task label_aliases or a --label-map that sends a model label to each"
        raise ModelError(
            f"task labels {_fmt(starved)} receive no model label from {_fmt(model_labels)}; {fix}"
        )
    matrix = np.zeros((len(model_labels), len(task_labels)), dtype=np.float64)
    column = {t: j for j, t in enumerate(task_labels)}
    for i, m in enumerate(model_labels):
        matrix[i, column[mapping[m]]] = 1.0
    return LabelAlignment(list(model_labels), list(task_labels), matrix, mapping, rules)
