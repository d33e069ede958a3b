"""Behavioural-suite YAML (issue 15), fuzzed through the real CLI.

Suites go through ``bench behave`` with a task file that does not exist: the suite is read and
checked before the task is looked at, so a valid suite ends in "task file ... not found" and no
model is ever loaded. Every bad suite must be one ``error:`` line naming the suite file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import COUNTS
from .fuzzkit import Case, check_case

BEHAVE = (
    "behave",
    "--task",
    "{dir}/no-task.yaml",
    "--model",
    "{dir}/no-model",
    "--no-progress",
    "--db",
    "{dir}/r.sqlite",
    "--suite",
    "{dir}/suite.yaml",
)

GOOD = """name: s
inputs: [text]
labels: [negative, positive]
lexicons:
  thing: [movie, film]
  adj: [good, great]
tests:
  - name: t
    capability: c
    type: mft
    templates: ["The {thing} was {adj}."]
    label: positive
"""


def suite(id: str, content: str | bytes, **kw: object) -> Case:
    # The error names the suite file (a case may ask for something more specific instead).
    kw.setdefault("mentions", ("suite.yaml",))
    return Case(id, BEHAVE, {"suite.yaml": content}, **kw)  # type: ignore[arg-type]


def edit(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


def alias_bomb(levels: int) -> str:
    rows = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(rows) + f"\nname: s\nlexicons: {{x: *a{levels - 1}}}\n"


CASES = [
    suite("python_tag", "!!python/object/apply:os.system ['echo pwned']\n", forbidden=("pwned",)),
    suite("alias_bomb", alias_bomb(9), max_seconds=3.0),
    suite("not_a_mapping", "- a\n- b\n"),
    suite("empty", ""),
    suite("unknown_slot", edit("{adj}.", "{colour}."), mentions=("suite.yaml: test 't': template 1 names slot {colour}",)),
    suite("unclosed_brace", edit("{adj}.", "{adj.")),
    suite("stray_brace", edit("{adj}.", "{adj}}.")),
    suite("bad_slot_syntax", edit("{adj}.", "{adj:0}.")),
    suite("slot_with_attribute", edit("{adj}.", "{adj.__class__}.")),
    suite("slot_with_format_spec", edit("{adj}.", "{adj!r}.")),
    suite("draw_beyond_lexicon", edit("{adj}.", "{adj:3}.")),
    suite("unknown_label", edit("label: positive", "label: happy")),
    suite(
        "unknown_swap_key",
        edit("type: mft", "type: inv")
        .replace("label: positive", "perturb: {swap: nobody}"),
        mentions=("unknown lexicon key 'nobody'",),
    ),
    suite(
        "two_perturbations",
        edit("type: mft", "type: inv").replace(
            "label: positive", "perturb: {swap: thing, typo: 1}"
        ),
    ),
    suite("typo_too_many", edit("type: mft", "type: inv").replace("label: positive", "perturb: {typo: 1000}")),
    suite("huge_n", edit("label: positive", "label: positive\n    n: 1000000000")),
    suite("code_field", edit("label: positive", "label: positive\n    code: import os")),
    suite("empty_lexicon", edit("adj: [good, great]", "adj: []")),
    suite("edge_spaces", edit("adj: [good, great]", "adj: [' good', great]")),
    suite("repeated_entry", edit("adj: [good, great]", "adj: [good, good]")),
    suite("bad_lexicon_key", edit("adj: [good, great]", "'a-dj': [good, great]")),
    suite("three_columns", edit("inputs: [text]", "inputs: [a, b, c]")),
    suite("no_tests", GOOD.split("tests:")[0] + "tests: []\n"),
    suite("duplicate_tests", GOOD + GOOD[GOOD.index("  - name") :]),
    suite("bad_test_name", edit("name: t", "name: ../../t")),
    suite("template_number", edit('["The {thing} was {adj}."]', "[42]")),
    suite("template_mapping_for_one_column", edit('["The {thing} was {adj}."]', "[{text: a, other: b}]")),
    suite("dir_without_expect", edit("type: mft", "type: dir").replace("label: positive", "variants: [x]")),
    suite("direction_sideways", edit("type: mft", "type: dir").replace(
        "label: positive", "variants: [x]\n    expect: {label: positive, direction: sideways}")),
    suite("task_source_with_templates", edit("type: mft", "type: inv").replace(
        "label: positive", "source: task\n    perturb: {typo: 1}")),
    suite("not_utf8", b"name: \xff\xfe\n"),
    suite("deep_nesting", "name: " + "[" * 200 + "]" * 200 + "\n"),
    suite("valid", GOOD, mentions=("no-task.yaml",)),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_behave_suite_corpus(case: Case, fuzz_root: Path) -> None:
    result = check_case(case, fuzz_root / f"behave-{case.id}")
    if case.id == "valid":
        # A valid suite gets as far as the missing task: it was read and checked.
        assert "no-task.yaml" in result.stderr, result.stderr
    COUNTS["behaviour suite YAML (corpus)"] += 1
