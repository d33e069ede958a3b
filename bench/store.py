"""The results store: one SQLite file holding runs, per-example predictions and metrics.

A run's key is a hash of everything that can change its numbers (task data, model weights or
revision, evaluation config, harness version), so an identical request is answered from here.
Predictions are written one batch per transaction: a process killed at any instant leaves whole
batches only, and a rerun continues from the first missing example.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.specs import canonical_json, sha256_text

SCHEMA_VERSION = 1
DB_ENV = "BENCH_DB"
DEFAULT_DB = Path("results") / "bench.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    task TEXT NOT NULL,
    task_version TEXT NOT NULL,
    task_hash TEXT NOT NULL,
    model TEXT NOT NULL,
    model_path TEXT NOT NULL,
    model_hash TEXT NOT NULL,
    config_json TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    split TEXT NOT NULL,
    n_examples INTEGER NOT NULL,
    label_names TEXT NOT NULL,
    label_mapping TEXT NOT NULL,
    seed INTEGER NOT NULL,
    harness_version TEXT NOT NULL,
    versions_json TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'complete')),
    created_at REAL NOT NULL,
    finished_at REAL,
    compute_s REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS predictions (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    uid TEXT NOT NULL,
    label INTEGER NOT NULL,
    pred INTEGER NOT NULL,
    probs TEXT NOT NULL,
    logits TEXT NOT NULL,
    PRIMARY KEY (run_key, idx)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    low REAL,
    high REAL,
    PRIMARY KEY (run_key, name)
);
CREATE TABLE IF NOT EXISTS attack_examples (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    uid TEXT NOT NULL,
    label INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('succeeded', 'failed', 'skipped')),
    original TEXT NOT NULL,
    perturbed TEXT NOT NULL,
    original_pred INTEGER NOT NULL,
    perturbed_pred INTEGER NOT NULL,
    original_scores TEXT NOT NULL,
    perturbed_scores TEXT NOT NULL,
    queries INTEGER NOT NULL,
    words_changed INTEGER NOT NULL,
    words_total INTEGER NOT NULL,
    PRIMARY KEY (run_key, idx)
);
CREATE TABLE IF NOT EXISTS prompt_examples (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    uid TEXT NOT NULL,
    label INTEGER NOT NULL,
    pred INTEGER NOT NULL,
    pred_norm INTEGER NOT NULL,
    scores TEXT NOT NULL,
    prompt TEXT NOT NULL,
    output TEXT NOT NULL,
    answer TEXT NOT NULL,
    target TEXT NOT NULL,
    correct INTEGER NOT NULL,
    correct_norm INTEGER NOT NULL,
    shots TEXT NOT NULL,
    PRIMARY KEY (run_key, idx)
);
CREATE INDEX IF NOT EXISTS runs_by_model_task ON runs (model, task, status);
"""


def default_db_path() -> Path:
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB)


def run_key(parts: dict[str, Any]) -> str:
    """The identity of a run: a short hash of everything that can change its numbers."""
    return sha256_text(canonical_json(parts))[:24]


@dataclass(frozen=True)
class RunRecord:
    run_key: str
    kind: str
    task: str
    task_version: str
    task_hash: str
    model: str
    model_path: str
    model_hash: str
    config: dict[str, Any]
    split: str
    n_examples: int
    label_names: list[str]
    label_mapping: dict[str, str]
    seed: int
    harness_version: str
    versions: dict[str, str]
    status: str = "running"
    created_at: float = 0.0
    finished_at: float | None = None
    compute_s: float = 0.0


@dataclass(frozen=True)
class PredictionRow:
    idx: int
    uid: str
    label: int
    pred: int
    probs: Sequence[float]
    logits: Sequence[float]


