"""Raw source readers: local tables, BIG-bench task files, VADER ground truth, datasets folders,
generated arithmetic."""

from __future__ import annotations

import json
import operator
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pytest

from bench import assets
from bench.errors import AssetError, DataError
from bench.specs import ArithmeticSource, BigBenchSource, HubSource, LocalSource, VaderSource
from bench.tasks.sources import read_source

ROWS: list[dict[str, Any]] = [
    {"text": '"Hi," he said "there', "label": 1, "score": 0.5},
    {"text": "NA", "label": 0, "score": -1.25},
    {"text": "None of it, café", "label": 1, "score": 2.0},
]


def _write_all_formats(folder: Path) -> None:
    frame = pd.DataFrame(ROWS)
    frame.to_json(folder / "d.jsonl", orient="records", lines=True, force_ascii=False)
    (folder / "d.json").write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    frame.to_csv(folder / "d.csv", index=False)
    # A TSV as such files are usually written: no quoting, quotes are part of the text.
    lines = ["text\tlabel\tscore"] + [f"{r['text']}\t{r['label']}\t{r['score']}" for r in ROWS]
    (folder / "d.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    frame.to_parquet(folder / "d.parquet")


@pytest.mark.parametrize("ext", ["jsonl", "json", "csv", "tsv", "parquet"])
def test_local_formats_read_the_same_rows(tmp_path: Path, ext: str) -> None:
    _write_all_formats(tmp_path)
    out = read_source(LocalSource(path=f"d.{ext}"), base_dir=tmp_path)
    assert list(out) == ["all"]
    assert out["all"] == ROWS
    assert all(type(r["label"]) is int and type(r["score"]) is float for r in out["all"])


def test_local_format_override_and_unknown_extension(tmp_path: Path) -> None:
    (tmp_path / "rows.txt").write_text('{"text": "a", "label": "x"}\n', encoding="utf-8")
    out = read_source(LocalSource(path="rows.txt", format="jsonl"), base_dir=tmp_path)
    assert out == {"all": [{"text": "a", "label": "x"}]}
    with pytest.raises(DataError, match=r"cannot tell the format of 'rows\.txt'"):
        read_source(LocalSource(path="rows.txt"), base_dir=tmp_path)


def test_local_splits_by_role(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    pd.DataFrame(ROWS[:2]).to_csv(tmp_path / "sub" / "train.csv", index=False)
    pd.DataFrame(ROWS[2:]).to_json(tmp_path / "sub" / "test.jsonl", orient="records", lines=True)
    source = LocalSource(splits={"train": "sub/train.csv", "test": "sub/test.jsonl"})
    out = read_source(source, base_dir=tmp_path)
    assert sorted(out) == ["test", "train"]
    assert [r["text"] for r in out["train"]] == [ROWS[0]["text"], "NA"]
    assert out["test"][0]["text"] == ROWS[2]["text"]


def test_local_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data file not found: .*nowhere\.csv"):
        read_source(LocalSource(path="nowhere.csv"), base_dir=tmp_path)
    (tmp_path / "broken.jsonl").write_text('{"text": "a"\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"cannot read .*broken\.jsonl line 1 as jsonl"):
        read_source(LocalSource(path="broken.jsonl"), base_dir=tmp_path)
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        read_source(LocalSource(path="empty.csv"), base_dir=tmp_path)


# --------------------------------------------------------------------------------------------------
# BIG-bench and VADER against fake assets installed under the real manifest entries


def _task(examples: list[dict[str, Any]] | None, **extra: Any) -> str:
    data: dict[str, Any] = {"name": "fake", **extra}
    if examples is not None:
        data["examples"] = examples
    return json.dumps(data)


@pytest.fixture
def fake_assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    bb = tmp_path / "bb" / "benchmark_tasks"
    (bb / "nli").mkdir(parents=True)
    (bb / "nli" / "task.json").write_text(
        _task(
            [
                {
                    "input": "Premise: A dog runs.  Hypothesis:  An animal moves. ",
                    "target_scores": {"entailment": 1, "non-entailment": 0},
                },
                {
                    "input": "Premise: A cat\nsleeps. Hypothesis: A cat runs.",
                    "target_scores": {"entailment": 0.0, "non-entailment": 1.0},
                    "comment": {"id": 7},
                },
                {
                    # Tied scores: the first key in file order wins.
                    "input": "Premise: X. Hypothesis: Y.",
                    "target_scores": {"non-entailment": 0.5, "entailment": 0.5},
                },
            ]
        )
    )
    (bb / "qa").mkdir()
    (bb / "qa" / "task.json").write_text(
        _task([{"input": "2+2?", "target": "4"}, {"input": "Capital?", "target": ["Paris", "P"]}])
    )
    (bb / "multi" / "one").mkdir(parents=True)
    (bb / "multi" / "two").mkdir()
    (bb / "multi" / "task.json").write_text(_task(None))
    (bb / "multi" / "two" / "task.json").write_text(
        _task([{"input": "b", "target_scores": {"no": 0, "yes": 1}}])
    )
    (bb / "multi" / "one" / "task.json").write_text(
        _task([{"input": "a", "target_scores": {"no": 1, "yes": 0}}])
    )
    assets.install_tree(assets.get_spec("bigbench"), tmp_path / "bb")

    vd = tmp_path / "vd"
    vd.mkdir()
    (vd / "movieReviewSnippets_GroundTruth.txt").write_bytes(
        "1\t2.266666667\tThe Rock is ''Conan''.\r\n2\t-1.5\tM\u00fcnch's clich\u00e9s.\r\n".encode()
    )
    (vd / "amazonReviewSnippets_GroundTruth.txt").write_bytes(
        b"1_1\t-0.9\ttroubleshooting ad-2500\r\n1_2\t0\tflat \r\n\r\n"
    )
    (vd / "tweets_GroundTruth.txt").write_bytes(b"1\t1.0\tfine\r\n2\tnot-a-number\tbad\r\n")
    (vd / "nytEditorialSnippets_GroundTruth.txt").write_bytes(b"1\t0.4\tcaf\xe9\r\n")  # latin-1
    assets.install_tree(assets.get_spec("vader"), vd)
    return tmp_path


def test_bigbench_rows_labels_and_pattern_columns(fake_assets: Path) -> None:
    pattern = r"Premise: (?P<premise>.*) Hypothesis: (?P<hypothesis>.*)"
    rows = read_source(BigBenchSource(task="nli", input_pattern=pattern))["all"]
    assert [r["label"] for r in rows] == ["entailment", "non-entailment", "non-entailment"]
    assert rows[0]["premise"] == "A dog runs." and rows[0]["hypothesis"] == "An animal moves."
    assert rows[1]["premise"] == "A cat\nsleeps."  # DOTALL: groups may span lines
    assert rows[1]["comment"] == {"id": 7}
    assert rows[0]["target_scores"] == {"entailment": 1, "non-entailment": 0}
    assert rows[0]["input"].startswith("Premise: A dog runs.")


def test_bigbench_target_fallback_and_subtasks(fake_assets: Path) -> None:
    qa = read_source(BigBenchSource(task="qa"))["all"]
    assert [r["label"] for r in qa] == ["4", "Paris"]
    multi = read_source(BigBenchSource(task="multi"))["all"]
    assert [(r["input"], r["label"], r["subtask"]) for r in multi] == [
        ("a", "no", "one"),
        ("b", "yes", "two"),
    ]
    one = read_source(BigBenchSource(task="multi/one"))["all"]
    assert [r["input"] for r in one] == ["a"] and "subtask" not in one[0]


def test_bigbench_pattern_failure_reports_count_and_first_input(fake_assets: Path) -> None:
    # Fails on the double space of the first input and the newline of the second.
    pattern = r"Premise: (?P<premise>[a-zA-Z ]*\.) Hypothesis: (?P<hypothesis>.*)"
    with pytest.raises(DataError) as info:
        read_source(BigBenchSource(task="nli", input_pattern=pattern))
    message = str(info.value)
    assert "does not match 2 of 3 inputs" in message
    # BenchError folds whitespace runs, so the double spaces show as single ones.
    assert "first: 'Premise: A dog runs. Hypothesis: An animal moves.'" in message

    long_input = "word " * 40
    task = fake_assets / "cache" / "assets" / "bigbench-1.0.0" / "benchmark_tasks" / "qa"
    (task / "task.json").write_text(_task([{"input": long_input, "target": "x"}]))
    with pytest.raises(DataError) as info:
        read_source(BigBenchSource(task="qa", input_pattern=r"Q: (?P<q>.*)"))
    shown = str(info.value).split("first: ")[1].split("; fix")[0]
    assert len(shown) == 80 + 2 and shown.endswith("...'")


def test_bigbench_bad_task_names(fake_assets: Path) -> None:
    with pytest.raises(DataError, match=r"'strategyqa' is not in .*available: multi, nli, qa"):
        read_source(BigBenchSource(task="strategyqa"))
    with pytest.raises(DataError, match="invalid BIG-bench task name"):
        read_source(BigBenchSource(task="../nli"))
    with pytest.raises(DataError, match="reserved column"):
        read_source(BigBenchSource(task="nli", input_pattern=r"(?P<label>.*)"))


def test_bigbench_without_the_asset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    with pytest.raises(AssetError, match="run `bench assets fetch bigbench`"):
        read_source(BigBenchSource(task="nli"))


def test_vader_rows(fake_assets: Path) -> None:
    movies = read_source(VaderSource(domain="movies"))["all"]
    assert movies == [
        {"id": "1", "rating": 2.266666667, "text": "The Rock is ''Conan''."},
        {"id": "2", "rating": -1.5, "text": "Münch's clichés."},
    ]
    amazon = read_source(VaderSource(domain="amazon"))["all"]
    assert [(r["id"], r["rating"], r["text"]) for r in amazon] == [
        ("1_1", -0.9, "troubleshooting ad-2500"),
        ("1_2", 0.0, "flat"),
    ]
    with pytest.raises(DataError, match=r"tweets_GroundTruth\.txt line 2"):
        read_source(VaderSource(domain="tweets"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_source(VaderSource(domain="nyt"))


# --------------------------------------------------------------------------------------------------
# Generated arithmetic

_QUESTION = re.compile(r"What is (\d+) (plus|minus|times|divided by) (\d+)\?")


def _solve(question: str) -> tuple[int, int, Fraction]:
    """The operands and exact value of a question, computed apart from the generator."""
    match = _QUESTION.fullmatch(question)
    assert match, question
    a, word, b = int(match.group(1)), match.group(2), int(match.group(3))
    ops = {"plus": operator.add, "minus": operator.sub, "times": operator.mul,
           "divided by": Fraction}  # fmt: skip
    return a, b, Fraction(ops[word](a, b))


def test_generated_arithmetic_questions_are_right_distinct_and_in_range() -> None:
    subtasks = [f"{n}_digit_{op}" for n in (1, 2, 3, 5)
                for op in ("addition", "subtraction", "multiplication", "division")]  # fmt: skip
    rows = read_source(ArithmeticSource(subtasks=subtasks, per_subtask=300))["all"]
    by_subtask: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_subtask.setdefault(row["subtask"], []).append(row)
    # Every pair where a subtask has fewer than asked: 10 x 10 sums, 9 divisors x 10 quotients.
    assert {s: len(r) for s, r in by_subtask.items()} == {
        s: {"1_digit_addition": 100, "1_digit_subtraction": 100,
            "1_digit_multiplication": 100, "1_digit_division": 90}.get(s, 300)
        for s in subtasks
    }  # fmt: skip
    for subtask, part in by_subtask.items():
        digits = int(subtask[0])
        assert len({r["input"] for r in part}) == len(part), subtask
        assert [r["id"] for r in part] == [f"{subtask}/{i}" for i in range(len(part))]
        for row in part:
            a, b, value = _solve(row["input"])
            assert value.denominator == 1 and row["target"] == str(value.numerator), row
            if subtask.endswith("division"):
                assert 1 <= b < 10**digits and 0 <= value < 10**digits, row
            else:
                assert a < 10**digits and b < 10**digits, row
    # Drawn, not enumerated: the big subtasks use their whole range, in no sorted order.
    firsts = [_solve(r["input"])[0] for r in by_subtask["5_digit_addition"]]
    assert firsts != sorted(firsts) and max(firsts) > 90_000 and min(firsts) < 10_000
    assert any(int(r["target"]) < 0 for r in by_subtask["2_digit_subtraction"])


def test_generated_arithmetic_depends_on_the_spec_alone() -> None:
    spec = ArithmeticSource(subtasks=["2_digit_addition", "3_digit_multiplication"], seed=7)
    rows = read_source(spec)["all"]
    assert read_source(ArithmeticSource(**spec.model_dump()))["all"] == rows
    # Pinned: the draw is SHA-256 of the seed, subtask and draw number, not Python's random.
    assert rows[0]["input"] == "What is 68 plus 43?" and rows[-1]["input"] == (
        "What is 979 times 454?"
    )
    reseeded = read_source(ArithmeticSource(subtasks=["2_digit_addition"], seed=8))["all"]
    assert [r["input"] for r in reseeded] != [r["input"] for r in rows[:100]]
    # A subtask's questions do not depend on which other subtasks are listed.
    alone = read_source(ArithmeticSource(subtasks=["3_digit_multiplication"], seed=7))["all"]
    assert alone == rows[100:]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"subtasks": ["2_digit_power"]}, "unknown arithmetic subtask '2_digit_power'"),
        ({"subtasks": ["0_digit_addition"]}, "unknown arithmetic subtask"),
        ({"subtasks": ["2_digit_addition", "2_digit_addition"]}, "more than once"),
        ({"subtasks": []}, "at least 1"),
        ({"subtasks": ["2_digit_addition"], "per_subtask": 10_001}, "less than or equal"),
        ({"subtasks": ["2_digit_addition"], "seed": 2**63}, "less than or equal"),
    ],
)
def test_arithmetic_source_refuses_bad_parameters(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ArithmeticSource(**fields)


# --------------------------------------------------------------------------------------------------
# datasets folders (the HubSource code path, offline)


@pytest.fixture
def offline_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    # The config is read at import time, so an earlier import would ignore the environment.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def test_hub_source_reads_a_local_dataset_folder(tmp_path: Path, offline_datasets: None) -> None:
    folder = tmp_path / "tasks" / "mydata"
    folder.mkdir(parents=True)
    pd.DataFrame(ROWS[:2]).to_json(folder / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(ROWS[2:]).to_json(folder / "test.jsonl", orient="records", lines=True)

    source = HubSource(path="./mydata", splits={"train": "train", "dev": "test"})
    out = read_source(source, base_dir=tmp_path / "tasks")
    assert sorted(out) == ["dev", "train"]
    assert [r["text"] for r in out["train"]] == [ROWS[0]["text"], "NA"]
    assert out["dev"] == [ROWS[2]]

    pooled = read_source(HubSource(path=str(folder)))
    assert list(pooled) == ["all"] and len(pooled["all"]) == 2


def test_hub_source_failures_are_data_errors(tmp_path: Path, offline_datasets: None) -> None:
    with pytest.raises(DataError, match=r"cannot load dataset .*no_such_dir split 'train'"):
        read_source(HubSource(path=str(tmp_path / "no_such_dir")))
    folder = tmp_path / "d"
    folder.mkdir()
    pd.DataFrame(ROWS).to_json(folder / "train.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match="split 'validation'") as info:
        read_source(HubSource(path=str(folder), splits={"test": "validation"}))
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------------
# Real assets (fetched into the shared cache on first use, by the `assets` marker)


# The input patterns the built-in NLI tasks use, with the row counts and labels they must yield.
NLI_PATTERNS = {
    "vitaminc_fact_verification": (
        r"^(?P<evidence>.*)\nClaim: (?P<claim>.*)$",
        54668,
        {"True", "False", "Neither"},
    ),
    "presuppositions_as_nli": (
        r"Sentence 1: (?P<premise>.*)\nSentence 2: (?P<hypothesis>.*?)\s*The answer is:",
        735,
        {"entailment", "neutral", "contradiction"},
    ),
    "epistemic_reasoning": (
        r"Premise: (?P<premise>.*) Hypothesis: (?P<hypothesis>.*)",
        2000,
        {"entailment", "non-entailment"},
    ),
    "analytic_entailment": (
        r"(?P<premise>.*?[.!?]) (?:So|Therefore),? (?P<hypothesis>.*)",
        70,
        {"entailment", "no-entailment"},
    ),
    "entailed_polarity": (
        r"Fact: (?P<premise>.*) Q: (?P<hypothesis>.*)",
        149,
        {"yes", "no"},
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(NLI_PATTERNS))
@pytest.mark.assets("bigbench")
def test_real_bigbench_nli_patterns(task: str) -> None:
    pattern, count, labels = NLI_PATTERNS[task]
    rows = read_source(BigBenchSource(task=task, input_pattern=pattern))["all"]
    assert len(rows) == count
    assert {r["label"] for r in rows} == labels
    groups = [g for g in ("premise", "hypothesis", "evidence", "claim") if g in rows[0]]
    assert len(groups) == 2
    assert all(r[g] for r in rows for g in groups)  # no empty side of a pair


@pytest.mark.slow
@pytest.mark.assets("bigbench")
def test_real_bigbench_other_tasks() -> None:
    counts = {
        "strategyqa": 2290,
        "logical_deduction": 1500,
        "tracking_shuffled_objects": 3750,
        "date_understanding": 369,
        "navigate": 1000,
        "causal_judgment": 190,
        "arithmetic": 15023,
        "formal_fallacies_syllogisms_negation": 14200,
        "multiemo/hotels_text_en": 3955,
        "multiemo/medicine_text_en": 3272,
        "multiemo/products_text_en": 484,
        "multiemo/reviews_text_en": 504,
    }
    for task, n in counts.items():
        rows = read_source(BigBenchSource(task=task))["all"]
        assert len(rows) == n, task
        assert all(isinstance(r["label"], str) for r in rows), task
    hotels = read_source(BigBenchSource(task="multiemo/hotels_text_en"))["all"]
    assert {r["label"] for r in hotels} == {"positive", "negative", "neutral", "ambivalent"}


@pytest.mark.slow
@pytest.mark.assets("vader")
def test_real_vader_domains() -> None:
    expected: dict[Literal["movies", "amazon", "nyt", "tweets"], int] = {
        "movies": 10605,
        "amazon": 3708,
        "nyt": 5190,
        "tweets": 4200,
    }
    for domain, n in expected.items():
        rows = read_source(VaderSource(domain=domain))["all"]
        assert len(rows) == n, domain
        assert len({r["id"] for r in rows}) == n, domain
        assert all(-4.0 <= r["rating"] <= 4.0 and r["text"] for r in rows), domain
    movies = read_source(VaderSource(domain="movies"))["all"]
    assert any("clichés" in r["text"] for r in movies)  # UTF-8 decoded, not mojibake


# --------------------------------------------------------------------------------------------------
# Files that are not what they claim: one-line DataErrors naming the file


def _one_line_data_error(source: LocalSource, base: Path, *needles: str) -> str:
    with pytest.raises(DataError) as info:
        read_source(source, base_dir=base)
    message = str(info.value)
    assert "\n" not in message and len(message) < 290, message
    for needle in needles:
        assert needle in message, message
    return message


def test_damaged_compressed_files(tmp_path: Path) -> None:
    import gzip

    good = b'{"text": "a", "label": "pos"}\n' * 50
    (tmp_path / "plain.jsonl.gz").write_bytes(good)
    _one_line_data_error(LocalSource(path="plain.jsonl.gz"), tmp_path, "plain.jsonl.gz")
    packed = gzip.compress(good)
    (tmp_path / "cut.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    _one_line_data_error(LocalSource(path="cut.jsonl.gz"), tmp_path, "cut.jsonl.gz")
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(b"text,label\n" + b"a,pos\n" * 100)[:25])
    _one_line_data_error(LocalSource(path="cut.csv.gz"), tmp_path, "cut.csv.gz")
    (tmp_path / "rows.json.zip").write_bytes(b"PK\x03\x04")
    _one_line_data_error(LocalSource(path="rows.json.zip"), tmp_path, "rows.json.zip", ".gz")


def test_json_nested_beyond_the_recursion_limit(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    _one_line_data_error(LocalSource(path="deep.json"), tmp_path, "deep.json", "nested too deeply")
    (tmp_path / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    _one_line_data_error(LocalSource(path="deep.jsonl"), tmp_path, "deep.jsonl line 1")


def test_folders_and_devices_are_not_data_files(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").mkdir()
    _one_line_data_error(LocalSource(path="rows.jsonl"), tmp_path, "is a directory")
    _one_line_data_error(
        LocalSource(path="/dev/zero", format="jsonl"), tmp_path, "/dev/zero is not a regular file"
    )


def test_a_text_file_read_as_a_table_is_not_quoted(tmp_path: Path) -> None:
    from bench.specs import TaskSpec
    from bench.tasks import load_task_data

    secret = "root:x:0:0:SECRET:/root:/bin/bash"
    (tmp_path / "notes.txt").write_text(secret + "\nsecond line\n")
    spec = TaskSpec(
        name="t",
        source=LocalSource(path="notes.txt", format="csv"),
        inputs=["text"],
        labels=["a", "b"],
    )
    with pytest.raises(DataError) as info:
        load_task_data(spec, tmp_path)
    message = str(info.value)
    assert "SECRET" not in message and "root:x" not in message
    assert "notes.txt" in message and "single column" in message
    # A real table lists its columns, capped.
    wide = {f"column_{i}": i for i in range(40)}
    pd.DataFrame([wide]).to_csv(tmp_path / "wide.csv", index=False)
    spec = spec.model_copy(update={"source": LocalSource(path="wide.csv")})
    with pytest.raises(DataError, match=r"columns: column_0, .*\(\+\d+ more\)") as info:
        load_task_data(spec, tmp_path)
    assert len(str(info.value)) < 290
