"""Tasks posed as prompts: the prompt runner, its store rows, leaderboard columns and CLI errors.

The language model is the tiny random Llama of ``lm_helpers`` (real tokenizer, real forward
passes, no training): its answers are arbitrary but deterministic, which is what batch
invariance, few-shot sampling and resumption are about. Three small local tasks cover the three
task kinds: a classification task with verbalised labels, a multiple-choice task whose options
come with each example, and a generation task scored by exact match of an extracted number.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_user_error
from lm_helpers import build_tiny_llama

WORDS = ["cat", "dog", "park", "mat", "Paris", "Rome", "city", "sky", "grass", "Berlin"]


def _rows(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        a, b = WORDS[i % len(WORDS)], WORDS[(i * 3 + 1) % len(WORDS)]
        options = [WORDS[(i + 1) % len(WORDS)], a, WORDS[(i + 2) % len(WORDS)]]
        rows.append(
            {
                "text": f"the {a} and the {b} {i}",
                "label": "yes" if i % 3 else "no",
                "options": options,
                "answer": a,
                "sum": str(i % 7 + i % 5),
            }
        )
    return rows


TASKS = {
    "cls": """name: cls
source: {type: local, path: data.jsonl}
inputs: [text]
labels: ["yes", "no"]
splits: {fractions: {train: 0.4, test: 0.6}}
prompt:
  templates: ["Question: is {text} blue? Answer:", "{text} ->"]
  choices: [" yes", " no"]
  target_delimiter: ""
  fewshot: {k: 2, split: train, seed: 7}
""",
    "mc": """name: mc
source: {type: local, path: data.jsonl}
kind: multiple_choice
inputs: [text]
choices_column: options
label_column: answer
splits: {fractions: {train: 0.4, test: 0.6}}
prompt:
  templates: ["Which one: {text}? Answer:", "{text}:"]
  fewshot: {k: 2, split: train, seed: 7}
""",
    "gen": """name: gen
source: {type: local, path: data.jsonl}
kind: generation
inputs: [text]
label_column: sum
splits: {fractions: {train: 0.4, test: 0.6}}
prompt:
  templates: ["Sum {text} ="]
  answer_pattern: '\\d+'
  max_new_tokens: 4
  fewshot: {k: 1, split: train, seed: 7}
