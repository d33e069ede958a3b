"""Expanding a behavioural suite into test cases: seeded, deterministic, data only.

Each test draws its cases from its own random stream, seeded by (seed, suite name, test name),
so adding a test changes no other test's cases, and the same seed gives the same cases on any
machine. A case fills every slot of one template (and of its variant and perturbation text)
with lexicon entries; ``{x}`` and ``{x:2}`` are different entries. Cases are distinct: a test
asks for ``n`` and gets fewer when its templates have fewer combinations (or, for a
perturbation that cannot apply, such as a name swap on a text without names, fewer cases it
applies to).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bench.behave.spec import (
    BehaveSuite,
    BehaveTest,
    Perturbation,
    columns_of,
    fill,
    template_slots,
)
from bench.errors import SpecError, shown
from bench.specs import canonical_json, sha256_text

# Draws per wanted case before a test settles for fewer distinct cases.
_ATTEMPTS = 30


@dataclass(frozen=True)
class Case:
    """One test case: the inputs (every column), the variant (inv and dir; empty for mft) and
    the task label index it expects (-1 when the test expects none, as invariance tests)."""

    test: str
    test_type: str
    inputs: tuple[str, ...]
    variant: tuple[str, ...]
    expected: int
    uid: str


def rng_for(seed: int, suite: str, test: str) -> random.Random:
    return random.Random(int(sha256_text(f"{seed}:{suite}:{test}")[:16], 16))


def case_uid(test: str, inputs: Sequence[str], variant: Sequence[str]) -> str:
    return sha256_text(canonical_json([test, list(inputs), list(variant)]))[:16]


def check_fits(
    suite: BehaveSuite,
    origin: str,
    task_inputs: Sequence[str],
    task_labels: Sequence[str],
    task_name: str,
) -> None:
    """Refuse a suite a task cannot take: another number of input columns, or a label the
    task does not have. Columns are matched by position when their names differ (an NLI suite's
    premise and hypothesis are a fact-checking task's evidence and claim)."""
    from bench.models.labels import normalise_label

    if len(task_inputs) != len(suite.inputs):
        raise SpecError(
            f"behaviour suite {origin} fills {len(suite.inputs)} column(s) "
            f"({', '.join(suite.inputs)}) but task {shown(task_name, 40)} takes "
            f"{len(task_inputs)} ({', '.join(task_inputs)}); choose a suite for its columns"
        )
    have = {normalise_label(label) for label in task_labels}
    missing = [label for label in suite.labels if normalise_label(label) not in have]
    if missing:
        raise SpecError(
            f"behaviour suite {origin} expects label {shown(missing[0], 30)}, which task "
            f"{shown(task_name, 40)} does not have (labels: {', '.join(task_labels)})"
        )


def label_index(label: str, task_labels: Sequence[str]) -> int:
    from bench.models.labels import normalise_label

    wanted = normalise_label(label)
    return next(i for i, name in enumerate(task_labels) if normalise_label(name) == wanted)


def expand(
    suite: BehaveSuite,
    task_labels: Sequence[str],
    seed: int = 0,
    task_examples: Sequence[tuple[str, ...]] = (),
) -> list[Case]:
    """Every test's cases, in suite order. ``task_examples`` are the base cases of tests whose
    source is the task (the caller's seeded sample of its test split)."""
    cases: list[Case] = []
    for test in suite.tests:
        rng = rng_for(seed, suite.name, test.name)
        expected = -1
        wanted = test.label if test.type == "mft" else (test.expect.label if test.expect else None)
        if wanted is not None:
            expected = label_index(wanted, task_labels)
        if test.source == "task":
            pairs = _from_task(suite, test, rng, task_examples)
        else:
            pairs = _from_templates(suite, test, rng)
        cases.extend(
            Case(
                test.name,
                test.type,
                inputs,
                variant,
                expected,
                case_uid(test.name, inputs, variant),
            )
            for inputs, variant in pairs
        )
    return cases


def _draw(
    rng: random.Random, lexicons: dict[str, list[str]], slots: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], str]:
    """Values for ``slots``: the draws of one lexicon are distinct entries."""
    values: dict[tuple[str, int], str] = {}
    for name in sorted({s[0] for s in slots}):
        draws = sorted({d for n, d in slots if n == name})
        picked = rng.sample(lexicons[name], max(draws))
        for d in draws:
            values[name, d] = picked[d - 1]
    return values


