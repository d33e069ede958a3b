"""Command lines, fuzzed: every option of every command with values it must refuse, in one line
naming the option, before anything is loaded; plus generated junk values for cheap commands.

The heavy commands (run, attack, finetune, transfer, default) only ever get command lines that
hold one value they must refuse, checked before any model, asset or store is touched; a case that
got further would load or train and blow its time limit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .conftest import COUNTS
from .fuzzkit import (
    Case,
    assert_error_or_success,
    assert_one_line_error,
    assert_store_untouched,
    check_case,
    fuzz_env,
    fuzz_settings,
    run_cli,
)
from .hostile import HOSTILE_STRINGS, folder

TASK = "{dir}/task.yaml"
TASK_FILES = {
    "task.yaml": "name: t\nsource: {type: local, path: ../data/data.jsonl}\ninputs: [text]\n"
    "labels: [neg, pos]\n",
    "a_file": "not a folder\n",
    "a_folder": folder,
    # An empty file is an empty SQLite database: leaderboard options are checked against it.
    "empty.sqlite": b"",
}
# Required options that are fine as far as option checking goes; what they name is looked up
# only after every option was checked.
BASE = {
    "run": ("run", "--task", TASK, "--model", "{dir}/no-model", "--no-progress"),
    "attack": ("attack", "--task", TASK, "--model", "{dir}/no-model", "--no-progress"),
    "finetune": ("finetune", "--task", TASK, "--base", "{dir}/no-base", "--out", "{dir}/out"),
    "transfer": ("transfer", "--train-tasks", "no_such_task", "--out", "{dir}/report"),
    "default": ("default", "--no-progress", "--out", "{dir}/report"),
    "leaderboard": ("leaderboard", "--db", "{dir}/empty.sqlite"),
    "tasks show": ("tasks", "show", TASK),
}

# (command, extra arguments, what the one error line must name). Each must be refused.
BAD: list[tuple[str, tuple[str, ...], str]] = []
for command in ("run", "attack", "finetune", "transfer"):
    BAD += [
        (command, ("--batch-size", "0"), "--batch-size"),
        (command, ("--batch-size", "-3"), "--batch-size"),
        (command, ("--batch-size", "abc"), "--batch-size"),
        (command, ("--batch-size", "1.5"), "--batch-size"),
        (command, ("--batch_size", "4"), "--batch_size"),
        (command, ("--max-length", "0"), "--max-length"),
        (command, ("--max-length", ""), "--max-length"),
        (command, ("--bogus-option",), "--bogus-option"),
        (command, ("--batch-size",), "--batch-size"),
    ]
for command in ("run", "attack", "transfer"):
    BAD += [
        (command, ("--device", device), "--device")
        for device in ("gpu", "cuda:", "cuda:x", "cuda:0 ", "CPU", "", "mps:0", "cuda:0\n", "tpu")
    ]
for command in ("run", "attack", "finetune"):
    BAD += [
        (command, ("--seed", "-1"), "--seed"),
        (command, ("--seed", str(2**32)), "--seed"),
        (command, ("--seed", "one"), "--seed"),
    ]
BAD += [
    ("run", ("--limit", "0"), "--limit"),
    ("run", ("--limit", "-5"), "--limit"),
    ("run", ("--split", "validation"), "--split"),
    ("run", ("--split", "test\n"), "--split"),
    ("run", ("--dtype", "float8"), "--dtype"),
    ("run", ("--n-bootstrap", "-1"), "--n-bootstrap"),
    ("run", ("--shots", "-1"), "--shots"),
    ("run", ("--adapter", "magic"), "--adapter"),
    (
        "run",
        ("--attack-limit", "-1", "--adapter", "classifier", "--suite", "quick"),
        "--attack-limit",
    ),
    ("run", ("--label-map", "LABEL_0"), "--label-map"),
    ("attack", ("--limit", "-1"), "--limit"),
    ("attack", ("--concurrency", "0"), "--concurrency"),
    ("attack", ("--show", "-1"), "--show"),
    ("attack", ("--query-budget", "0"), "--query-budget"),
    ("attack", ("--max-length", "7"), "--max-length"),
    ("attack", ("--split", "nope"), "--split"),
    ("attack", ("--n-bootstrap", "-2"), "--n-bootstrap"),
    ("attack", ("--suite", "no_such_suite"), "no_such_suite"),
    ("attack", ("--suite", "{dir}/a_folder"), "a_folder"),
    ("finetune", ("--epochs", "0"), "--epochs"),
    ("finetune", ("--lr", "nan"), "--lr"),
    ("finetune", ("--lr", "inf"), "--lr"),
    ("finetune", ("--lr", "-1e-4"), "--lr"),
    ("finetune", ("--max-train", "0"), "--max-train"),
    ("finetune", ("--early-stopping", "0"), "--early-stopping"),
    ("finetune", ("--lora-r", "0"), "--lora-r"),
    ("finetune", ("--lora-alpha", "8"), "--lora-alpha"),
    ("finetune", ("--out", "{dir}/a_file"), "a_file"),
    ("finetune", ("--out", "/proc/no/such/folder"), "/proc/no/such/folder"),
    ("finetune", ("--out", "{dir}/a_file/sub"), "a_file"),
    ("transfer", ("--seeds", "0"), "--seeds"),
    ("transfer", ("--seeds", "-2"), "--seeds"),
    ("transfer", ("--max-train", "0"), "--max-train"),
    ("transfer", ("--eval-limit", "-1"), "--eval-limit"),
    ("transfer", ("--epochs", "0"), "--epochs"),
    ("transfer", ("--lr", "nan"), "--lr"),
    ("transfer", ("--lora-r", "0"), "--lora-r"),
    ("transfer", ("--out", "{dir}/a_file"), "a_file"),
    ("transfer", ("--out", "/proc/nope"), "/proc/nope"),
    ("transfer", ("--suite", "{dir}/missing.yaml"), "missing.yaml"),
    ("default", ("--limit", "-1"), "--limit"),
    ("default", ("--limit", "0"), "--limit"),
    ("default", ("--limit", "x"), "--limit"),
    ("default", ("--out", "{dir}/a_file"), "a_file"),
    ("default", ("--out", "/proc/nope"), "/proc/nope"),
    ("default", ("--out", "{dir}/a_file/deeper"), "a_file"),
    ("leaderboard", ("--format", "yaml"), "--format"),
    ("leaderboard", ("--format", "x" * 5000), "format"),
    ("leaderboard", ("--output", "{dir}/a_folder"), "a_folder"),
    ("leaderboard", ("--output", "{dir}/a_file/x.md"), "a_file"),
    ("leaderboard", ("--output", "/proc/x.md"), "/proc/x.md"),
    ("leaderboard", ("--plot", "{dir}/a_folder"), "a_folder"),
    ("leaderboard", ("--plot", "/proc/x.png"), "/proc/x.png"),
    # A file is written into an existing folder only: a missing one is named up front.
    ("leaderboard", ("--output", "{dir}/no_folder/x.md"), "no_folder does not exist"),
    ("leaderboard", ("--plot", "{dir}/no/such/x.png"), "no/such does not exist"),
    ("leaderboard", ("--db", "{dir}/missing.sqlite"), "missing.sqlite"),
    ("tasks show", ("--examples", "-1"), "--examples"),
    ("tasks show", ("--examples", "many"), "--examples"),
]


def bad_case(index: int, command: str, extra: tuple[str, ...], mention: str) -> Case:
    base = BASE[command]
    if command == "leaderboard" and "--db" in extra:
        base = ("leaderboard",)
    return Case(
        f"{index:03d}-{command.replace(' ', '_')}-{'_'.join(extra)[:30]}",
        (*base, *extra),
        TASK_FILES,
        mentions=(mention.replace("{dir}/", ""),),
        # Refused before loading anything: well under a second on any machine.
        max_seconds=3,
    )


CLI_CASES = [bad_case(i, *row) for i, row in enumerate(BAD)]
# Whole command lines that are not usage at all.
CLI_CASES += [
    Case("no_such_command", ("frobnicate",), mentions=("frobnicate",)),
    Case("group_without_command", ("tasks",), mentions=("Missing command",)),
    Case("missing_required", ("run",), mentions=("--task",)),
    Case("missing_model", ("run", "--task", "x"), mentions=("--model",)),
    Case("extra_argument", ("tasks", "list", "surplus"), mentions=("surplus",)),
    Case("unknown_task_dir", ("tasks", "list", "--tasks-dir", "{dir}/none"), mentions=("none",)),
    Case("help_still_works", ("run", "--help"), expect="ok"),
    Case("top_help", ("--help",), expect="ok"),
]
# Environment variables naming folders that cannot be: refused in one line naming them.
CLI_CASES += [
    Case(
        f"env_{name}",
        argv,
        TASK_FILES,
        mentions=(mention,),
        max_seconds=3,
        env=env,
    )
    for name, argv, env, mention in [
        ("cache_in_proc", ("assets", "fetch", "vader"), {"BENCH_CACHE_DIR": "/proc/nope"}, "/proc"),
        ("cache_is_file", ("assets", "fetch", "vader"), {"BENCH_CACHE_DIR": "{dir}/a_file"}, "a_file"),
        ("xdg_in_proc", ("assets", "fetch", "vader"), {"XDG_CACHE_HOME": "/proc/nope", "BENCH_CACHE_DIR": ""}, "/proc"),
        ("db_is_folder", ("run", "--task", TASK, "--model", "x"), {"BENCH_DB": "{dir}/a_folder"}, "a_folder"),
    ]
]  # fmt: skip
# Names longer than the file system takes (a component over 255 bytes): every command tries
# user text as a path somewhere, and the file system's refusal must come out as one line.
LONG = "n" * 300
# 120 examples: with fewer, a warning about wide intervals would precede the error line.
BIG_TASK = {
    "big.jsonl": "".join(f'{{"text": "s {i}", "label": "{"np"[i % 2]}"}}\n' for i in range(120)),
    "big.yaml": "name: big\nsource: {type: local, path: big.jsonl}\ninputs: [text]\n"
    "labels: [n, p]\n",
}
CLI_CASES += [
    Case(
        f"too_long_{name}",
        tuple(a.replace("LONG", LONG) for a in argv),
        {**TASK_FILES, **BIG_TASK},
        mentions=("too long", "no-model"),
        max_seconds=3,
    )
    for name, argv in {
        "model": ("run", "--task", TASK, "--model", "LONG", "--no-progress"),
        "backend_model": ("run", "--task", "{dir}/big.yaml", "--model", "onnx:LONG"),
        "task": ("run", "--task", "LONG", "--model", "{dir}/no-model", "--no-progress"),
        "task_path": ("run", "--task", "{dir}/LONG.yaml", "--model", "x", "--no-progress"),
        "db": ("run", "--task", TASK, "--model", "x", "--db", "{dir}/LONG", "--no-progress"),
        "attack_suite": ("attack", "--task", TASK, "--model", "x", "--suite", "{dir}/LONG"),
        "leaderboard_db": ("leaderboard", "--db", "{dir}/LONG"),
        "leaderboard_output": ("leaderboard", "--db", "{dir}/empty.sqlite", "-o", "LONG.md"),
        "tasks_dir": ("tasks", "list", "--tasks-dir", "{dir}/LONG"),
        "validate": ("validate", "{dir}/LONG.zip"),
        "finetune_out": ("finetune", "--task", TASK, "--base", "x", "--out", "{dir}/LONG"),
    }.items()
]


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.id)
def test_command_line_corpus(case: Case, fuzz_root: Path) -> None:
    check_case(case, fuzz_root / f"cli-{case.id}")
    COUNTS["command lines (corpus)"] += 1


def test_help_exits_zero_with_usage_on_stdout() -> None:
    result = run_cli(["run", "--help"])
    assert result.exit_code == 0 and "--batch-size" in result.stdout and not result.stderr
    bare = run_cli([])
    assert bare.exit_code == 0 and "Usage" in bare.stdout


# Junk values for every option of the cheap commands: refused in one line or accepted.
CHEAP_OPTIONS = {
    ("tasks", "show", TASK): ["--examples", "--tasks-dir"],
    ("tasks", "list"): ["--tasks-dir"],
    ("leaderboard", "--db", "{dir}/empty.sqlite"): [
        "--format",
        "--metric",
        "--output",
        "--plot",
    ],
}
junk = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
        max_size=30,
    ),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "0x10", "--", "-", "--help=x"]),
)


@st.composite
def cheap_argv(draw: st.DrawFn) -> list[str]:
    base, options = draw(st.sampled_from(sorted(CHEAP_OPTIONS.items())))
    argv = list(base)
    for option in draw(st.lists(st.sampled_from(options), min_size=1, max_size=3)):
        argv += [option, draw(junk)]
    if draw(st.integers(0, 5)) == 0:
        argv.insert(draw(st.integers(0, len(argv))), draw(junk))
    return argv


def test_generated_command_lines(fuzz_root: Path) -> None:
    """Heavy commands with one value they must refuse plus valid extras, in any order; cheap
    commands with junk anywhere."""
    count = 0
    neutral = {
        "run": [("--split", "test"), ("--seed", "3"), ("--dtype", "float32"), ("--limit", "5")],
        "attack": [("--split", "test"), ("--seed", "3"), ("--limit", "0"), ("--show", "1")],
        "finetune": [("--epochs", "1"), ("--seed", "1"), ("--lr", "0.001")],
        "transfer": [("--seeds", "2"), ("--max-train", "10"), ("--epochs", "1")],
        "default": [("--no-progress",), ("--progress",)],
        "leaderboard": [("--format", "csv"), ("--metric", "accuracy")],
        "tasks show": [("--examples", "1")],
    }

    @fuzz_settings(150)
    @given(
        st.one_of(
            st.tuples(st.just("bad"), st.sampled_from(BAD), st.randoms(use_true_random=False)),
            st.tuples(st.just("cheap"), cheap_argv(), st.randoms(use_true_random=False)),
        )
    )
    def check(case: tuple[str, object, object]) -> None:
        nonlocal count
        count += 1
        kind, payload, rng = case
        where = fuzz_root / f"gen-cli-{count}"
        where.mkdir()
        for name, content in TASK_FILES.items():
            if callable(content):
                content(where / name)
            elif isinstance(content, bytes):
                (where / name).write_bytes(content)
            else:
                (where / name).write_text(content)
        if kind == "bad":
            command, extra, mention = payload  # type: ignore[misc]
            pieces = [extra] + [
                n
                for n in neutral[command]
                if n[0] not in extra and rng.random() < 0.5  # type: ignore[attr-defined]
            ]
            rng.shuffle(pieces)  # type: ignore[attr-defined]
            base = (
                ("leaderboard",) if command == "leaderboard" and "--db" in extra else BASE[command]
            )
            argv = [*base, *(a for piece in pieces for a in piece)]
        else:
            argv = list(payload)  # type: ignore[call-overload]
            mention = ""
        argv = [a.replace("{dir}", str(where)) for a in argv]
        result = run_cli(argv, fuzz_env(where), timeout=10)
        if kind == "bad":
            assert_one_line_error(result, [mention.replace("{dir}/", "")])
        else:
            assert_error_or_success(result)
        assert_store_untouched(where / "store.sqlite")
        assert_store_untouched(where / "empty.sqlite")

    check()
    COUNTS["command lines (generated)"] += count
    assert count >= 100
