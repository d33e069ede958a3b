"""A run killed with SIGKILL mid-way resumes with no lost and no duplicated examples."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_WORDS

N_EXAMPLES = 1500


def _write_task(folder: Path) -> Path:
    rng = random.Random(7)
    labels = ["entailment", "neutral", "contradiction"]
    with (folder / "pairs.jsonl").open("w") as fh:
        for i in range(N_EXAMPLES):
            premise = " ".join(rng.choices(TINY_WORDS, k=rng.randint(3, 30)))
            hypothesis = " ".join(rng.choices(TINY_WORDS, k=rng.randint(2, 12)))
            row = {"p": premise, "h": f"{hypothesis} {i}", "y": labels[i % 3]}
            fh.write(json.dumps(row) + "\n")
    task = folder / "pairs.yaml"
    task.write_text(
        "name: resume_pairs\nsource: {type: local, path: pairs.jsonl}\n"
        "inputs: [p, h]\nlabel_column: y\nlabels: [entailment, neutral, contradiction]\n"
        "splits: {fractions: {test: 1.0}}\n"
    )
    return task


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def _bench(args: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _predictions(db: Path) -> list[tuple[int, str, int, list[float]]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT idx, uid, pred, logits FROM predictions ORDER BY idx"
        ).fetchall()
    return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path, tiny_model_dir: Path) -> None:
    task = _write_task(tmp_path)
    common = [
        "run",
        "--task",
        str(task),
        "--model",
        f"tiny={tiny_model_dir}",
        "--batch-size",
        "4",
        "--no-progress",
        "--n-bootstrap",
        "100",
    ]

    killed_db = tmp_path / "killed.sqlite"
    proc = _bench([*common, "--db", str(killed_db)])
    deadline = time.monotonic() + 120
    while _count(killed_db) < 120:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "run made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _count(killed_db)
    assert 120 <= partial < N_EXAMPLES, "the kill must land mid-run"

    resumed = _bench([*common, "--db", str(killed_db)])
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()[-2000:]

    clean_db = tmp_path / "clean.sqlite"
    clean = _bench([*common, "--db", str(clean_db)])
    out2, err2 = clean.communicate(timeout=300)
    assert clean.returncode == 0, err2.decode()[-2000:]

    got, want = _predictions(killed_db), _predictions(clean_db)
    assert [r[0] for r in got] == list(range(N_EXAMPLES))  # none lost, none duplicated
    assert [(r[0], r[1], r[2]) for r in got] == [(r[0], r[1], r[2]) for r in want]
    np.testing.assert_allclose([r[3] for r in got], [r[3] for r in want], rtol=0, atol=1e-6)
    # The summary tables agree too (same metrics from the same predictions).
    assert out.decode().splitlines()[-3:] == out2.decode().splitlines()[-3:]


@pytest.mark.slow
def test_sigterm_marks_the_run_interrupted_and_it_resumes(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """SIGTERM (a CI timeout, a container stopping) ended the process at once and left the run
    'running' with nothing behind it; it now interrupts the command as Ctrl-C does."""
    task = _write_task(tmp_path)
    db = tmp_path / "term.sqlite"
    common = ["run", "--task", str(task), "--model", f"tiny={tiny_model_dir}", "--batch-size",
              "4", "--no-progress", "--n-bootstrap", "0", "--db", str(db)]  # fmt: skip
    proc = _bench(common)
    deadline = time.monotonic() + 120
    while _count(db) < 40:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "run made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()[-2000:]
    assert err.decode().strip().splitlines()[-1] == (
        "terminated: what was computed is stored; run the same command again to resume"
    )
    with sqlite3.connect(db) as conn:
        status, error = conn.execute("SELECT status, error FROM runs").fetchone()
    assert (status, error) == ("failed", "interrupted")
    assert 40 <= _count(db) < N_EXAMPLES
    resumed = _bench(common)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()[-2000:]
    assert [r[0] for r in _predictions(db)] == list(range(N_EXAMPLES))
