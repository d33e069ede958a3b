"""Gate configs, fuzzed: hostile YAML and malformed or nonsensical gate configs through
`bench gate`, each refused in one line, before any run is looked up when the config is bad."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .conftest import COUNTS
from .fuzzkit import Case, assert_one_line_error, check_case, fuzz_env, fuzz_settings, run_cli
from .hostile import CORRUPTION_NAMES, HOSTILE_STRINGS, chance, corrupt, dump, folder


def _empty_store(path: Path) -> None:
    from bench.store import ResultStore

    ResultStore(path).close()


GATE = ("gate", "--config", "{dir}/gate.yaml", "--db", "{dir}/r.sqlite")
STORE = {"r.sqlite": _empty_store}
# A config that is valid gets as far as looking up runs, which the empty store has none of.
MENTIONS = ("gate.yaml", "no stored run", "--baseline")


def gate(id: str, content: str | bytes, **kw: Any) -> Case:
    return Case(id, GATE, {**STORE, "gate.yaml": content}, mentions=MENTIONS, **kw)


BASE = "baseline: a\ncandidate: b\n"
GATE_CASES = [
    gate("empty", ""),
    gate("a_list", "- a\n- b\n"),
    gate("a_scalar", "42\n"),
    gate("no_checks", BASE),
    gate("checks_not_a_list", BASE + "checks: {task: x}\n"),
    gate("check_not_a_mapping", BASE + "checks: [x]\n"),
    gate("unknown_field", BASE + "colour: red\nchecks: [{task: x}]\n"),
    gate("unknown_check_field", BASE + "checks: [{task: x, wat: 1}]\n"),
    gate("empty_task", BASE + "checks: [{task: ''}]\n"),
    gate("long_task", BASE + "checks: [{task: " + "x" * 5000 + "}]\n"),
    gate("unknown_metric", BASE + "checks: [{task: x, metric: auroc}]\n"),
    gate("negative_margin", BASE + "checks: [{task: x, margin: -0.1}]\n"),
    gate("margin_above_one", BASE + "margin: 2\nchecks: [{task: x}]\n"),
    gate("nan_margin", BASE + "margin: .nan\nchecks: [{task: x}]\n"),
    gate("inf_margin", BASE + "checks: [{task: x, margin: .inf}]\n"),
    gate("alpha_zero", BASE + "alpha: 0\nchecks: [{task: x}]\n"),
    gate("alpha_half", BASE + "alpha: 0.5\nchecks: [{task: x}]\n"),
    gate("tiny_bootstrap", BASE + "n_bootstrap: 3\nchecks: [{task: x}]\n"),
    gate("huge_bootstrap", BASE + "n_bootstrap: 100000000\nchecks: [{task: x}]\n"),
    gate("negative_seed", BASE + "seed: -1\nchecks: [{task: x}]\n"),
    gate("bad_inconclusive", BASE + "inconclusive: maybe\nchecks: [{task: x}]\n"),
    gate("bad_correction", BASE + "correction: sidak\nchecks: [{task: x}]\n"),
    gate("attack_without_suite", BASE + "checks: [{task: x, attack: deepwordbug}]\n"),
    gate("template_without_shots", BASE + "checks: [{task: x, template: 2}]\n"),
    gate("suite_and_shots", BASE + "checks: [{task: x, suite: typos, shots: 0}]\n"),
    gate("ece_under_attack", BASE + "checks: [{task: x, suite: typos, metric: ece}]\n"),
    gate("negative_shots", BASE + "checks: [{task: x, shots: -1}]\n"),
    gate("template_zero", BASE + "checks: [{task: x, shots: 0, template: 0}]\n"),
    gate("duplicate_checks", BASE + "checks: [{task: x}, {task: x}]\n"),
    gate("too_many_checks", BASE + "checks: [" + ", ".join(["{task: x}"] * 501) + "]\n"),
    gate("not_utf8", (BASE + "checks: [{task: caf\xe9}]\n").encode("latin-1")),
    gate("python_tag", BASE + "checks: [!!python/object/apply:os.system ['true']]\n"),
    gate(
        "alias_bomb",
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
        max_seconds=1.0,
    ),
    gate("deep_nesting", "checks: " + "[" * 1000 + "]" * 1000 + "\n"),
    Case("gate_is_folder", GATE, {**STORE, "gate.yaml": folder}, mentions=("gate.yaml",)),
    Case("gate_missing", GATE, STORE, mentions=("gate.yaml",)),
    gate("valid_but_no_runs", BASE + "checks: [{task: vader_movies}]\n"),
    # An output file in a missing folder is refused before the gate runs, not after its table.
    *(
        Case(
            f"{option[2:]}_in_missing_folder",
            (*GATE, option, "{dir}/no_folder/gate.out"),
            {**STORE, "gate.yaml": BASE + "checks: [{task: vader_movies}]\n"},
            mentions=("no_folder does not exist",),
        )
        for option in ("--json", "--junit")
    ),
]


@pytest.mark.parametrize("case", GATE_CASES, ids=lambda c: c.id)
def test_gate_corpus(case: Case, fuzz_root: Path) -> None:
    check_case(case, fuzz_root / f"gate-{case.id}")
    COUNTS["gate configs (corpus)"] += 1


CHECK_KEYS = ["task", "metric", "suite", "attack", "shots", "template", "margin", "blocking"]
GATE_KEYS = [
    "name",
    "baseline",
    "candidate",
    "margin",
    "alpha",
    "n_bootstrap",
    "seed",
    "inconclusive",
    "correction",
    "advisory_correction",
    "split",
    "limit",
    "checks",
]
VALUES: list[Any] = [
    None, 0, -1, 1, 0.5, 2.5, -0.01, 1e308, "x", "", "accuracy", "ece", "typos", True, [], {},
    float("nan"), float("inf"), 10**30, *HOSTILE_STRINGS[:6],
]  # fmt: skip


@st.composite
def gate_configs(draw: st.DrawFn) -> tuple[bytes, str]:
    checks = []
    for _ in range(draw(st.integers(0, 4))):
        check: dict[str, Any] = {"task": draw(st.sampled_from(["vader_movies", "x", "a/b.yaml"]))}
        for key in CHECK_KEYS[1:]:
            if chance(draw, 0.25):
                check[key] = draw(st.sampled_from(VALUES))
        checks.append(check)
    doc: dict[str, Any] = {"baseline": "a", "candidate": "b", "checks": checks}
    for key in GATE_KEYS:
        if chance(draw, 0.2):
            doc[key] = draw(st.sampled_from(VALUES))
    how = draw(st.sampled_from(CORRUPTION_NAMES))
    return corrupt(dump(doc), how), how


def test_generated_gate_configs(fuzz_root: Path) -> None:
    count = 0

    @fuzz_settings(80)
    @given(gate_configs())
    def check(case: tuple[bytes, str]) -> None:
        nonlocal count
        count += 1
        content, how = case
        where = fuzz_root / f"gen-gate-{count}"
        where.mkdir()
        _empty_store(where / "r.sqlite")
        (where / "gate.yaml").write_bytes(content)
        argv = [a.replace("{dir}", str(where)) for a in GATE]
        result = run_cli(argv, fuzz_env(where))
        assert result.seconds < 10, how
        # Never valid end to end: the store holds no runs.
        assert_one_line_error(result, MENTIONS)

    check()
    COUNTS["gate configs (generated)"] += count
    assert count >= 50
