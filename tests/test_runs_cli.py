"""What a new user does with stored results: list, show, remove and export runs, compare two
models, spot a constant predictor, and evaluate a one-file evaluation set whole."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_WORDS, assert_user_error, build_tiny_model

LABELS = ["entailment", "neutral", "contradiction"]


def _bench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


def _eval_file(folder: Path, n: int) -> Path:
    """An evaluation set as people have them: one JSONL file, no splits declared."""
    rng = random.Random(11)
    with (folder / "dev.jsonl").open("w") as fh:
        for i in range(n):
            premise = " ".join(rng.choices(TINY_WORDS, k=7))
            hypothesis = " ".join(rng.choices(TINY_WORDS, k=4))
            fh.write(json.dumps({"premise": premise, "hypothesis": hypothesis,
                                 "label": LABELS[i % 3]}) + "\n")  # fmt: skip
    task = folder / "rte_like.yaml"
    task.write_text(
        "name: rte_like\nsource: {type: local, path: dev.jsonl}\n"
        "inputs: [premise, hypothesis]\nlabels: [entailment, neutral, contradiction]\n"
    )
    return task


def _constant_model(folder: Path, tiny: Path) -> Path:
    """The tiny classifier with its head replaced by a constant: always 'neutral'."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny, folder)
    tensors = load_file(folder / "model.safetensors")
    tensors["classifier.weight"] = torch.zeros_like(tensors["classifier.weight"])
    tensors["classifier.bias"] = torch.tensor([0.0, 50.0, 0.0])
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    """One store with two real models and a constant one evaluated on an 81-row file."""
    folder = tmp_path_factory.mktemp("runs-cli")
    task = _eval_file(folder, 81)
    other = build_tiny_model(folder / "other", seed=3, init_range=0.5)
    constant = _constant_model(folder / "constant", tiny_model_dir)
    db = folder / "r.sqlite"
    for name, path in (("base", tiny_model_dir), ("cand", other), ("const", constant)):
        proc = _bench("run", "--task", str(task), "--model", f"{name}={path}", "--db", str(db),
                      "--no-progress", "--device", "cpu")  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        # Under 100 test examples: one warning line, with n.
        warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and "only 81 test" in warnings[0], proc.stderr
    return {"db": db, "task": task, "folder": folder}


def test_a_one_file_evaluation_set_is_evaluated_whole(store: dict[str, Path]) -> None:
    shown = _bench("tasks", "show", str(store["task"]))
    assert shown.returncode == 0, shown.stderr
    assert "# test: n=81" in shown.stdout and "# train: n=0" in shown.stdout
    board = _bench("leaderboard", "--db", str(store["db"]))
    assert board.returncode == 0, board.stderr
    assert "rte_like (n=81)" in board.stdout


def test_a_constant_predictor_is_flagged_in_every_format(store: dict[str, Path]) -> None:
    db = str(store["db"])
    md = _bench("leaderboard", "--db", db).stdout
    const_row = next(line for line in md.splitlines() if line.startswith("| const"))
    assert "‡" in const_row and "neutral" in const_row, md
    assert not any("‡" in line for line in md.splitlines() if line.startswith(("| base", "| cand")))
    html = _bench("leaderboard", "--db", db, "--format", "html").stdout
    assert "‡" in html and "neutral 100%" in html
    rows = json.loads(_bench("leaderboard", "--db", db, "--format", "json").stdout)["rows"]
    flags = {r["model"]: (r["dominant_label"], r["dominant_share"]) for r in rows}
    assert flags["const"] == ("neutral", 1.0)
    assert flags["base"] == (None, None) and flags["cand"] == (None, None)
    import csv
    import io

    csv_rows = list(
        csv.DictReader(io.StringIO(_bench("leaderboard", "--db", db, "-f", "csv").stdout))
    )
    by_model = {r["model"]: r for r in csv_rows}
    assert by_model["const"]["dominant_label"] == "neutral"
    assert float(by_model["const"]["dominant_share"]) == 1.0
    assert by_model["base"]["dominant_label"] == ""


