"""The command line: light start-up, and bad input as one line with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_user_error

from bench.assets import get_spec


def _bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


def _run(task: Path | str, model: Path | str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return _bench(
        "run", "--task", str(task), "--model", str(model), "--db", str(tmp_path / "r.sqlite")
    )


def _modules_after(args: list[str]) -> set[str]:
    code = (
        "import sys\nfrom bench.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "print('MODULES:', ' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'textattack', 'transformers', 'datasets', 'pandas', 'pydantic', 'numpy'})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    marker = [line for line in out.stdout.splitlines() if line.startswith("MODULES:")]
    assert len(marker) == 1, out.stdout
    return set(marker[0].split()[1:])


def test_help_imports_no_heavy_library() -> None:
    loaded = _modules_after(["--help"])
    assert not {m for m in loaded if m.split(".")[0] in {"torch", "textattack"}}, loaded
    # transformers, datasets, pandas, numpy and pydantic (bench.specs) stay out too
    assert not loaded, loaded


def test_tasks_list_imports_no_torch() -> None:
    loaded = _modules_after(["tasks", "list"])
    assert not {m for m in loaded if m.split(".")[0] in {"torch", "textattack"}}


def test_tasks_list_says_where_each_task_reads_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new machine can see which tasks it can run: a pinned asset is named and marked when
    not fetched; generated and local tasks need nothing."""
    from bench import assets

    cache = tmp_path / "cache"
    vader = tmp_path / "vader"
    vader.mkdir()
    (vader / "movieReviewSnippets_GroundTruth.txt").write_text("1\t1.5\tfine\n")
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))  # for this process and the CLI's
    assets.install_tree(assets.get_spec("vader"), vader)
    _local_task(tmp_path, ROWS)
    listed = _bench("tasks", "list", "--tasks-dir", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    where = {line.split()[0]: line.split("  ")[-1].strip() for line in listed.stdout.splitlines()}
    assert where["epistemic_reasoning"] == "bigbench (not fetched)"
    assert where["vader_tweets"] == "vader"
    assert where["arithmetic_generated"] == "generated"
    assert where["local_pairs"] == "local files"


def _local_task(folder: Path, rows: list[dict[str, object]], **extra: str) -> Path:
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields = {
        "name": "local_pairs",
        "inputs": "[premise, hypothesis]",
        "labels": "[entailment, neutral, contradiction]",
        **extra,
    }
    body = "".join(f"{k}: {v}\n" for k, v in fields.items())
    task = folder / "task.yaml"
    task.write_text(
        body + "source: {type: local, path: data.jsonl}\nsplits: {fractions: {test: 1.0}}\n"
    )
    return task


ROWS = [
    {"premise": "the dog runs", "hypothesis": "a dog runs", "label": "entailment"},
    {"premise": "the cat sleeps", "hypothesis": "the cat runs", "label": "contradiction"},
]


def test_unknown_task(tiny_model_dir: Path, tmp_path: Path) -> None:
    proc = _run("no_such_task", str(tiny_model_dir), tmp_path)
    assert_user_error(proc, "unknown task 'no_such_task'")


def test_missing_column(tiny_model_dir: Path, tmp_path: Path) -> None:
    task = _local_task(tmp_path, ROWS, inputs="[premise, claim]")
    proc = _run(str(task), str(tiny_model_dir), tmp_path)
    assert_user_error(proc, "column 'claim' not found")


def test_label_mismatch_between_model_and_task(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = [{"premise": "a", "hypothesis": "b", "label": "pos"}]
    task = _local_task(tmp_path, rows, labels="[pos, neg]")
    proc = _run(str(task), str(tiny_model_dir), tmp_path)
    assert_user_error(proc, "do not match task labels")


def test_unreadable_model_folder(tmp_path: Path) -> None:
    task = _local_task(tmp_path, ROWS)
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{ this is not json")
    proc = _run(str(task), str(broken), tmp_path)
    assert_user_error(proc, "broken-model")
    missing = _run(str(task), str(tmp_path / "nowhere"), tmp_path)
    assert_user_error(missing, "nowhere")


def test_empty_dataset(tiny_model_dir: Path, tmp_path: Path) -> None:
    task = _local_task(tmp_path, [])
    proc = _run(str(task), str(tiny_model_dir), tmp_path)
    assert_user_error(proc, "is empty")


def test_malformed_yaml(tiny_model_dir: Path, tmp_path: Path) -> None:
    task = tmp_path / "bad.yaml"
    task.write_text("name: bad\nlabels: [a, b\n  inputs: {")
    proc = _bench("run", "--task", str(task), "--model", str(tiny_model_dir))
    assert_user_error(proc, "malformed YAML")
    shown = _bench("tasks", "show", str(task))
    assert_user_error(shown, "malformed YAML")


def test_asset_hash_mismatch_is_refused(tmp_path: Path) -> None:
    archives = tmp_path / "archives"
    archives.mkdir()
    spec = get_spec("vader")
    (archives / spec.filename).write_bytes(b"not the pinned archive")
    proc = _bench(
        "assets",
        "fetch",
        "vader",
        env={"BENCH_ASSET_ARCHIVES": str(archives), "BENCH_CACHE_DIR": str(tmp_path / "c")},
    )
    assert_user_error(proc, "vader")
    assert "sha256" in proc.stderr.lower() or "hash" in proc.stderr.lower()
    assert not (tmp_path / "c" / "assets" / f"vader-{spec.version}").exists()


def test_bad_option_value_is_exit_2(tmp_path: Path) -> None:
    proc = _bench(
        "run",
        "--task",
        "vader_movies",
        "--model",
        "x",
        "--split",
        "validation",
        "--db",
        str(tmp_path / "r.sqlite"),
    )
    assert_user_error(proc, "--split")


@pytest.mark.parametrize("fmt", ["yaml", "docx"])
def test_unknown_leaderboard_format(fmt: str, tmp_path: Path) -> None:
    proc = _bench("leaderboard", "--format", fmt, "--db", str(tmp_path / "r.sqlite"))
    assert_user_error(proc, "unknown format")


def test_leaderboard_of_a_metric_no_run_has_lists_the_ones_they_have(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from bench.store import ResultStore

    db = tmp_path / "r.sqlite"
    with ResultStore(db):
        pass
    empty = _bench("leaderboard", "--db", str(db))
    assert_user_error(empty, "holds no completed runs")
    task = _local_task(tmp_path, ROWS, metrics="[accuracy, macro_f1]")
    ran = _run(task, tiny_model_dir, tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    proc = _bench("leaderboard", "--metric", "ece", "--db", str(db))
    # Not "no completed runs": there is one, it just has no ECE.
    assert_user_error(
        proc, "no completed run has metric 'ece'", "stored runs have: accuracy, macro_f1"
    )
    assert "no completed runs" not in proc.stderr
    shown = _bench("leaderboard", "--metric", "macro_f1", "--db", str(db))
    assert shown.returncode == 0 and "local_pairs (n=2)" in shown.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--task", "x", "--model", "y", "--batch-size", "abc"], "'--batch-size'"),
        (["run", "--task", "x"], "'--model'"),
        (["run", "--task", "x", "--model", "y", "--batch_size", "4"], "--batch_size"),
        (["run", "--task", "x", "--model", "y", "--batch-size", "0"], "--batch-size:"),
        (["run", "--task", "x", "--model", "y", "--device", "gpu"], "--device"),
        (["default", "--limit", "-1"], "--limit"),
        (["tasks", "show", "x", "--examples", "-1"], "--examples"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], needle: str) -> None:
    # Typer used to draw a multi-line box for these (and a pydantic traceback for default's
    # --limit); they go through the console entry point here, as a user would run them.
    proc = _bench(*args)
    assert_user_error(proc, needle)
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "╭" not in proc.stderr and "--batch_size:" not in proc.stderr


def test_help_still_exits_zero() -> None:
    proc = _bench("run", "--help")
    assert proc.returncode == 0 and "--batch-size" in proc.stdout and not proc.stderr.strip()


@pytest.mark.parametrize("group", [[], ["assets"], ["tasks"], ["export"], ["runs"]])
def test_command_lists_fit_an_80_column_terminal(group: list[str]) -> None:
    # Rich markup mode kept the docstrings' source line breaks (ragged lines wrapped twice), and
    # Click cuts a long first sentence with '...': each command gets one whole line.
    proc = _bench(*group, "--help", env={"COLUMNS": "80", "TERM": "dumb"})
    assert proc.returncode == 0, proc.stderr
    commands = proc.stdout.split("Commands:\n", 1)[1].splitlines()
    entries = [line for line in commands if line.strip()]
    assert len(entries) >= 2 and all(line.startswith("  ") for line in entries)
    # Every line names a command: no continuation lines, no truncated summaries.
    assert all(len(line) <= 80 and not line.startswith("    ") for line in entries), entries
    assert not [line for line in entries if line.rstrip().endswith("...")], entries
    assert all(len(line.split(None, 1)) == 2 for line in entries), entries


def test_tasks_show_prints_split_sizes_and_warns_on_a_small_test_split(tmp_path: Path) -> None:
    rows = [{"premise": f"p {i}", "hypothesis": f"h {i}", "label": "entailment"} for i in range(5)]
    rows += [{"premise": "a", "hypothesis": "b", "label": "contradiction"}]
    task = _local_task(tmp_path, rows)
    proc = _bench("tasks", "show", str(task), "--examples", "2")
    assert proc.returncode == 0, proc.stderr
    assert "# train: n=0" in proc.stdout
    assert "# test: n=6 (entailment 5, neutral 0, contradiction 1)" in proc.stdout
    assert len([line for line in proc.stdout.splitlines() if line.startswith("[")]) == 2
    warning = proc.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: ") and "only 6 test" in warning[0]


def test_output_paths_are_checked_before_anything_runs(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    db.write_bytes(b"")
    proc = _bench("leaderboard", "--db", str(db), "--output", str(tmp_path))
    assert_user_error(proc, "--output", "is a directory")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    proc = _bench("default", "--out", str(blocker / "reports"), "--no-progress")
    assert_user_error(proc, "--out", "is a file, not a folder")
    assert not (tmp_path / "results").exists()