def _from_templates(
    suite: BehaveSuite, test: BehaveTest, rng: random.Random
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    out: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    extra = [t for t in (test.perturb.append, test.perturb.prepend) if t] if test.perturb else []
    for _ in range(test.n * _ATTEMPTS):
        if len(out) >= test.n:
            break
        t = rng.randrange(len(test.templates))
        base = columns_of(test.templates[t], suite.inputs)
        variant = columns_of(test.variants[t], suite.inputs) if test.variants else None
        texts = [*base.values(), *(variant.values() if variant else ()), *extra]
        slots = [s for text in texts for s in template_slots(text)]
        values = _draw(rng, suite.lexicons, slots)
        inputs = tuple(fill(base[c], values) for c in suite.inputs)
        if variant is not None:
            changed: tuple[str, ...] | None = tuple(fill(variant[c], values) for c in suite.inputs)
        else:
            assert test.perturb is not None or test.type == "mft"
            changed = perturb(suite, test.perturb, inputs, rng, values) if test.perturb else ()
        if changed is None:
            continue
        key = (inputs, changed)
        if key in seen:
            continue
        seen.add(key)
        out.append(key)
    return out


def _from_task(
    suite: BehaveSuite,
    test: BehaveTest,
    rng: random.Random,
    examples: Sequence[tuple[str, ...]],
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    assert test.perturb is not None
    order = list(range(len(examples)))
    rng.shuffle(order)
    out: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    for i in order:
        if len(out) >= test.n:
            break
        inputs = tuple(examples[i])
        extra = [t for t in (test.perturb.append, test.perturb.prepend) if t]
        values = _draw(rng, suite.lexicons, [s for t in extra for s in template_slots(t)])
        changed = perturb(suite, test.perturb, inputs, rng, values)
        if changed is None or (inputs, changed) in seen:
            continue
        seen.add((inputs, changed))
        out.append((inputs, changed))
    return out


# --------------------------------------------------------------------------------------------------
# Perturbations: each returns the changed inputs, or None when it does not apply to this case


def perturb(
    suite: BehaveSuite,
    p: Perturbation,
    inputs: tuple[str, ...],
    rng: random.Random,
    values: dict[tuple[str, int], str],
) -> tuple[str, ...] | None:
    columns = list(suite.inputs)
    target = columns.index(p.column) if p.column else len(columns) - 1
    if p.swap is not None:
        chosen = None if p.column is None else [target]
        return _swap(inputs, suite.lexicons[p.swap], rng, chosen)
    text = inputs[target]
    new: str | None
    if p.append is not None:
        new = text.rstrip() + " " + fill(p.append, values)
    elif p.prepend is not None:
        new = fill(p.prepend, values) + " " + text.lstrip()
    elif p.typo is not None:
        new = _typos(text, p.typo, rng)
    elif p.replace is not None:
        new = _replace(text, suite.pairs[p.replace])
    else:
        new = _punctuation(text)
    if new is None or new == text:
        return None
    return tuple(new if i == target else t for i, t in enumerate(inputs))


def _pattern(entries: Sequence[str]) -> re.Pattern[str]:
    # Longest first, so "New York City" is found before "New York"; whole words only.
    alternatives = "|".join(re.escape(e) for e in sorted(entries, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def _swap(
    inputs: tuple[str, ...], lexicon: list[str], rng: random.Random, columns: list[int] | None
) -> tuple[str, ...] | None:
    """Each distinct lexicon entry found is replaced by another entry (the same one wherever it
    occurs, in every column: a name in the premise and the hypothesis stays one person)."""
    pattern = _pattern(lexicon)
    where = columns if columns is not None else list(range(len(inputs)))
    found: list[str] = []
    for i in where:
        for m in pattern.finditer(inputs[i]):
            if m.group(0) not in found:
                found.append(m.group(0))
    if not found:
        return None
    others = [e for e in lexicon if e not in found]
    if len(others) < len(found):
        return None
    mapping = dict(zip(found, rng.sample(others, len(found)), strict=True))
    return tuple(
        pattern.sub(lambda m: mapping[m.group(0)], text) if i in where else text
        for i, text in enumerate(inputs)
    )


_WORD = re.compile(r"[A-Za-z]{4,}")


def _typos(text: str, count: int, rng: random.Random) -> str | None:
    """``count`` words of four letters or more each get two adjacent letters swapped."""
    words = [m for m in _WORD.finditer(text)]
    if not words:
        return None
    chosen = sorted(rng.sample(words, min(count, len(words))), key=lambda m: m.start())
    out = []
    last = 0
    for m in chosen:
        word = m.group(0)
        spots = [j for j in range(len(word) - 1) if word[j] != word[j + 1]]
        if not spots:
            continue
        j = rng.choice(spots)
        swapped = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
        out.append(text[last : m.start()] + swapped)
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def _replace(text: str, pairs: list[tuple[str, str]]) -> str | None:
    """Every first-of-a-pair found becomes its second (``is not`` -> ``isn't``); when none is
    found, every second found becomes its first (expanding instead of contracting)."""
    for direction in ((0, 1), (1, 0)):
        mapping = {p[direction[0]]: p[direction[1]] for p in pairs}
        pattern = _pattern(list(mapping))
        if pattern.search(text):
            return _sub(pattern, mapping, text)
    return None


def _sub(pattern: re.Pattern[str], mapping: dict[str, str], text: str) -> str:
    return pattern.sub(lambda m: mapping[m.group(0)], text)


def _punctuation(text: str) -> str:
    """Trailing punctuation removed, or a full stop added where there is none."""
    stripped = text.rstrip()
    bare = stripped.rstrip(".!?")
    return bare if bare != stripped else stripped + "."
