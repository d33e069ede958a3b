"""Attack-suite and transfer-suite YAML, fuzzed through the real CLI.

Suites go through ``bench attack`` with a task file that does not exist: the suite is read and
every attack resolved before the task is looked at, so a valid suite ends in "task file ... not
found" and nothing is ever attacked. Transfer suites only ever name tasks that do not exist, so a
valid one ends in an unknown task before anything is trained.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given

from .conftest import COUNTS
from .fuzzkit import (
    Case,
    assert_one_line_error,
    assert_store_untouched,
    check_case,
    fuzz_env,
    fuzz_settings,
    run_cli,
)
from .hostile import FAKE_TASKS, dump, folder, suite_cases, transfer_cases

ATTACK = (
    "attack",
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
SUITE_MENTIONS = ("suite.yaml", "no-task.yaml")


def suite(id: str, content: str | bytes, **kw: object) -> Case:
    return Case(id, ATTACK, {"suite.yaml": content}, mentions=SUITE_MENTIONS, **kw)  # type: ignore[arg-type]


def composite_bomb(levels: int, fanout: int) -> str:
    """A composite transformation whose parts are the previous level, ``fanout`` times: resolved
    naively, the work multiplies by ``fanout`` per level."""
    rows = ["  - &t0 {type: qwerty}"]
    for i in range(1, levels):
        parts = ", ".join([f"*t{i - 1}"] * fanout)
        rows.append(f"  - &t{i} {{type: composite, params: {{of: [{parts}]}}}}")
    return (
        "name: bomb\nparts:\n" + "\n".join(rows) + "\nattacks:\n  - name: a\n    composition:\n"
        f"      transformation: *t{levels - 1}\n      search: {{type: greedy}}\n"
    )


def composite_bomb_valid(levels: int, fanout: int) -> str:
    """The same bomb as a valid suite (no extra top-level key): anchors defined in place."""
    inner = "{type: qwerty}"
    text = "&t0 " + inner
    for i in range(1, levels):
        text = (
            f"&t{i} {{type: composite, params: {{of: [{text}, "
            + ", ".join([f"*t{i - 1}"] * (fanout - 1))
            + "]}}"
        )
    return (
        "name: bomb\nattacks:\n  - name: a\n    composition:\n"
        f"      transformation: {text}\n      search: {{type: greedy}}\n"
    )


SUITE_CASES = [
    suite("not_utf8", b"name: caf\xe9\nattacks: []\n"),
    suite("deep", "name: x\nattacks: " + "[" * 1000 + "]" * 1000 + "\n"),
    suite("composite_bomb", composite_bomb(levels=7, fanout=9), max_seconds=1),
    suite("composite_bomb_in_place", composite_bomb_valid(levels=7, fanout=9), max_seconds=1),
    # Under the node cap: each shared composite must be resolved once, not 4^7 times.
    suite("composite_dag_under_cap", composite_bomb_valid(levels=7, fanout=4), max_seconds=1),
    suite("cyclic", "name: x\nattacks: &a [*a]\n", max_seconds=1),
    suite(
        "params_bomb",
        "name: x\nattacks:\n  - name: a\n    recipe: deepwordbug\n    params:\n"
        "      max_edit_distance: &p0 [1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
        + "".join(
            f"      p{i}: &p{i} [" + ", ".join([f"*p{i - 1}"] * 9) + "]\n" for i in range(1, 7)
        ),
        max_seconds=1,
    ),
    suite(
        "bad_type_message_capped",
        dump(
            {
                "name": "x",
                "attacks": [
                    {
                        "name": "a",
                        "recipe": "deepwordbug",
                        "params": {"max_edit_distance": "x" * 9000},
                    }
                ],
            }
        ),
    ),
    suite("empty", ""),
    suite("no_attacks", "name: x\nattacks: []\n"),
    suite("unknown_recipe", "name: x\nattacks: [{name: a, recipe: textfoolr}]\n"),
    suite(
        "unknown_component",
        "name: x\nattacks: [{name: a, composition: {transformation: {type: wordnett}, search: {type: greedy}}}]\n",
    ),
    suite(
        "component_part_with_bad_key",
        "name: x\nattacks: [{name: a, composition: {transformation: {type: composite, params: {of: [{type: qwerty, huge: "
        + "y" * 5000
        + "}]}}, search: {type: greedy}}}]\n",
    ),
    suite(
        "nan_threshold",
        "name: x\nattacks: [{name: a, recipe: textfooler, params: {use_threshold: .nan}}]\n",
    ),
    suite(
        "huge_int_param",
        "name: x\nattacks: [{name: a, recipe: deepwordbug, params: {max_edit_distance: 0x"
        + "f" * 40
        + "}}]\n",
    ),
    suite(
        "negative_beam",
        "name: x\nattacks: [{name: a, composition: {transformation: {type: qwerty}, search: {type: beam, params: {beam_width: -1}}}}]\n",
    ),
    suite(
        "attack_name_newline", dump({"name": "x", "attacks": [{"name": "a\n", "recipe": "pruthi"}]})
    ),
    suite(
        "suite_name_newline", dump({"name": "x\n", "attacks": [{"name": "a", "recipe": "pruthi"}]})
    ),
    suite(
        "duplicate_attacks",
        "name: x\nattacks: [{name: a, recipe: pruthi}, {name: a, recipe: pruthi}]\n",
    ),
    suite(
        "recipe_and_composition", "name: x\nattacks: [{name: a, recipe: pruthi, composition: {}}]\n"
    ),
    Case("suite_is_folder", ATTACK, {"suite.yaml": folder}, mentions=("suite.yaml",)),
    Case("suite_missing", ATTACK, mentions=("suite.yaml",)),
    suite("valid", "name: x\nattacks: [{name: a, recipe: pruthi}]\n"),
]


@pytest.mark.parametrize("case", SUITE_CASES, ids=lambda c: c.id)
def test_suite_corpus(case: Case, fuzz_root: Path) -> None:
    result = check_case(case, fuzz_root / f"suite-{case.id}")
    if case.id == "valid" or case.id == "composite_dag_under_cap":
        # A valid suite gets as far as the missing task: it was fully resolved.
        assert "no-task.yaml" in result.stderr, result.stderr
    COUNTS["suite YAML (corpus)"] += 1


def test_generated_suites(fuzz_root: Path) -> None:
    count = 0

    @fuzz_settings(80)
    @given(suite_cases())
    def check(case: tuple[bytes, str]) -> None:
        nonlocal count
        count += 1
        content, how = case
        where = fuzz_root / f"gen-suite-{count}"
        where.mkdir()
        (where / "suite.yaml").write_bytes(content)
        argv = [a.replace("{dir}", str(where)) for a in ATTACK]
        result = run_cli(argv, fuzz_env(where))
        assert result.seconds < 10, how
        # Never valid end to end: the task does not exist.
        assert_one_line_error(result, SUITE_MENTIONS)
        assert not (where / "r.sqlite").exists()
        assert_store_untouched(where / "store.sqlite")

    check()
    COUNTS["suite YAML (generated)"] += count
    assert count >= 50


TRANSFER = (
    "transfer",
    "--suite",
    "{dir}/transfer.yaml",
    "--db",
    "{dir}/r.sqlite",
    "--out",
    "{dir}/report",
    "--device",
    "cpu",
    "--no-progress",
)
TRANSFER_MENTIONS = ("transfer.yaml", *FAKE_TASKS)


def transfer(id: str, content: str | bytes, **kw: object) -> Case:
    return Case(id, TRANSFER, {"transfer.yaml": content}, mentions=TRANSFER_MENTIONS, **kw)  # type: ignore[arg-type]


VALID_TRANSFER = "train_tasks: [no_such_task_a]\ntest_tasks: [no_such_task_b]\n"
TRANSFER_CASES = [
    transfer("not_utf8", b"name: caf\xe9\n" + VALID_TRANSFER.encode()),
    transfer("deep", "train_tasks: " + "[" * 1000 + "]" * 1000 + "\n"),
    transfer(
        "alias_bomb",
        "x: &a0 [a, a, a, a, a, a, a, a, a]\n"
        + "".join(f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 8))
        + VALID_TRANSFER,
        max_seconds=1,
    ),
    transfer("seeds_negative", VALID_TRANSFER + "seeds: [-1]\n"),
    transfer("seeds_huge", VALID_TRANSFER + "seeds: [4294967296]\n"),
    transfer("lr_inf", VALID_TRANSFER + "recipe: {lr: .inf}\n"),
    transfer("lr_nan", VALID_TRANSFER + "recipe: {lr: .nan}\n"),
    transfer("max_train_zero", VALID_TRANSFER + "max_train: 0\n"),
    transfer("unknown_key", VALID_TRANSFER + "sedes: [1]\n"),
    transfer("list_document", "- train_tasks\n"),
    transfer("duplicate_tasks", "train_tasks: [a, a]\ntest_tasks: [b]\n"),
    # The report folder is reports/transfer/NAME: these wrote outside it.
    *(
        Case(
            f"name_{i}",
            TRANSFER,
            {"transfer.yaml": f"name: {name}\n" + VALID_TRANSFER},
            mentions=("transfer suite name",),
        )
        for i, name in enumerate(["../../escape", "/tmp/abs-escape", "'a/b'", "'.'"])
    ),
    Case("transfer_is_folder", TRANSFER, {"transfer.yaml": folder}, mentions=("transfer.yaml",)),
    Case("transfer_missing", TRANSFER, mentions=("transfer.yaml",)),
    Case(
        "transfer_unknown_name",
        ("transfer", "--suite", "no-such-suite", "--out", "{dir}/report"),
        mentions=("no-such-suite",),
    ),
    transfer("valid", VALID_TRANSFER),
]


@pytest.mark.parametrize("case", TRANSFER_CASES, ids=lambda c: c.id)
def test_transfer_corpus(case: Case, fuzz_root: Path) -> None:
    check_case(case, fuzz_root / f"transfer-{case.id}")
    COUNTS["transfer YAML (corpus)"] += 1


def test_generated_transfer_suites(fuzz_root: Path) -> None:
    count = 0

    @fuzz_settings(50)
    @given(transfer_cases())
    def check(case: tuple[bytes, str]) -> None:
        nonlocal count
        count += 1
        content, how = case
        where = fuzz_root / f"gen-transfer-{count}"
        where.mkdir()
        (where / "transfer.yaml").write_bytes(content)
        argv = [a.replace("{dir}", str(where)) for a in TRANSFER]
        result = run_cli(argv, fuzz_env(where))
        assert result.seconds < 10, how
        assert_one_line_error(result, TRANSFER_MENTIONS)
        assert_store_untouched(where / "r.sqlite")
        assert not (where / "report").exists()

    check()
    COUNTS["transfer YAML (generated)"] += count
    assert count >= 40