@dataclass(frozen=True)
class AttackRow:
    """One attacked example: what went in, what came out, and what it cost.

    ``original`` and ``perturbed`` hold every input column (the perturbed text equals the original
    when the attack was skipped or failed); scores are in task label order.
    """

    idx: int
    uid: str
    label: int
    status: str  # succeeded | failed | skipped
    original: Sequence[str]
    perturbed: Sequence[str]
    original_pred: int
    perturbed_pred: int
    original_scores: Sequence[float]
    perturbed_scores: Sequence[float]
    queries: int
    words_changed: int
    words_total: int


@dataclass(frozen=True)
class PromptRow:
    """One example posed to a language model: the exact prompt, what came back, and whether it
    was right.

    Multiple choice: ``scores`` are the answers' loglikelihoods, ``pred`` / ``pred_norm`` the
    chosen answer by raw and by length-normalised loglikelihood, ``output`` the chosen answer's
    text. Generation: ``output`` is the generated text, ``answer`` what was read from it,
    ``target`` the reference, and ``pred`` / ``pred_norm`` are -1. NLI zero-shot: ``scores`` are
    the entailment probabilities of each label's hypothesis.
    """

    idx: int
    uid: str
    label: int
    pred: int
    pred_norm: int
    scores: Sequence[float]
    prompt: str
    output: str
    answer: str
    target: str
    correct: bool
    correct_norm: bool
    shots: Sequence[str]


@dataclass(frozen=True)
class StoredMetric:
    run_key: str
    name: str
    value: float
    low: float | None
    high: float | None