def test_runs_list_show_export_and_compare(store: dict[str, Path], tmp_path: Path) -> None:
    db = str(store["db"])
    listed = json.loads(_bench("runs", "list", "--db", db, "--format", "json").stdout)
    assert {r["model"] for r in listed} == {"base", "cand", "const"}
    assert all(r["status"] == "complete" and r["n"] == 81 for r in listed)
    table = _bench("runs", "list", "--db", db, "--model", "cand")
    assert table.returncode == 0 and table.stdout.count("| eval |") == 1
    key = next(r["run_key"] for r in listed if r["model"] == "base")
    shown = json.loads(_bench("runs", "show", key[:8], "--db", db).stdout)
    assert shown["run_key"] == key and shown["names"] == ["base"]
    assert shown["metrics"]["accuracy"]["low"] <= shown["metrics"]["accuracy"]["value"]

    out = tmp_path / "rows.jsonl"
    exported = _bench("export", "rows", "--db", db, "--model", "base", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 81 and {r["run_key"] for r in rows} == {key}
    assert (
        abs(np.mean([r["correct"] for r in rows]) - shown["metrics"]["accuracy"]["value"]) < 1e-12
    )
    parquet = tmp_path / "rows.parquet"
    assert _bench("export", "rows", "--db", db, "--run", key, "--out", str(parquet),
                  "-f", "parquet").returncode == 0  # fmt: skip
    import pandas as pd

    assert len(pd.read_parquet(parquet)) == 81
    # CSV: list cells are JSON (pandas wrote Python's repr), and parse back to the JSONL's values.
    csv_out = tmp_path / "rows.csv"
    assert _bench("export", "rows", "--db", db, "--run", key, "--out", str(csv_out),
                  "-f", "csv").returncode == 0  # fmt: skip
    table = pd.read_csv(csv_out)
    assert [json.loads(p) for p in table["probs"]] == [r["probs"] for r in rows]
    assert [json.loads(x) for x in table["logits"]] == [r["logits"] for r in rows]

    compared = json.loads(
        _bench("compare", "--db", db, "-m", "base", "-m", "cand", "-t", "rte_like",
               "-f", "json").stdout
    )[0]  # fmt: skip
    # The same numbers as the library's paired tests on the same stored rows.
    from bench.metrics import mcnemar_test, paired_bootstrap_test
    from bench.store import ResultStore

    with ResultStore(store["db"]) as s:
        base = {r.uid: r.pred == r.label for r in s.predictions(compared["baseline_run"])}
        cand = {r.uid: r.pred == r.label for r in s.predictions(compared["candidate_run"])}
    uids = sorted(base)
    a = np.array([base[u] for u in uids])
    b = np.array([cand[u] for u in uids])
    diff, low, high, p = paired_bootstrap_test(b, a, 1000, 0)
    assert (compared["diff"], compared["low"], compared["high"], compared["p_bootstrap"]) == (
        diff,
        low,
        high,
        p,
    )
    assert (compared["mcnemar_statistic"], compared["p_mcnemar"]) == mcnemar_test(b, a)
    assert compared["n"] == 81 and compared["unpaired"] == 0
    md = _bench("compare", "--db", db, "-m", "base", "-m", "cand", "-t", "rte_like")
    assert md.returncode == 0 and "| rte_like | 81 |" in md.stdout


def test_runs_rm_needs_yes_and_removes_summaries_too(
    store: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    db = tmp_path / "copy.sqlite"
    shutil.copy(store["db"], db)
    listed = json.loads(_bench("runs", "list", "--db", str(db), "-f", "json").stdout)
    key = next(r["run_key"] for r in listed if r["model"] == "const")
    refused = _bench("runs", "rm", key, "--db", str(db))
    assert_user_error(refused, "--yes")
    assert len(json.loads(_bench("runs", "list", "--db", str(db), "-f", "json").stdout)) == 3
    done = _bench("runs", "rm", key, "--yes", "--db", str(db))
    # One run, whatever the number of rows, metrics and names removed with it.
    assert done.returncode == 0 and done.stdout.strip() == f"removed 1 run(s): {key}"
    left = json.loads(_bench("runs", "list", "--db", str(db), "-f", "json").stdout)
    assert {r["model"] for r in left} == {"base", "cand"}


def test_run_commands_refuse_bad_input_in_one_line(store: dict[str, Path], tmp_path: Path) -> None:
    db = str(store["db"])
    assert_user_error(_bench("runs", "show", "zzzzzzzz", "--db", db), "no run")
    assert_user_error(_bench("runs", "show", "ab", "--db", db), "too short")
    assert_user_error(
        _bench("runs", "list", "--db", str(tmp_path / "none.sqlite")), "does not exist"
    )
    assert_user_error(_bench("compare", "-m", "base", "-t", "rte_like", "--db", db), "exactly two")
    assert_user_error(
        _bench("compare", "-m", "base", "-m", "nobody", "-t", "rte_like", "--db", db), "'nobody'"
    )
    assert_user_error(
        _bench("export", "rows", "--db", db, "--model", "base", "--out", str(tmp_path)), "--out"
    )
    # A file in a missing folder: named up front, not after the rows were gathered.
    missing = tmp_path / "no_folder"
    assert_user_error(
        _bench("export", "rows", "--db", db, "--model", "base", "--out", str(missing / "x.csv")),
        f"--out {missing / 'x.csv'}: folder {missing} does not exist",
    )
    assert_user_error(
        _bench("export", "rows", "--db", db, "--model", "base", "--out", str(tmp_path / "x"),
               "-f", "xlsx"),
        "--format",
    )  # fmt: skip
