"""Hostile inputs: hand-made files (written by the tests, never committed) and Hypothesis
strategies that build task, suite and transfer-suite YAML and command lines.

Everything a case needs is text or a small function that writes a file; the shared data folder
(:func:`write_data_files`) holds one instance of each kind of broken data file, referenced by
generated task specs.
"""

from __future__ import annotations

import bz2
import copy
import gzip
import json
import lzma
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

# --------------------------------------------------------------------------------------------------
# Data files (one folder, written once per session)

GOOD_ROWS = [
    {
        "text": f"sentence number {i}",
        "label": ["neg", "pos"][i % 2],
        "rating": [-1.5, 2.0, 0.0][i % 3],
        "int_label": i % 2,
        "premise": f"premise {i}",
        "hypothesis": f"hypothesis {i}",
        "options": ["a", "b", "c"],
        "answer": "b",
        "group": {"id": i // 3},
    }
    for i in range(30)
]
# What a system file looks like when read as a table: its first line must never be echoed.
SECRET_LINE = "root:x:0:0:SECRET-FIRST-LINE:/root:/bin/bash"


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def write_data_files(folder: Path) -> dict[str, Path]:
    """Good and broken data files, by name; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    good = _jsonl(GOOD_ROWS).encode()
    gz = gzip.compress(good)
    files: dict[str, bytes] = {
        "data.jsonl": good,
        "data.csv": b"text,label\n"
        + b"".join(f"t{i},{'neg' if i % 2 else 'pos'}\n".encode() for i in range(30)),
        "data.jsonl.gz": gz,
        "not_gzip.jsonl.gz": b"this is not gzip data at all\n",
        "truncated.jsonl.gz": gz[: len(gz) // 2],
        "corrupt.jsonl.bz2": bz2.compress(good)[:40] + b"garbage" * 10,
        "corrupt.jsonl.xz": lzma.compress(good)[:40] + b"garbage" * 10,
        "not_gzip.csv.gz": b"plain text, not gzip\n",
        "truncated.csv.gz": gzip.compress(b"text,label\n" + b"a,pos\n" * 200)[:30],
        "deep.json": _deep_json(100_000).encode(),
        "deep_line.jsonl": (_deep_json(100_000) + "\n").encode(),
        "latin1.jsonl": '{"text": "caf\xe9", "label": "pos"}\n'.encode("latin-1"),
        "utf16.jsonl": '{"text": "x", "label": "pos"}\n'.encode("utf-16"),
        "binary.jsonl": bytes(range(256)) * 4,
        "empty.jsonl": b"",
        "blank_lines.jsonl": b"\n\n  \n",
        "object.json": b'{"text": "a", "label": "pos"}',
        "scalars.json": b"[1, 2, 3]",
        "ragged.json": b'{"text": ["a", "b"], "label": ["pos"]}',
        "bigint.jsonl": b'{"text": "a", "label": ' + b"9" * 5000 + b"}\n",
        "nan.jsonl": b'{"text": NaN, "label": "pos"}\n{"text": "b", "label": Infinity}\n',
        "system.csv": (
            SECRET_LINE + "\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        ).encode(),
        "system.txt": (SECRET_LINE + "\n").encode(),
        "garbage.parquet": b"PAR1 not really parquet",
        "data.json.zip": b"PK\x03\x04 not a zip",
        "rows.csv.zst": b"not zstandard data",
        "rows.csv.zip": b"PK\x03\x04 not a zip",
        "int_labels.jsonl": _jsonl([{"text": f"t{i}", "label": i % 2} for i in range(20)]).encode(),
        "unicode.jsonl": _jsonl(
            [
                {"text": "\u202e\u0000\ud7ff \U0001f642", "label": "pos"},
                {"text": "ok", "label": "neg"},
            ]
        ).encode(),
    }
    paths = {}
    for name, content in files.items():
        (folder / name).write_bytes(content)
        paths[name] = folder / name
    (folder / "a_folder.jsonl").mkdir(exist_ok=True)
    paths["a_folder.jsonl"] = folder / "a_folder.jsonl"
    return paths


DATA_NAMES = [
    "data.jsonl",
    "data.csv",
    "data.jsonl.gz",
    "not_gzip.jsonl.gz",
    "truncated.jsonl.gz",
    "corrupt.jsonl.bz2",
    "corrupt.jsonl.xz",
    "not_gzip.csv.gz",
    "truncated.csv.gz",
    "deep.json",
    "deep_line.jsonl",
    "latin1.jsonl",
    "utf16.jsonl",
    "binary.jsonl",
    "empty.jsonl",
    "blank_lines.jsonl",
    "object.json",
    "scalars.json",
    "ragged.json",
    "bigint.jsonl",
    "nan.jsonl",
    "system.csv",
    "system.txt",
    "garbage.parquet",
    "data.json.zip",
    "rows.csv.zst",
    "rows.csv.zip",
    "int_labels.jsonl",
    "unicode.jsonl",
    "a_folder.jsonl",
    "missing.jsonl",
]

# --------------------------------------------------------------------------------------------------
# Values

HOSTILE_STRINGS = [
    "",
    " ",
    "name\n",
    "\nname",
    "name\r\n",
    "a" * 5000,
    "../../../../etc/passwd",
    "/etc/passwd",
    "/dev/zero",
    "/dev/null",
    "{text",
    "{text.__class__}",
    "{0}",
    "{}",
    "%s%s%s",
    "${HOME}",
    "\x00",
    "\u202e",
    "caf\u00e9 \U0001f642",
    "null",
    "~",
    "nan",
    "1e400",
    "!!python/object/apply:os.system ['true']",
    "*a",
    "&a",
    "text",
    "label",
    "train",
    "test",
    "-1",
    "0x10",
]

special_floats = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2, 2**63, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    special_floats,
    st.text(max_size=20),
    st.sampled_from(HOSTILE_STRINGS),
)
keys = st.one_of(st.text(max_size=10), st.sampled_from(["0", "1", "test", "train", "dev"]))
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=10,
)


def chance(draw: st.DrawFn, p: float) -> bool:
    """True with probability about ``p``. Hypothesis leans towards the simplest choice (zero,
    the first element) far more than uniform, so that choice must mean "leave it alone": True
    is at the top of the range."""
    return draw(st.integers(0, 999)) >= 1000 * (1 - p)


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=10_000)


# Byte-level damage applied to dumped YAML.
def _corruptions() -> list[tuple[str, Callable[[bytes], bytes]]]:
    return [
        ("none", lambda b: b),
        ("latin1_byte", lambda b: b + b"description: caf\xe9\n"),
        ("leading_ff", lambda b: b"\xff\xfe" + b),
        ("nul", lambda b: b[: len(b) // 2] + b"\x00" + b[len(b) // 2 :]),
        ("truncated", lambda b: b[: max(1, len(b) * 2 // 3)]),
        ("tab_indent", lambda b: b.replace(b"\n", b"\n\t", 1)),
        ("second_document", lambda b: b + b"---\nname: other\n"),
        ("unclosed_flow", lambda b: b + b"extra: [a, b\n"),
        ("bom", lambda b: b"\xef\xbb\xbf" + b),
        ("crlf", lambda b: b.replace(b"\n", b"\r\n")),
        ("python_tag", lambda b: b + b"tags: !!python/object/apply:os.system ['true']\n"),
        ("bad_timestamp", lambda b: b + b"description: 2001-13-45\n"),
        ("huge_int", lambda b: b + b"version: " + b"9" * 5000 + b"\n"),
        ("huge_hex_int", lambda b: b + b"splits: {seed: 0x" + b"f" * 2000 + b"}\n"),
        ("undefined_alias", lambda b: b + b"description: *nowhere\n"),
    ]


CORRUPTIONS = _corruptions()
CORRUPTION_NAMES = [name for name, _ in CORRUPTIONS]


def corrupt(text: str, how: str) -> bytes:
    return dict(CORRUPTIONS)[how](text.encode("utf-8"))


# --------------------------------------------------------------------------------------------------
# Task specs

BASE_TASK: dict[str, Any] = {
    "name": "fuzz_task",
    "source": {"type": "local", "path": "../data/data.jsonl"},
    "inputs": ["text"],
    "labels": ["neg", "pos"],
}
TASK_KEYS = [
    "name",
    "version",
    "description",
    "domain",
    "source",
    "kind",
    "inputs",
    "label_column",
    "choices_column",
    "labels",
    "label_map",
    "labels_are_indices",
    "label_threshold",
    "label_aliases",
    "splits",
    "metrics",
    "tags",
    "prompt",
    "unknown_field",
]
# Plausible values per field, so that generated specs are often valid and reach the data.
PLAUSIBLE: dict[str, list[Any]] = {
    "inputs": [["text"], ["premise", "hypothesis"], ["missing_column"], ["text", "text", "text"]],
    "label_column": ["label", "int_label", "answer", "rating", "missing"],
    "labels": [["neg", "pos"], ["pos", "neg"], ["neg"], ["a", "a"], []],
    "label_map": [{"0": "neg", "1": "pos"}, {0: "neg", 1: "pos"}, {"neg": "pos"}, {"x": "nope"}],
    "labels_are_indices": [True, False],
    "label_threshold": [
        {"column": "rating", "threshold": 0.0, "below": "neg", "above": "pos"},
        {"column": "text", "threshold": 0.0, "below": "neg", "above": "pos"},
    ],
    "kind": ["classification", "multiple_choice", "generation", "regression"],
    "choices_column": ["options", None, "text"],
    "splits": [
        {"fractions": {"test": 1.0}},
        {"fractions": {"train": 0.5, "test": 0.5}, "group_by": "group.id"},
        {"fractions": {"train": 0.5, "test": 0.5}, "group_by": "no.such"},
        {"fractions": {"train": 0.8, "dev": 0.1, "test": 0.1}, "limits": {"test": 3}},
    ],
    "prompt": [
        {"templates": ["Q: {text} A:"]},
        {"templates": ["{missing}"]},
        {"templates": ["{text.__class__}"]},
        {"templates": ["{text"]},
        {"templates": []},
        {"templates": ["{text}"], "answer_pattern": "("},
    ],
    "metrics": [["accuracy"], ["no_such_metric"], []],
}


def _source_for(name: str, fmt: str | None) -> dict[str, Any]:
    source: dict[str, Any] = {"type": "local", "path": f"../data/{name}"}
    if fmt is not None:
        source["format"] = fmt
    return source


# The first entry is the one Hypothesis leans towards: a plausible value.
MUTATIONS = [
    *["plausible"] * 3,
    *["source"] * 3,
    *["value"] * 2,
    "delete",
    "limit",
    "fraction",
    "threshold",
    "name",
    "generated",
]


@st.composite
def task_cases(draw: st.DrawFn) -> tuple[bytes, str, bool]:
    """(YAML bytes, how it was made, whether it must be refused).

    Must be refused (the classes once silently accepted): a split limit of 0 or less, a NaN
    split fraction, an infinite or NaN label threshold, a name with a line break at either end.
    """
    doc: dict[str, Any] = copy.deepcopy(BASE_TASK)
    steps: list[str] = []
    # The fields whose value must be refused; a later step that replaces or deletes the field
    # takes its refusal back (a NaN fraction overwritten by a valid split is valid again).
    refused: set[str] = set()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        # Weighted towards plausible values and data files, so that many specs are valid and
        # the data readers and label mapping get fuzzed too, not only the schema.
        kind = MUTATIONS[draw(st.integers(0, 999)) * len(MUTATIONS) // 1000]
        if kind == "value":
            key = draw(st.sampled_from(TASK_KEYS))
            refused.discard(key)
            doc[key] = draw(values)
            steps.append(f"{key}=value")
        elif kind == "plausible":
            key = draw(st.sampled_from(sorted(PLAUSIBLE)))
            refused.discard(key)
            doc[key] = copy.deepcopy(draw(st.sampled_from(PLAUSIBLE[key])))
            steps.append(f"{key}=plausible")
        elif kind == "delete":
            key = draw(st.sampled_from(TASK_KEYS))
            refused.discard(key)
            doc.pop(key, None)
            steps.append(f"-{key}")
        elif kind == "source":
            name = draw(st.sampled_from(DATA_NAMES))
            fmt = draw(st.sampled_from([None, None, "jsonl", "json", "csv", "tsv", "parquet"]))
            doc["source"] = _source_for(name, fmt)
            steps.append(f"source={name}:{fmt}")
        elif kind == "limit":
            n = draw(st.integers(min_value=-(10**6), max_value=0))
            role = draw(st.sampled_from(["train", "dev", "test"]))
            doc["splits"] = {"fractions": {"test": 1.0}, "limits": {role: n}}
            refused.add("splits")
            steps.append(f"limit {role}={n}")
        elif kind == "fraction":
            doc["splits"] = {"fractions": {"train": math.nan, "test": 1.0}}
            refused.add("splits")
            steps.append("fraction=nan")
        elif kind == "threshold":
            t = draw(st.sampled_from([math.inf, -math.inf, math.nan]))
            doc["label_threshold"] = {
                "column": "rating",
                "threshold": t,
                "below": "neg",
                "above": "pos",
            }
            refused.add("label_threshold")
            steps.append(f"threshold={t}")
        elif kind == "generated":
            # Generated arithmetic: its parameters are the whole input (valid, out of range or
            # of the wrong type), often as a generation task that can use its rows.
            subtask = st.sampled_from(["1_digit_addition", "5_digit_division", "3_digit_minus",
                                       "6_digit_addition", "", 7])  # fmt: skip
            doc["source"] = {
                "type": "arithmetic",
                "subtasks": draw(st.lists(subtask, max_size=3)),
                "per_subtask": draw(st.sampled_from([1, 100, 10_000, 10_001, 0, -3, "x"])),
                "seed": draw(st.sampled_from([0, 2**63 - 1, 2**63, -1, 1.5])),
            }
            if chance(draw, 0.7):
                doc.update(kind="generation", inputs=["input"], label_column="target",
                           prompt={"templates": ["Q: {input}\nA:"]})  # fmt: skip
                doc.pop("labels", None)
            steps.append("source=arithmetic")
        else:
            base = draw(st.sampled_from(["fuzz_task", "t", "a.b-c_d"]))
            end = draw(st.sampled_from(["\n", "\r\n", "\n\n", "\r"]))
            doc["name"] = draw(st.sampled_from([base + end, end + base]))
            refused.add("name")
            steps.append("name+newline")
    text = dump(doc)
    how = draw(st.sampled_from(CORRUPTION_NAMES)) if chance(draw, 0.2) else "none"
    steps.append(f"corrupt={how}")
    # A must-refuse spec stays refused whatever the damage (damaged YAML is refused too).
    return corrupt(text, how), "; ".join(steps), bool(refused)


# --------------------------------------------------------------------------------------------------
# Attack suites

RECIPES = ["deepwordbug", "pruthi", "textbugger-char", "textfooler", "no_such_recipe"]
COMPONENT_TYPES = [
    "neighbouring_char_swap",
    "random_char_deletion",
    "random_char_insertion",
    "qwerty",
    "homoglyph",
    "composite",
    "wordnet",
    "no_such_component",
]


@st.composite
def components(draw: st.DrawFn, depth: int = 0) -> Any:
    kind = draw(st.sampled_from(COMPONENT_TYPES if depth < 3 else COMPONENT_TYPES[:5]))
    if kind == "composite":
        parts = draw(st.lists(components(depth + 1), min_size=0, max_size=3))
        return {"type": "composite", "params": {"of": parts}}
    # Mostly well-formed parts, so that resolution (not only the schema) gets fuzzed.
    params: Any = {}
    if chance(draw, 0.25):
        params = draw(
            st.dictionaries(
                st.sampled_from(["random_one", "skip_first_char", "letters_to_insert", "bogus"]),
                st.one_of(st.booleans(), values),
                max_size=2,
            )
        )
    return draw(values) if chance(draw, 0.15) else {"type": kind, "params": params}


@st.composite
def attacks(draw: st.DrawFn) -> Any:
    names = st.sampled_from(["a", "b-1", "c.d"])
    name = draw(st.sampled_from(HOSTILE_STRINGS) if chance(draw, 0.15) else names)
    if chance(draw, 0.5):
        attack: dict[str, Any] = {"name": name, "recipe": draw(st.sampled_from(RECIPES))}
        if chance(draw, 0.5):
            attack["params"] = draw(
                st.dictionaries(
                    st.sampled_from(["max_edit_distance", "use_threshold", "bogus"]),
                    st.one_of(st.integers(-5, 50), st.floats(allow_nan=True), values),
                    max_size=2,
                )
            )
    else:
        attack = {
            "name": name,
            "composition": {
                "transformation": draw(components()),
                "search": draw(
                    st.sampled_from(
                        [
                            {"type": "greedy"},
                            {"type": "greedy"},
                            {"type": "beam", "params": {"beam_width": 2}},
                            {"type": "beam", "params": {"beam_width": -1}},
                            {"type": "nope"},
                        ]
                    )
                ),
            },
        }
        if chance(draw, 0.25):
            attack["composition"]["constraints"] = draw(st.lists(values, max_size=2))
    if chance(draw, 0.15):
        attack[draw(st.sampled_from(["description", "params", "recipe", "extra"]))] = draw(values)
    return attack


@st.composite
def suite_cases(draw: st.DrawFn) -> tuple[bytes, str]:
    attack_list = draw(st.lists(attacks(), min_size=1, max_size=3))
    doc: dict[str, Any] = {"name": "fuzz_suite", "attacks": attack_list}
    if chance(draw, 0.15):
        doc[draw(st.sampled_from(["name", "version", "description", "attacks", "extra"]))] = draw(
            values
        )
    how = draw(st.sampled_from(CORRUPTION_NAMES)) if chance(draw, 0.2) else "none"
    return corrupt(dump(doc), how), how


# --------------------------------------------------------------------------------------------------
# Transfer suites (task names never name a real task: a valid suite must not train anything)

FAKE_TASKS = ["no_such_task_a", "no_such_task_b", "missing.yaml", "dir/missing.yaml"]


@st.composite
def transfer_cases(draw: st.DrawFn) -> tuple[bytes, str]:
    doc: dict[str, Any] = {
        "name": "fuzz_transfer",
        "train_tasks": draw(
            st.lists(st.sampled_from(FAKE_TASKS), min_size=1, max_size=2, unique=True)
        ),
        "test_tasks": draw(
            st.lists(st.sampled_from(FAKE_TASKS), min_size=1, max_size=2, unique=True)
        ),
    }
    for _ in range(draw(st.integers(0, 2))):
        key = draw(
            st.sampled_from(
                [
                    "seeds",
                    "max_train",
                    "eval_limit",
                    "base",
                    "recipe",
                    "name",
                    "extra",
                    "train_tasks",
                ]
            )
        )
        if key == "recipe":
            field = draw(
                st.sampled_from(["epochs", "lr", "batch_size", "max_length", "lora_r", "x"])
            )
            doc["recipe"] = {field: draw(values)}
        elif key == "seeds":
            doc["seeds"] = draw(
                st.one_of(values, st.lists(st.integers(-(2**40), 2**40), max_size=3))
            )
        else:
            doc[key] = draw(values)
    how = draw(st.sampled_from(CORRUPTION_NAMES)) if chance(draw, 0.2) else "none"
    return corrupt(dump(doc), how), how


def fifo(path: Path) -> None:
    os.mkfifo(path)


def folder(path: Path) -> None:
    path.mkdir()