""",
}


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("prompt-lm") / "tiny-lm")


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("prompt-tasks")
    with (folder / "data.jsonl").open("w") as fh:
        for row in _rows(120):
            fh.write(json.dumps(row) + "\n")
    for name, text in TASKS.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


def _data(task_dir: Path, name: str) -> Any:
    from bench.tasks import get_task, load_task_data

    item = get_task(str(task_dir / f"{name}.yaml"))
    return load_task_data(item.spec, item.base_dir)


def _model(lm_dir: Path) -> Any:
    from bench.specs import ModelSpec

    return ModelSpec(name="tiny-lm", path=str(lm_dir))


def _run_all(
    db: Path, task_dir: Path, lm_dir: Path, batch_size: int, shots: list[int]
) -> dict[str, list[Any]]:
    """Every task at every shot count with every template; stored rows by column."""
    from bench.prompt_runner import PromptRunner
    from bench.specs import PromptConfig
    from bench.store import ResultStore

    out: dict[str, list[Any]] = {}
    with ResultStore(db) as store:
        runner = PromptRunner(store, PromptConfig(batch_size=batch_size), progress=False)
        for name in TASKS:
            data = _data(task_dir, name)
            outcomes, summaries = runner.run(_model(lm_dir), runner.plan(data, shots))
            for o in outcomes:
                out[f"{name}@{o.record.column}"] = store.prompt_rows(o.record.run_key)
            for o in summaries:
                out[f"{name}@{o.record.column}"] = [o.metrics]
    return out


def test_answers_identical_at_batch_1_and_16(
    tmp_path: Path, task_dir: Path, lm_dir: Path, torch_one_thread: None
) -> None:
    one = _run_all(tmp_path / "b1.sqlite", task_dir, lm_dir, batch_size=1, shots=[0, 2])
    many = _run_all(tmp_path / "b16.sqlite", task_dir, lm_dir, batch_size=16, shots=[0, 2])
    assert one.keys() == many.keys()
    assert {"cls@0shot/t1", "cls@2shot/t2", "mc@2shot/t1", "gen@0shot/t1", "gen@2shot"} <= set(one)
    compared = 0
    for column, rows in one.items():
        if "/" not in column:
            continue
        other = many[column]
        assert [r.idx for r in rows] == [r.idx for r in other]
        for a, b in zip(rows, other, strict=True):
            assert (a.pred, a.pred_norm, a.correct, a.correct_norm) == (
                b.pred,
                b.pred_norm,
                b.correct,
                b.correct_norm,
            )
            assert (a.prompt, a.output, a.answer, a.shots) == (
                b.prompt,
                b.output,
                b.answer,
                b.shots,
            )
            assert len(a.scores) == len(b.scores)
            assert all(abs(x - y) < 1e-4 for x, y in zip(a.scores, b.scores, strict=True))
            compared += 1
    assert compared > 200
    # The tiny model is random, not constant: it does not give one answer to every question.
    assert len({r.pred for r in one["mc@0shot/t1"]}) > 1
    assert len({r.output for r in one["gen@0shot/t1"]}) > 1


def test_fewshot_examples_are_seeded_and_never_the_evaluated_example(
    tmp_path: Path, task_dir: Path, lm_dir: Path, torch_one_thread: None
) -> None:
    first = _run_all(tmp_path / "a.sqlite", task_dir, lm_dir, batch_size=8, shots=[2])
    again = _run_all(tmp_path / "b.sqlite", task_dir, lm_dir, batch_size=8, shots=[2])
    for name, column in (("cls", "cls@2shot/t1"), ("mc", "mc@2shot/t2")):
        pool = {ex.uid for ex in _data(task_dir, name).split("train")}
        rows = first[column]
        assert [r.shots for r in rows] == [r.shots for r in again[column]]
        for r in rows:
            assert len(r.shots) == 2 and r.uid not in r.shots
            assert all(uid in pool for uid in r.shots)
    data = _data(task_dir, "mc")
    train = {ex.uid: ex for ex in data.split("train")}
    test = {ex.uid: ex for ex in data.split("test")}
    # Each solved example is in the prompt with its answer, before the question.
    row = first["mc@2shot/t1"][0]
    for uid in row.shots:
        shot = train[uid]
        assert f"Which one: {shot.inputs[0]}? Answer: {shot.choices[shot.label]}" in row.prompt
    assert row.prompt.endswith(f"Which one: {test[row.uid].inputs[0]}? Answer:")
    # Different examples get different draws: the ranking is keyed by the evaluated example.
    assert len({tuple(r.shots) for r in first["cls@2shot/t1"]}) > 5


def test_a_crashed_prompt_run_resumes_where_it_stopped(
    tmp_path: Path, task_dir: Path, lm_dir: Path, torch_one_thread: None
) -> None:
    from bench.prompt_runner import PromptRunner
    from bench.specs import PromptConfig
    from bench.store import ResultStore

    data = _data(task_dir, "mc")
    with ResultStore(tmp_path / "whole.sqlite") as store:
        runner = PromptRunner(store, PromptConfig(), progress=False)
        (planned,) = runner.plan(data, [2], [0])
        whole = store.prompt_rows(runner.run_one(_model(lm_dir), planned).record.run_key)
    assert len(whole) > 40  # more than one stored chunk

    class Crash(Exception):
        pass

    with ResultStore(tmp_path / "crash.sqlite") as store:
        runner = PromptRunner(store, PromptConfig(), progress=False)
        # Every work unit of every run kind is written through add_rows.
        real = store.add_rows
        calls = []

        def add_then_crash(table: Any, key: str, rows: Any) -> int:
            if calls:
                raise Crash
            calls.append(len(rows))
            return real(table, key, rows)

        store.add_rows = add_then_crash  # type: ignore[method-assign]
        with pytest.raises(Crash):
            runner.run_one(_model(lm_dir), planned)
        key = runner.key_for(planned, _model(lm_dir))
        stored = len(store.prompted_indices(key))
        assert stored == calls[0] > 0
        # The crash is recorded: the run is failed, with the error, and its rows are kept.
        failed = store.get_run(key)
        assert failed is not None and failed.status == "failed" and "Crash" in str(failed.error)
        store.add_rows = real  # type: ignore[method-assign]
        outcome = runner.run_one(_model(lm_dir), planned)
        assert not outcome.cached and outcome.answered == len(whole) - stored
        resumed = store.prompt_rows(outcome.record.run_key)
    assert [(r.idx, r.pred, r.shots, r.prompt) for r in resumed] == [
        (r.idx, r.pred, r.shots, r.prompt) for r in whole
    ]


def test_chat_template_wraps_turns_and_answers_open_the_assistant_turn(
    tmp_path: Path, task_dir: Path, lm_dir: Path, torch_one_thread: None
) -> None:
    from bench.prompt_runner import PromptRunner
    from bench.specs import ModelSpec, PromptConfig
    from bench.store import ResultStore

    chat_dir = tmp_path / "chat-lm"
    shutil.copytree(lm_dir, chat_dir)
    config_path = chat_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    config_path.write_text(json.dumps(config))
    model = ModelSpec(name="chat", path=str(chat_dir))
    data = _data(task_dir, "mc")
    with ResultStore(tmp_path / "chat.sqlite") as store:
        for use in (True, False):
            runner = PromptRunner(store, PromptConfig(chat_template=use, limit=5), progress=False)
            (planned,) = runner.plan(data, [1], [0])
            outcome = runner.run_one(model, planned)
            assert outcome.record.config.chat_template_used is use
            row = store.prompt_rows(outcome.record.run_key)[0]
            shot = next(ex for ex in data.split("train") if ex.uid == row.shots[0])
            if use:
                assert row.prompt.startswith(f"<user>Which one: {shot.inputs[0]}? Answer:\n")
                assert f"<assistant>{shot.choices[shot.label]}\n<user>" in row.prompt
                assert row.prompt.endswith("? Answer:\n<assistant>")
            else:
                assert "<user>" not in row.prompt and row.prompt.endswith("? Answer:")
            # The scores are those of the answers after exactly this prompt.
            from bench.models.causal import CausalLM

            lm = CausalLM.load(str(chat_dir), device="cpu")
            answers = list(data.split("test")[0].choices)
            conts = answers if use else [" " + a for a in answers]
            expected = [ll for ll, _, _ in lm.loglikelihood([(row.prompt, c) for c in conts])]
            assert all(abs(a - b) < 1e-4 for a, b in zip(row.scores, expected, strict=True))


def test_nli_zero_shot_matches_the_transformers_pipeline(
    tmp_path: Path, minilm_2way: Path, torch_one_thread: None
) -> None:
    """The NLI adapter against transformers' own zero-shot-classification pipeline: same
    hypotheses, same model, so the same label probabilities."""
    from transformers import pipeline

    from bench.prompt_runner import PromptRunner
    from bench.specs import ModelSpec, PromptConfig
    from bench.store import ResultStore
    from bench.tasks import get_task, load_task_data

    texts = [
        "A wonderful, moving film with a superb cast.",
        "Dull, slow and far too long.",
        "I have never been so bored in a cinema.",
        "The best thing I have seen this year.",
        "It was fine, I suppose, though the ending dragged.",
        "Absolutely dreadful acting from start to finish.",
    ] * 3
    folder = tmp_path / "task"
    folder.mkdir()
    with (folder / "d.jsonl").open("w") as fh:
        for i, t in enumerate(texts):
            fh.write(json.dumps({"text": f"{t} ({i})", "label": ["neg", "pos"][i % 2]}) + "\n")
    (folder / "s.yaml").write_text(
        "name: s\nsource: {type: local, path: d.jsonl}\ninputs: [text]\nlabels: [neg, pos]\n"
        "splits: {fractions: {train: 0.0, test: 1.0}}\n"
        "prompt:\n  templates: ['{text}']\n  choices: [negative, positive]\n"
        "  hypothesis: 'The sentiment of this review is {choice}.'\n"
    )
    item = get_task(str(folder / "s.yaml"))
    data = load_task_data(item.spec, item.base_dir)
    with ResultStore(tmp_path / "nli.sqlite") as store:
        runner = PromptRunner(store, PromptConfig(batch_size=4), progress=False)
        planned = runner.plan(data, adapter="nli")
        _, (summary,) = runner.run(ModelSpec(name="nli", path=str(minilm_2way)), planned)
        rows = store.prompt_rows(summary.record.members[0])
    classify = pipeline("zero-shot-classification", model=str(minilm_2way), device="cpu")
    examples = data.split("test")
    assert len(rows) == len(examples) == len(texts)
    for row, ex in zip(rows, examples, strict=True):
        ref = classify(
            ex.inputs[0],
            candidate_labels=["negative", "positive"],
            hypothesis_template="The sentiment of this review is {}.",
        )
        ref_scores = dict(zip(ref["labels"], ref["scores"], strict=True))
        assert abs(row.scores[0] - ref_scores["negative"]) < 1e-5
        assert abs(row.scores[1] - ref_scores["positive"]) < 1e-5
        assert row.output == ref["labels"][0]


# --------------------------------------------------------------------------------------------------
# The command line


def _bench(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_prompt_run_gives_shot_columns_with_ci_and_spread(
    tmp_path: Path, task_dir: Path, lm_dir: Path
) -> None:
    db = tmp_path / "cli.sqlite"
    args = ["run", "--db", str(db), "--no-progress", "-m", f"tiny={lm_dir}", "-k", "0", "-k", "2"]
    for name in ("cls", "mc", "gen"):
        args += ["-t", str(task_dir / f"{name}.yaml")]
    proc = _bench(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| model"))
    for column in ("cls@0shot", "cls@2shot", "mc@0shot", "mc@2shot", "gen@0shot", "gen@2shot"):
        assert column in header
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| tiny"))
    cells = [c.strip() for c in row.strip("|").split("|")[1:]]
    names = header.strip("|").split("|")[1:]
    two_templates = [c for h, c in zip(names, cells, strict=True) if "gen" not in h]
    assert all("[" in c and " range " in c for c in two_templates), cells
    assert "range:" in proc.stdout  # the footnote explains the spread

    again = _bench(*args)
    assert again.returncode == 0 and again.stdout == proc.stdout

    csv = _bench("leaderboard", "--db", str(db), "--format", "csv")
    assert csv.returncode == 0, csv.stderr
    import io

    import pandas as pd

    frame = pd.read_csv(io.StringIO(csv.stdout))
    per_template = frame[frame["column"] == "cls@2shot/t2"].iloc[0]
    assert len(str(per_template["profile"])) == 12 and pd.isna(per_template["spread"])
    summary = frame[frame["column"] == "cls@2shot"].iloc[0]
    two = frame[frame["column"].isin(["cls@2shot/t1", "cls@2shot/t2"])]["value"]
    assert summary["value"] == pytest.approx(two.mean())
    assert summary["spread"] == pytest.approx(two.max() - two.min())
    wide = _bench("leaderboard", "--db", str(db), "--templates")
    assert "cls@0shot/t1" in wide.stdout and "cls@0shot/t1" not in proc.stdout


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing-field", "references {review}"),
        ("k-too-large", "few-shot pool holds"),
        ("no-tokenizer", "tokenizer"),
        ("not-causal", "not a causal language model"),
        ("classifier-on-choices", "multiple-choice task"),
    ],
)
def test_cli_refuses_bad_prompt_input(
    case: str,
    needle: str,
    tmp_path: Path,
    task_dir: Path,
    lm_dir: Path,
    tiny_model_dir: Path,
) -> None:
    db = str(tmp_path / "bad.sqlite")
    task = str(task_dir / "mc.yaml")
    model = str(lm_dir)
    extra: list[str] = []
    if case == "missing-field":
        bad = tmp_path / "bad.yaml"
        bad.write_text(TASKS["cls"].replace("{text} ->", "{review} ->"))
        shutil.copy(task_dir / "data.jsonl", tmp_path / "data.jsonl")
        task = str(bad)
    elif case == "k-too-large":
        extra = ["--shots", "500"]
    elif case == "no-tokenizer":
        bare = tmp_path / "bare-lm"
        bare.mkdir()
        for name in ("config.json", "model.safetensors", "generation_config.json"):
            if (lm_dir / name).exists():
                shutil.copy(lm_dir / name, bare / name)
        model = str(bare)
    elif case == "not-causal":
        model = str(tiny_model_dir)
        extra = ["--adapter", "causal"]
    elif case == "classifier-on-choices":
        model = str(tiny_model_dir)
    proc = _bench("run", "--db", db, "--no-progress", "-t", task, "-m", model, *extra)
    assert_user_error(proc, needle)
    if case != "no-tokenizer":
        # Refused before any work: nothing was stored.
        from bench.store import ResultStore

        with ResultStore(db) as store:
            assert store.runs(status=None) == []


# --------------------------------------------------------------------------------------------------
# Task kinds and answer extraction


def test_answer_extraction() -> None:
    from bench.prompts import extract_answer

    assert extract_answer(" 63 + 23 = 86", r"[-+]?\d+") == "63"
    assert extract_answer(" 63 + 23 = 86", r"[-+]?\d+", "last") == "86"
    assert extract_answer("37 - 47 = -10", r"[-+]?\d+", "last") == "-10"
    assert extract_answer("The answer is (B).", r"\(([A-E])\)") == "B"
    assert extract_answer("no digits", r"\d+") == ""
    assert extract_answer("  free text \n", None) == "free text"


def test_multiple_choice_options_from_a_list_or_a_score_mapping(tmp_path: Path) -> None:
    from bench.specs import TaskSpec
    from bench.tasks.loading import build_task_data

    spec = TaskSpec.model_validate(
        {
            "name": "m",
            "source": {"type": "local", "path": "x.jsonl"},
            "kind": "multiple_choice",
            "inputs": ["q"],
            "choices_column": "opts",
            "label_column": "gold",
            "splits": {"fractions": {"train": 0.0, "test": 1.0}},
            "prompt": {"templates": ["{q}"]},
        }
    )
    raw = {
        "all": [
            {"q": "one", "opts": ["a", "b", "c"], "gold": "b"},
            {"q": "two", "opts": {"x": 0, "y": 1}, "gold": "y"},
        ]
    }
    data = build_task_data(spec, raw)
    by_q = {ex.inputs[0]: ex for ex in data.split("test")}
    assert by_q["one"].choices == ("a", "b", "c") and by_q["one"].label == 1
    assert by_q["two"].choices == ("x", "y") and by_q["two"].label == 1
    # Same question and answer with other options is another example.
    other = build_task_data(spec, {"all": [{"q": "one", "opts": ["a", "b"], "gold": "b"}]})
    assert other.split("test")[0].uid != by_q["one"].uid

    from bench.errors import DataError

    with pytest.raises(DataError, match="not one of the example's options"):
        build_task_data(spec, {"all": [{"q": "one", "opts": ["a", "b"], "gold": "z"}]})
    with pytest.raises(DataError, match="2 or more, all distinct"):
        build_task_data(spec, {"all": [{"q": "one", "opts": ["a", "a"], "gold": "a"}]})


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"labels": ["a", "b"]}, "remove labels"),
        ({"choices_column": None}, "needs choices_column"),
        ({"prompt": None}, "posed as a prompt"),
        ({"kind": "classification", "labels": ["a"]}, "at least 2 labels"),
        ({"prompt": {"templates": ["{q}"], "choices": ["x", "y"]}}, "verbalise labels"),
    ],
)
def test_task_kind_fields_are_validated(patch: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    from bench.specs import TaskSpec

    base: dict[str, Any] = {
        "name": "m",
        "source": {"type": "local", "path": "x.jsonl"},
        "kind": "multiple_choice",
        "inputs": ["q"],
        "choices_column": "opts",
        "prompt": {"templates": ["{q}"]},
    }
    with pytest.raises(ValidationError, match=message):
        TaskSpec.model_validate({**base, **patch})


_BIGBENCH = pytest.mark.assets("bigbench")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        pytest.param("strategyqa", "classification", marks=_BIGBENCH),
        pytest.param("logical_deduction", "multiple_choice", marks=_BIGBENCH),
        pytest.param("date_understanding", "multiple_choice", marks=_BIGBENCH),
        pytest.param("navigate", "classification", marks=_BIGBENCH),
        pytest.param("causal_judgment", "classification", marks=_BIGBENCH),
        pytest.param("arithmetic", "generation", marks=_BIGBENCH),
        ("arithmetic_generated", "generation"),
    ],
)
def test_builtin_reasoning_tasks_load_and_render(name: str, kind: str) -> None:
    from bench.prompts import build_request
    from bench.tasks import get_task, load_task_data

    item = get_task(name)
    data = load_task_data(item.spec, item.base_dir)
    assert item.spec.kind == kind
    assert len(data.split("test")) >= 100 and len(data.split("train")) >= 30
    ex = data.split("test")[0]
    req = build_request(item.spec, ex, data.split("train"), template=1, k=3)
    assert len(req.shots) == 3 and ex.uid not in req.shots and "{" not in req.context
    if kind == "generation":
        assert req.choices == [] and req.target == ex.target
    else:
        assert len(req.choices) >= 2 and 0 <= req.label < len(req.choices)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("choice_task", "options", "generation_task"),
    [
        pytest.param("date_understanding", 3, "arithmetic", marks=_BIGBENCH),
        # Without the BIG-bench asset: verbalised labels, and generated arithmetic.
        ("vader_movies", 2, "arithmetic_generated"),
    ],
)
def test_default_causal_lm_answers_builtin_reasoning_tasks(
    tmp_path: Path, choice_task: str, options: int, generation_task: str
) -> None:
    """`bench run --model smollm2` end to end on the real default LM: a task answered by
    choosing (date_understanding's per-question options, or a classification task's verbalised
    labels) and a generation task, at 0 and 1 shots, through the chat template, stored and
    tabled."""
    from bench.errors import AssetError
    from bench.models.gguf import default_causal_lm
    from bench.store import ResultStore

    try:
        default_causal_lm()
    except AssetError as exc:
        pytest.skip(f"smollm2 asset unavailable: {exc}")
    db = tmp_path / "lm.sqlite"
    proc = _bench(
        "run", "--db", str(db), "--no-progress", "--model", "smollm2", "--limit", "4",
        "--template", "1", "--task", choice_task, "--task", generation_task,
        "-k", "0", "-k", "1",
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| model"))
    for column in (f"{generation_task}@0shot", f"{generation_task}@1shot", f"{choice_task}@1shot"):
        assert column in header
    assert "smollm2-135m-instruct" in proc.stdout
    with ResultStore(db) as store:
        prompts = [r for r in store.runs() if r.kind == "prompt"]
        assert len(prompts) == 4 and all(r.config.chat_template_used for r in prompts)
        for record in prompts:
            rows = store.prompt_rows(record.run_key)
            assert len(rows) == 4
            assert all(r.prompt.rstrip().endswith("<|im_start|>assistant") for r in rows)
            if record.task == generation_task:
                assert all(r.output and r.target.lstrip("-").isdigit() for r in rows)
            else:
                assert all(len(r.scores) >= options for r in rows)  # options per question
                assert all(max(r.scores) == r.scores[r.pred] for r in rows)