class ResultStore:
    """SQLite-backed store. One connection per instance; safe to reopen after a crash."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), timeout=30.0)
            # WAL keeps committed batches durable when the process dies mid-write, and lets a
            # reader (leaderboard) work while a run is writing.
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise BenchError(f"cannot open results database {self.path}: {exc}") from None

    def _check_schema(self) -> None:
        row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            with self._conn:
                self._conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
        elif int(row[0]) != SCHEMA_VERSION:
            raise BenchError(
                f"results database {self.path} has schema {row[0]}, this harness needs "
                f"{SCHEMA_VERSION}; use another --db"
            )

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._conn:
            yield self._conn

    # -- runs -------------------------------------------------------------------------------

    def begin_run(self, record: RunRecord) -> RunRecord:
        """Insert the run if new; return the stored record (an existing one wins)."""
        with self._tx() as conn:
            conn.execute(
                """INSERT OR IGNORE INTO runs (run_key, kind, task, task_version, task_hash,
                model, model_path, model_hash, config_json, config_hash, split, n_examples,
                label_names, label_mapping, seed, harness_version, versions_json, status,
                created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,'running',?)""",
                (
                    record.run_key,
                    record.kind,
                    record.task,
                    record.task_version,
                    record.task_hash,
                    record.model,
                    record.model_path,
                    record.model_hash,
                    canonical_json(record.config),
                    sha256_text(canonical_json(record.config)),
                    record.split,
                    record.n_examples,
                    json.dumps(record.label_names),
                    canonical_json(record.label_mapping),
                    record.seed,
                    record.harness_version,
                    canonical_json(record.versions),
                    time.time(),
                ),
            )
        stored = self.get_run(record.run_key)
        assert stored is not None
        return stored

    def _run_rows(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        cursor = self._conn.cursor()
        # Rows by column name, for this cursor only: other queries keep plain tuples.
        cursor.row_factory = sqlite3.Row
        return cursor.execute(sql, params).fetchall()

    def get_run(self, key: str) -> RunRecord | None:
        rows = self._run_rows("SELECT * FROM runs WHERE run_key=?", (key,))
        return self._record(rows[0]) if rows else None

    def runs(self, status: str | None = "complete") -> list[RunRecord]:
        sql = "SELECT * FROM runs" + (" WHERE status=?" if status else "") + " ORDER BY created_at"
        return [self._record(r) for r in self._run_rows(sql, (status,) if status else ())]

    @staticmethod
    def _record(d: sqlite3.Row) -> RunRecord:
        return RunRecord(
            run_key=d["run_key"],
            kind=d["kind"],
            task=d["task"],
            task_version=d["task_version"],
            task_hash=d["task_hash"],
            model=d["model"],
            model_path=d["model_path"],
            model_hash=d["model_hash"],
            config=json.loads(d["config_json"]),
            split=d["split"],
            n_examples=d["n_examples"],
            label_names=json.loads(d["label_names"]),
            label_mapping=json.loads(d["label_mapping"]),
            seed=d["seed"],
            harness_version=d["harness_version"],
            versions=json.loads(d["versions_json"]),
            status=d["status"],
            created_at=d["created_at"],
            finished_at=d["finished_at"],
            compute_s=d["compute_s"],
        )

    def add_compute_time(self, key: str, seconds: float) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE runs SET compute_s = compute_s + ? WHERE run_key=?", (seconds, key)
            )

    def finish_run(self, key: str, metrics: Iterable[StoredMetric]) -> None:
        """Write the metrics and mark the run complete, atomically."""
        with self._tx() as conn:
            conn.execute("DELETE FROM metrics WHERE run_key=?", (key,))
            conn.executemany(
                "INSERT INTO metrics (run_key, name, value, low, high) VALUES (?,?,?,?,?)",
                [(key, m.name, m.value, m.low, m.high) for m in metrics],
            )
            conn.execute(
                "UPDATE runs SET status='complete', finished_at=? WHERE run_key=?",
                (time.time(), key),
            )

    # -- predictions ------------------------------------------------------------------------

    def done_indices(self, key: str) -> set[int]:
        rows = self._conn.execute("SELECT idx FROM predictions WHERE run_key=?", (key,))
        return {r[0] for r in rows}

    def add_predictions(self, key: str, rows: Sequence[PredictionRow]) -> int:
        """Write one batch in one transaction. Rows already stored are kept, not duplicated.

        Returns the number of rows newly written.
        """
        with self._tx() as conn:
            before = conn.total_changes
            conn.executemany(
                """INSERT OR IGNORE INTO predictions (run_key, idx, uid, label, pred, probs,
                logits) VALUES (?,?,?,?,?,?,?)""",
                [
                    (
                        key,
                        r.idx,
                        r.uid,
                        r.label,
                        r.pred,
                        json.dumps([float(x) for x in r.probs]),
                        json.dumps([float(x) for x in r.logits]),
                    )
                    for r in rows
                ],
            )
            return conn.total_changes - before

    def predictions(self, key: str) -> list[PredictionRow]:
        rows = self._conn.execute(
            "SELECT idx, uid, label, pred, probs, logits FROM predictions WHERE run_key=? "
            "ORDER BY idx",
            (key,),
        ).fetchall()
        return [
            PredictionRow(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5])) for r in rows
        ]

    def count_predictions(self, key: str) -> int:
        row = self._conn.execute(
            "SELECT COUNT(*) FROM predictions WHERE run_key=?", (key,)
        ).fetchone()
        return int(row[0])

    # -- attacked examples ------------------------------------------------------------------

    def add_attack_rows(self, key: str, rows: Sequence[AttackRow]) -> int:
        """Write finished attacks in one transaction (existing rows are kept); the number new."""
        with self._tx() as conn:
            before = conn.total_changes
            conn.executemany(
                """INSERT OR IGNORE INTO attack_examples (run_key, idx, uid, label, status,
                original, perturbed, original_pred, perturbed_pred, original_scores,
                perturbed_scores, queries, words_changed, words_total)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                [
                    (
                        key,
                        r.idx,
                        r.uid,
                        r.label,
                        r.status,
                        json.dumps(list(r.original), ensure_ascii=False),
                        json.dumps(list(r.perturbed), ensure_ascii=False),
                        r.original_pred,
                        r.perturbed_pred,
                        json.dumps([float(x) for x in r.original_scores]),
                        json.dumps([float(x) for x in r.perturbed_scores]),
                        r.queries,
                        r.words_changed,
                        r.words_total,
                    )
                    for r in rows
                ],
            )
            return conn.total_changes - before

    def attack_rows(self, key: str) -> list[AttackRow]:
        rows = self._conn.execute(
            """SELECT idx, uid, label, status, original, perturbed, original_pred, perturbed_pred,
            original_scores, perturbed_scores, queries, words_changed, words_total
            FROM attack_examples WHERE run_key=? ORDER BY idx""",
            (key,),
        ).fetchall()
        return [
            AttackRow(
                idx=r[0],
                uid=r[1],
                label=r[2],
                status=r[3],
                original=json.loads(r[4]),
                perturbed=json.loads(r[5]),
                original_pred=r[6],
                perturbed_pred=r[7],
                original_scores=json.loads(r[8]),
                perturbed_scores=json.loads(r[9]),
                queries=r[10],
                words_changed=r[11],
                words_total=r[12],
            )
            for r in rows
        ]

    def attacked_indices(self, key: str) -> set[int]:
        rows = self._conn.execute("SELECT idx FROM attack_examples WHERE run_key=?", (key,))
        return {r[0] for r in rows}

    # -- prompted examples -----------------------------------------------------------------

    def add_prompt_rows(self, key: str, rows: Sequence[PromptRow]) -> int:
        """Write answered prompts in one transaction (existing rows are kept); the number new."""
        with self._tx() as conn:
            before = conn.total_changes
            conn.executemany(
                """INSERT OR IGNORE INTO prompt_examples (run_key, idx, uid, label, pred,
                pred_norm, scores, prompt, output, answer, target, correct, correct_norm, shots)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                [
                    (
                        key,
                        r.idx,
                        r.uid,
                        r.label,
                        r.pred,
                        r.pred_norm,
                        json.dumps([float(x) for x in r.scores]),
                        r.prompt,
                        r.output,
                        r.answer,
                        r.target,
                        int(r.correct),
                        int(r.correct_norm),
                        json.dumps(list(r.shots)),
                    )
                    for r in rows
                ],
            )
            return conn.total_changes - before

    def prompt_rows(self, key: str) -> list[PromptRow]:
        rows = self._conn.execute(
            """SELECT idx, uid, label, pred, pred_norm, scores, prompt, output, answer, target,
            correct, correct_norm, shots FROM prompt_examples WHERE run_key=? ORDER BY idx""",
            (key,),
        ).fetchall()
        return [
            PromptRow(
                idx=r[0],
                uid=r[1],
                label=r[2],
                pred=r[3],
                pred_norm=r[4],
                scores=json.loads(r[5]),
                prompt=r[6],
                output=r[7],
                answer=r[8],
                target=r[9],
                correct=bool(r[10]),
                correct_norm=bool(r[11]),
                shots=json.loads(r[12]),
            )
            for r in rows
        ]

    def prompted_indices(self, key: str) -> set[int]:
        rows = self._conn.execute("SELECT idx FROM prompt_examples WHERE run_key=?", (key,))
        return {r[0] for r in rows}

    # -- metrics ----------------------------------------------------------------------------

    def metrics(self, key: str) -> dict[str, StoredMetric]:
        rows = self._conn.execute(
            "SELECT run_key, name, value, low, high FROM metrics WHERE run_key=?", (key,)
        ).fetchall()
        return {r[1]: StoredMetric(*r) for r in rows}

    def latest_complete(self, kinds: Sequence[str] = ("eval",)) -> list[RunRecord]:
        """The newest complete run per (model, task, split, kind, column): what a leaderboard
        shows. Attack and suite runs carry their column (``suite/attack``) in their config."""
        latest: dict[tuple[str, str, str, str, str], RunRecord] = {}
        for rec in self.runs("complete"):
            if rec.kind not in kinds:
                continue
            k = (rec.model, rec.task, rec.split, rec.kind, str(rec.config.get("column", "")))
            if k not in latest or (rec.finished_at or 0) >= (latest[k].finished_at or 0):
                latest[k] = rec
        return list(latest.values())
