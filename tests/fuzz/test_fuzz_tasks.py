"""Task YAML and task data, fuzzed: a corpus of hand-made hostile files (every class of bad input
found so far) and generated specs (Hypothesis, derandomized), all through the real CLI."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

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
from .hostile import BASE_TASK, DATA_NAMES, SECRET_LINE, dump, fifo, folder, task_cases


def task_yaml(**fields: Any) -> str:
    """The base task (one local file of good rows) with ``fields`` replaced; ``data=NAME`` points
    the source at a file of the shared data folder, ``fmt`` sets its format."""
    doc = copy.deepcopy(BASE_TASK)
    data = fields.pop("data", "data.jsonl")
    doc["source"] = {"type": "local", "path": f"../data/{data}"}
    if "fmt" in fields:
        doc["source"]["format"] = fields.pop("fmt")
    doc.update(fields)
    return dump(doc)


def task_yaml_with_source(arithmetic: dict[str, Any]) -> str:
    """A generation task over generated arithmetic questions with ``arithmetic`` as its source
    (the type added)."""
    doc = {
        "name": "fuzz_arithmetic",
        "source": {"type": "arithmetic", **arithmetic},
        "kind": "generation",
        "inputs": ["input"],
        "label_column": "target",
        "prompt": {"templates": ["Q: {input}\nA:"], "answer_pattern": "[-+]?\\d+"},
    }
    return dump(doc)


def bomb(levels: int = 7, fanout: int = 9, field: str = "tags") -> str:
    """A billion-laughs alias bomb under 1 KB inside ``field``: each level lists the previous one
    ``fanout`` times."""
    rows = ["  - &a0 [" + ", ".join(["lol"] * fanout) + "]"]
    rows += [f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]" for i in range(1, levels)]
    return (
        "name: fuzz_task\ninputs: [text]\nlabels: [neg, pos]\n"
        + f"{field}:\n"
        + "\n".join(rows)
        + "\n"
    )


SHOW = ("tasks", "show", "{dir}/task.yaml")
ON_FILE = ("task.yaml",)


def show(id: str, content: str | bytes, mentions: tuple[str, ...] = ON_FILE, **kw: Any) -> Case:
    return Case(id, SHOW, {"task.yaml": content}, mentions=mentions, **kw)


def data(id: str, name: str, fmt: str | None = None, **kw: Any) -> Case:
    extra = {"fmt": fmt} if fmt else {}
    return show(id, task_yaml(data=name, **extra), mentions=(name,), **kw)


BASE_OK = task_yaml()

TASK_FILE_CASES = [
    # Files that are not what they claim.
    show("not_utf8", BASE_OK.encode() + b"description: caf\xe9\n"),
    show("utf16", BASE_OK.encode("utf-16")),
    show("nul_byte", BASE_OK.encode().replace(b"inputs", b"in\x00puts")),
    show("deep_flow_list", "name: x\ntags: " + "[" * 1000 + "]" * 1000 + "\n", max_seconds=2),
    show("deep_flow_map", "name: x\ntags: " + "{a: " * 1000 + "b" + "}" * 1000 + "\n"),
    show("deep_block", "".join("  " * i + f"k{i}:\n" for i in range(300)) + "  " * 300 + "v\n"),
    show("alias_bomb_list", bomb(), max_seconds=1),
    show("alias_bomb_name", bomb(field="name").replace("name: fuzz_task\n", ""), max_seconds=1),
    show(
        "alias_bomb_merge",
        "a0: &a0 {k0: x, k1: x, k2: x, k3: x}\n"
        + "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 8))
        + "name: fuzz\nlabel_map: {<<: *a0}\n",
        max_seconds=1,
    ),
    show(
        "alias_bomb_under_cap",  # 3^8 leaves: passes the node cap, still answered at once
        bomb(levels=8, fanout=3, field="description"),
        max_seconds=1,
    ),
    show("cyclic_alias", "name: fuzz\ntags: &a [x, *a]\n", max_seconds=1),
    show("undefined_alias", BASE_OK + "description: *nowhere\n"),
    show("huge_file", lambda p: p.write_text("description: " + "x" * (5 * 2**20) + "\n")),
    show("empty_file", ""),
    show("only_comments", "# nothing here\n"),
    show("top_level_list", "- name: x\n"),
    show("top_level_scalar", "just a string\n"),
    show("two_documents", BASE_OK + "---\nname: other\n"),
    show("python_tag", BASE_OK + "tags: !!python/object/apply:os.system ['true']\n"),
    show("huge_int", BASE_OK.replace("name: fuzz_task", "name: " + "9" * 5000)),
    show("huge_hex_int", BASE_OK + "splits: {seed: 0x" + "f" * 2000 + "}\n"),
    show("bad_timestamp", BASE_OK + "description: 2001-13-45\n"),
    show("bad_timestamp_tag", BASE_OK + "description: !!timestamp nope\n"),
    show("bad_binary", BASE_OK + "description: !!binary /w==\n"),
    show("bad_float_tag", BASE_OK + "description: !!float abc\n"),
    show("unhashable_key", BASE_OK + "? [a, b]\n: c\n"),
    # Metrics: an unknown name failed after every prediction (KeyError, run left 'running').
    show("metric_unknown", BASE_OK + "metrics: [accuracy, bleu]\n", mentions=("bleu",)),
    show("metrics_empty", BASE_OK + "metrics: []\n", mentions=("field 'metrics'",)),
    show("metric_twice", BASE_OK + "metrics: [ece, ece]\n", mentions=("field 'metrics'",)),
    Case(
        "task_is_folder",
        ("tasks", "show", "{dir}/t.yaml"),
        {"t.yaml": folder},
        mentions=("t.yaml",),
    ),
    Case("task_is_fifo", ("tasks", "show", "{dir}/t.yaml"), {"t.yaml": fifo}, mentions=("t.yaml",)),
    Case("task_is_device", ("tasks", "show", "/dev/null"), mentions=("/dev/null",)),
    Case("task_missing", ("tasks", "show", "{dir}/none.yaml"), mentions=("none.yaml not found",)),
    Case("task_dir_given", ("tasks", "show", "{dir}"), mentions=("is a directory",)),
    Case("task_near_miss", ("tasks", "show", "vitamnc"), mentions=("did you mean 'vitaminc'",)),
    # Data files that are not what they claim.
    data("not_gzip", "not_gzip.jsonl.gz"),
    data("truncated_gzip", "truncated.jsonl.gz"),
    data("corrupt_bz2", "corrupt.jsonl.bz2"),
    data("corrupt_xz", "corrupt.jsonl.xz"),
    data("csv_not_gzip", "not_gzip.csv.gz"),
    data("csv_truncated_gzip", "truncated.csv.gz"),
    data("json_100k_deep", "deep.json"),
    data("jsonl_100k_deep", "deep_line.jsonl"),
    data("jsonl_latin1", "latin1.jsonl"),
    data("jsonl_utf16", "utf16.jsonl"),
    data("jsonl_binary", "binary.jsonl"),
    data("jsonl_empty", "empty.jsonl"),
    data("jsonl_blank", "blank_lines.jsonl"),
    data("json_object", "object.json"),
    data("json_scalars", "scalars.json"),
    data("json_ragged", "ragged.json"),
    data("jsonl_huge_int", "bigint.jsonl"),
    data("parquet_garbage", "garbage.parquet"),
    data("json_zip", "data.json.zip"),
    data("csv_zstd_garbage", "rows.csv.zst"),
    data("csv_zip_garbage", "rows.csv.zip"),
    data("data_is_folder", "a_folder.jsonl"),
    data("data_missing", "missing.jsonl"),
    data("text_as_csv", "system.csv", forbidden=(SECRET_LINE, "SECRET")),
    data("text_as_tsv", "system.txt", "tsv", forbidden=(SECRET_LINE, "SECRET")),
    show(
        "system_file_as_csv",
        task_yaml(fmt="csv").replace("../data/data.jsonl", "/etc/passwd"),
        mentions=("/etc/passwd",),
        forbidden=("root:x",),
    ),
    show(
        "device_as_data",
        task_yaml().replace("../data/data.jsonl", "/dev/zero"),
        mentions=("/dev/zero",),
        max_seconds=2,
    ),
    # Validation gaps: once accepted silently, now refused.
    show("limit_negative", task_yaml(splits={"fractions": {"test": 1.0}, "limits": {"test": -1}})),
    show("limit_zero", task_yaml(splits={"fractions": {"test": 1.0}, "limits": {"test": 0}})),
    show("fraction_nan", task_yaml(splits={"fractions": {"train": math.nan, "test": 1.0}})),
    show("fraction_inf", task_yaml(splits={"fractions": {"train": math.inf, "test": 1.0}})),
    *[
        show(
            f"threshold_{name}",
            task_yaml(
                label_threshold={"column": "rating", "threshold": t, "below": "neg", "above": "pos"}
            ),
        )
        for name, t in (("inf", math.inf), ("neg_inf", -math.inf), ("nan", math.nan))
    ],
    show("name_trailing_newline", task_yaml(name="fuzz_task\n")),
    show("name_trailing_crlf", task_yaml(name="fuzz_task\r\n")),
    show("name_too_long", task_yaml(name="n" * 500)),
    show("template_field_newline", task_yaml(prompt={"templates": ["{text\n}"]})),
    Case(
        "examples_negative",
        (*SHOW, "--examples", "-1"),
        {"task.yaml": BASE_OK},
        mentions=("--examples",),
    ),
    show(
        "int_labels_by_position",
        task_yaml(data="int_labels.jsonl"),
        mentions=("label_map", "labels_are_indices"),
    ),
    show("labels_are_indices_with_map", task_yaml(labels_are_indices=True, label_map={"0": "neg"})),
    # Valid, if unusual: must work.
    show(
        "int_label_map_keys",
        task_yaml(data="int_labels.jsonl", label_map={0: "neg", 1: "pos"}),
        expect="ok",
    ),
    show(
        "labels_are_indices",
        task_yaml(data="int_labels.jsonl", labels_are_indices=True),
        expect="ok",
    ),
    # A generated source: its parameters are the whole input.
    *[
        show(f"arithmetic_{name}", task_yaml_with_source(source), mentions=mentions)
        for name, source, mentions in (
            (
                "unknown_subtask",
                {"subtasks": ["2_digit_exponentiation"]},
                ("2_digit_exponentiation",),
            ),
            ("six_digits", {"subtasks": ["6_digit_addition"]}, ("6_digit_addition",)),
            ("no_subtasks", {"subtasks": []}, ("subtasks",)),
            ("subtask_twice", {"subtasks": ["1_digit_addition"] * 2}, ("more than once",)),
            ("subtask_not_text", {"subtasks": [[1]]}, ("subtasks",)),
            (
                "too_many",
                {"subtasks": ["2_digit_addition"], "per_subtask": 10**6},
                ("per_subtask",),
            ),
            ("none_wanted", {"subtasks": ["2_digit_addition"], "per_subtask": 0}, ("per_subtask",)),
            ("seed_negative", {"subtasks": ["2_digit_addition"], "seed": -1}, ("seed",)),
            ("seed_huge", {"subtasks": ["2_digit_addition"], "seed": 10**400}, ("seed",)),
            ("path_given", {"subtasks": ["2_digit_addition"], "path": "x.jsonl"}, ("path",)),
        )
    ],
    show(
        "arithmetic_ok",
        task_yaml_with_source({"subtasks": ["5_digit_division", "1_digit_addition"]}),
        expect="ok",
    ),
    show("byte_order_mark", b"\xef\xbb\xbf" + BASE_OK.encode(), expect="ok"),
    show("gzip_ok", task_yaml(data="data.jsonl.gz"), expect="ok"),
    show("odd_unicode_rows", task_yaml(data="unicode.jsonl"), expect="ok"),
]


@pytest.mark.parametrize("case", TASK_FILE_CASES, ids=lambda c: c.id)
def test_task_file_corpus(case: Case, fuzz_root: Path) -> None:
    check_case(case, fuzz_root / f"task-{case.id}")
    COUNTS["task YAML (corpus)"] += 1


# The spec-level refusals again through `bench run`, which must refuse before opening the store.
RUN_CASES = [
    c for c in TASK_FILE_CASES if c.argv == SHOW and c.expect == "error" and c.mentions == ON_FILE
]


@pytest.mark.parametrize("case", RUN_CASES, ids=lambda c: c.id)
def test_task_file_corpus_through_run(case: Case, fuzz_root: Path) -> None:
    argv = ("run", "--task", "{dir}/task.yaml", "--model", "{dir}/no-model", "--no-progress")
    run_case = Case(
        case.id,
        (*argv, "--db", "{dir}/r.sqlite"),
        case.files,
        mentions=case.mentions,
        max_seconds=case.max_seconds,
        forbidden=case.forbidden,
    )
    check_case(run_case, fuzz_root / f"run-{case.id}")
    assert not (fuzz_root / f"run-{case.id}" / "r.sqlite").exists()
    COUNTS["task YAML (corpus, via run)"] += 1


def test_generated_task_files(fuzz_root: Path) -> None:
    """Generated specs: mostly mutations of a valid task, some damaged bytes. The ones once
    accepted silently must be refused; anything else may be accepted or refused in one line."""
    count = 0
    commands = st.sampled_from(["show", "show", "show-examples", "run"])

    @fuzz_settings(320)
    @given(task_cases(), commands)
    def check(case: tuple[bytes, str, bool], command: str) -> None:
        nonlocal count
        count += 1
        content, how, must_refuse = case
        where = fuzz_root / f"gen-task-{count}"
        where.mkdir()
        task = where / "task.yaml"
        task.write_bytes(content)
        argv = ["tasks", "show", str(task)]
        if command == "show-examples":
            argv += ["--examples", "2"]
        elif command == "run":
            argv = ["run", "-t", str(task), "-m", str(where / "no-model"), "--no-progress"]
        result = run_cli(argv, fuzz_env(where))
        assert result.seconds < 10, how
        mentions = ("task.yaml", "/data/", "task '", "no-model", *DATA_NAMES)
        if must_refuse or command == "run":
            assert_one_line_error(result, mentions)
        else:
            assert_error_or_success(result, mentions)
        assert SECRET_LINE not in result.stderr
        assert_store_untouched(where / "store.sqlite")

    check()
    COUNTS["task YAML (generated)"] += count
    assert count >= 300
