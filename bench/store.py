"""The results store: one SQLite file holding runs, per-example rows and metrics.

A run's key is a hash of everything that can change its rows (task data, model identity, the
settings that change predictions, harness version), so an identical request is answered from
here. Rows are written one work unit per transaction: a process killed at any instant leaves
whole units only, and a rerun continues from the first missing example. Metrics are keyed by
(run, metric settings): other bootstrap settings are recomputed from the stored rows.

The schema is versioned; numbered migrations run when an older store is opened for writing
(after a backup copy beside it). Every SQLite error becomes one line naming the file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from bench.errors import BenchError, shown
from bench.records import (
    AttackRow,
    BehaveRow,
    ExplainRow,
    MetricSettings,
    PredictionRow,
    PromptRow,
    RunRecord,
    StoredMetric,
    parse_config,
)
from bench.specs import canonical_json, sha256_text

__all__ = [
    "ATTACK_TABLE",
    "BEHAVE_TABLE",
    "DEFAULT_DB",
    "EXPLAIN_TABLE",
    "PREDICTION_TABLE",
    "PROMPT_TABLE",
    "SCHEMA_VERSION",
    "AttackRow",
    "PredictionRow",
    "PromptRow",
    "ResultStore",
    "RowTable",
    "RunRecord",
    "StoredMetric",
    "default_db_path",
    "run_key",
]

SCHEMA_VERSION = 4
# Stores up to this size are integrity-checked when opened (about 0.1 s per 10 MB).
_CHECKED_SIZE = 256 << 20
APP_ID = "nlp-bench"
DB_ENV = "BENCH_DB"
DEFAULT_DB = Path("results") / "bench.sqlite"

_RUNS = """
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
    status TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed')),
    created_at REAL NOT NULL,
    finished_at REAL,
    compute_s REAL NOT NULL DEFAULT 0,
    column_name TEXT NOT NULL DEFAULT '',
    profile_hash TEXT,
    backend TEXT NOT NULL DEFAULT 'hf',
    error TEXT
)"""

# ---- Submission bundles (issue 14) ----
# What each run's key hashes (so a bundle can show it and a validator recompute the key), and
# where an imported run came from (no row: computed here). Written out in full, not shared with
# the migration, so a later schema change cannot alter what migration 2 -> 3 creates.
_KEY_PARTS = """CREATE TABLE IF NOT EXISTS run_key_parts (
    run_key TEXT PRIMARY KEY REFERENCES runs(run_key) ON DELETE CASCADE,
    parts TEXT NOT NULL
)"""
_PROVENANCE = """CREATE TABLE IF NOT EXISTS run_provenance (
    run_key TEXT PRIMARY KEY REFERENCES runs(run_key) ON DELETE CASCADE,
    source TEXT NOT NULL CHECK (source IN ('imported', 'rescored')),
    bundle_sha256 TEXT NOT NULL,
    merkle_root TEXT NOT NULL,
    bundle_name TEXT NOT NULL,
    partial INTEGER NOT NULL DEFAULT 0,
    rescored INTEGER NOT NULL DEFAULT 0,
    imported_at REAL NOT NULL
)"""
# ---- end of submission bundles ----

_TABLES: dict[str, str] = {
    "meta": "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "runs": _RUNS,
    "run_members": """CREATE TABLE IF NOT EXISTS run_members (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    member_key TEXT NOT NULL,
    PRIMARY KEY (run_key, position)
)""",
    "run_names": """CREATE TABLE IF NOT EXISTS run_names (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    name TEXT NOT NULL,
    added_at REAL NOT NULL,
    PRIMARY KEY (run_key, name)
)""",
    "metric_sets": """CREATE TABLE IF NOT EXISTS metric_sets (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    settings TEXT NOT NULL,
    settings_json TEXT NOT NULL,
    computed_at REAL NOT NULL,
    PRIMARY KEY (run_key, settings)
)""",
    "metrics": """CREATE TABLE IF NOT EXISTS metrics (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    settings TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    low REAL,
    high REAL,
    PRIMARY KEY (run_key, settings, name)
)""",
    "predictions": """CREATE TABLE IF NOT EXISTS predictions (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    uid TEXT NOT NULL,
    label INTEGER NOT NULL,
    pred INTEGER NOT NULL,
    probs TEXT NOT NULL,
    logits TEXT NOT NULL,
    PRIMARY KEY (run_key, idx)
)""",
    "attack_examples": """CREATE TABLE IF NOT EXISTS attack_examples (
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
)""",
    "prompt_examples": """CREATE TABLE IF NOT EXISTS prompt_examples (
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
    choices TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (run_key, idx)
)""",
    # ---- Submission bundles (issue 14), schema 3: see _migrate_2_to_3 ----
    "run_key_parts": _KEY_PARTS,
    "run_provenance": _PROVENANCE,
}

# -- audits (issue 15): behavioural test cases and adversarial-example annotations (schema 4) --
_AUDIT_TABLES: dict[str, str] = {
    "behave_examples": """CREATE TABLE IF NOT EXISTS behave_examples (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    uid TEXT NOT NULL,
    test TEXT NOT NULL,
    test_type TEXT NOT NULL CHECK (test_type IN ('mft', 'inv', 'dir')),
    inputs TEXT NOT NULL,
    variant TEXT NOT NULL,
    expected INTEGER NOT NULL,
    pred INTEGER NOT NULL,
    pred_variant INTEGER NOT NULL,
    probs TEXT NOT NULL,
    probs_variant TEXT NOT NULL,
    passed INTEGER NOT NULL,
    PRIMARY KEY (run_key, idx)
)""",
    "explain_examples": """CREATE TABLE IF NOT EXISTS explain_examples (
    run_key TEXT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    uid TEXT NOT NULL,
    similarity REAL NOT NULL,
    explanation TEXT,
    PRIMARY KEY (run_key, idx)
)""",
}
_TABLES.update(_AUDIT_TABLES)
# -- end of audits -----------------------------------------------------------------------------

# What the leaderboard asks ("the newest complete run per model, task, split, kind and column")
# and the CLI's run listings filter on.
_INDICES = (
    "CREATE INDEX IF NOT EXISTS runs_latest"
    " ON runs (status, kind, task, split, column_name, finished_at)",
    "CREATE INDEX IF NOT EXISTS runs_by_model ON runs (model, task)",
    "CREATE INDEX IF NOT EXISTS run_names_by_name ON run_names (name)",
)


def default_db_path() -> Path:
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB)


def run_key(parts: dict[str, Any]) -> str:
    """The identity of a run: a short hash of everything that can change its rows."""
    return sha256_text(canonical_json(parts))[:24]


# --------------------------------------------------------------------------------------------------
# Row tables: one declaration per per-example row type


R = TypeVar("R")


def _floats(values: Iterable[float]) -> str:
    return json.dumps([float(x) for x in values])


def _texts(values: Iterable[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False)


@dataclass(frozen=True)
class RowTable(Generic[R]):
    """A per-example row type and the SQL table holding it (keyed by run and example index)."""

    name: str
    columns: tuple[str, ...]
    encode: Callable[[R], tuple[Any, ...]]
    decode: Callable[[tuple[Any, ...]], R]

    def insert_sql(self) -> str:
        cols = ", ".join(("run_key", *self.columns))
        marks = ",".join("?" * (len(self.columns) + 1))
        return f"INSERT OR IGNORE INTO {self.name} ({cols}) VALUES ({marks})"

    def select_sql(self) -> str:
        return f"SELECT {', '.join(self.columns)} FROM {self.name} WHERE run_key=? ORDER BY idx"


PREDICTION_TABLE: RowTable[PredictionRow] = RowTable(
    "predictions",
    ("idx", "uid", "label", "pred", "probs", "logits"),
    lambda r: (r.idx, r.uid, r.label, r.pred, _floats(r.probs), _floats(r.logits)),
    lambda t: PredictionRow(t[0], t[1], t[2], t[3], json.loads(t[4]), json.loads(t[5])),
)

ATTACK_TABLE: RowTable[AttackRow] = RowTable(
    "attack_examples",
    (
        "idx",
        "uid",
        "label",
        "status",
        "original",
        "perturbed",
        "original_pred",
        "perturbed_pred",
        "original_scores",
        "perturbed_scores",
        "queries",
        "words_changed",
        "words_total",
    ),
    lambda r: (
        r.idx,
        r.uid,
        r.label,
        r.status,
        _texts(r.original),
        _texts(r.perturbed),
        r.original_pred,
        r.perturbed_pred,
        _floats(r.original_scores),
        _floats(r.perturbed_scores),
        r.queries,
        r.words_changed,
        r.words_total,
    ),
    lambda t: AttackRow(
        idx=t[0],
        uid=t[1],
        label=t[2],
        status=t[3],
        original=json.loads(t[4]),
        perturbed=json.loads(t[5]),
        original_pred=t[6],
        perturbed_pred=t[7],
        original_scores=json.loads(t[8]),
        perturbed_scores=json.loads(t[9]),
        queries=t[10],
        words_changed=t[11],
        words_total=t[12],
    ),
)

PROMPT_TABLE: RowTable[PromptRow] = RowTable(
    "prompt_examples",
    (
        "idx",
        "uid",
        "label",
        "pred",
        "pred_norm",
        "scores",
        "prompt",
        "output",
        "answer",
        "target",
        "correct",
        "correct_norm",
        "shots",
        "choices",
    ),
    lambda r: (
        r.idx,
        r.uid,
        r.label,
        r.pred,
        r.pred_norm,
        _floats(r.scores),
        r.prompt,
        r.output,
        r.answer,
        r.target,
        int(r.correct),
        int(r.correct_norm),
        _texts(r.shots),
        _texts(r.choices),
    ),
    lambda t: PromptRow(
        idx=t[0],
        uid=t[1],
        label=t[2],
        pred=t[3],
        pred_norm=t[4],
        scores=json.loads(t[5]),
        prompt=t[6],
        output=t[7],
        answer=t[8],
        target=t[9],
        correct=bool(t[10]),
        correct_norm=bool(t[11]),
        shots=json.loads(t[12]),
        choices=json.loads(t[13]),
    ),
)

# -- audits (issue 15) ----------------------------------------------------------------------


def _explanation_json(row: ExplainRow) -> str | None:
    import dataclasses

    if row.explanation is None:
        return None
    return json.dumps(dataclasses.asdict(row.explanation), ensure_ascii=False)


def _explanation(text: str | None) -> Any:
    from bench.records import Explanation, TokenAttribution

    if text is None:
        return None
    data = json.loads(text)
    return Explanation(
        **{
            **data,
            "original": TokenAttribution(**data["original"]),
            "adversarial": TokenAttribution(**data["adversarial"]),
        }
    )


BEHAVE_TABLE: RowTable[BehaveRow] = RowTable(
    "behave_examples",
    (
        "idx",
        "uid",
        "test",
        "test_type",
        "inputs",
        "variant",
        "expected",
        "pred",
        "pred_variant",
        "probs",
        "probs_variant",
        "passed",
    ),
    lambda r: (
        r.idx,
        r.uid,
        r.test,
        r.test_type,
        _texts(r.inputs),
        _texts(r.variant),
        r.expected,
        r.pred,
        r.pred_variant,
        _floats(r.probs),
        _floats(r.probs_variant),
        int(r.passed),
    ),
    lambda t: BehaveRow(
        idx=t[0],
        uid=t[1],
        test=t[2],
        test_type=t[3],
        inputs=json.loads(t[4]),
        variant=json.loads(t[5]),
        expected=t[6],
        pred=t[7],
        pred_variant=t[8],
        probs=json.loads(t[9]),
        probs_variant=json.loads(t[10]),
        passed=bool(t[11]),
    ),
)

EXPLAIN_TABLE: RowTable[ExplainRow] = RowTable(
    "explain_examples",
    ("idx", "uid", "similarity", "explanation"),
    lambda r: (r.idx, r.uid, float(r.similarity), _explanation_json(r)),
    lambda t: ExplainRow(
        idx=t[0], uid=t[1], similarity=float(t[2]), explanation=_explanation(t[3])
    ),
)
# -- end of audits -----------------------------------------------------------------------------

ROW_TABLES: dict[str, RowTable[Any]] = {
    t.name: t for t in (PREDICTION_TABLE, ATTACK_TABLE, PROMPT_TABLE, BEHAVE_TABLE, EXPLAIN_TABLE)
}


# --------------------------------------------------------------------------------------------------
# Errors


F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    """SQLite errors (and text that is not UTF-8, from a damaged page) from any store method
    become one line naming the store's file."""

    @functools.wraps(method)
    def wrapper(self: ResultStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._error(exc) from None

    return wrapper  # type: ignore[return-value]


def _describe(exc: sqlite3.Error | UnicodeDecodeError) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, UnicodeDecodeError) or "could not decode" in lowered:
        # The text itself is not shown: it is whatever bytes the damage left.
        return "the file is damaged (text that is not UTF-8); restore a backup or use another --db"
    if "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
        return f"the file is damaged ({text}); restore a backup or use another --db"
    if "readonly" in lowered or "read-only" in lowered:
        return "it is read-only; use a writable copy or another --db"
    if "locked" in lowered or "busy" in lowered:
        return f"it is locked by another process ({text}); try again when that finishes"
    if "disk" in lowered and "full" in lowered:
        return f"the disk is full ({text})"
    return text


# --------------------------------------------------------------------------------------------------
# Migrations: MIGRATIONS[v] turns schema v into v + 1, inside one transaction


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Schema 1 kept kind-specific fields and summary membership inside config JSON, one metric
    set per run, and no failed status. Move them into columns and tables; keep every row."""
    conn.execute(_RUNS.replace("IF NOT EXISTS runs", "runs_v2"))
    conn.execute(
        """INSERT INTO runs_v2 SELECT run_key, kind, task, task_version, task_hash, model,
        model_path, model_hash, config_json, config_hash, split, n_examples, label_names,
        label_mapping, seed, harness_version, versions_json, status, created_at, finished_at,
        compute_s,
        COALESCE(json_extract(config_json, '$.column'), ''),
        COALESCE(json_extract(config_json, '$.profile_hash'),
                 json_extract(config_json, '$.prompt_hash')),
        'hf', NULL FROM runs"""
    )
    old_metrics = conn.execute("SELECT run_key, name, value, low, high FROM metrics").fetchall()
    settings_of: dict[str, MetricSettings] = {}
    for key, config_json, seed in conn.execute("SELECT run_key, config_json, seed FROM runs"):
        try:
            n_boot = json.loads(config_json).get("n_bootstrap", 1000)
            # As recorded: a store from before the bootstrap range (0, or 100 to 100,000) keeps
            # its metrics under the settings they were computed with.
            settings_of[key] = MetricSettings.model_construct(n_bootstrap=int(n_boot), seed=seed)
        except (ValueError, TypeError, AttributeError) as exc:
            raise BenchError(
                f"run {shown(key, 30)} has a malformed record ({type(exc).__name__})"
            ) from None
    conn.execute("DROP INDEX IF EXISTS runs_by_model_task")
    conn.execute("DROP TABLE runs")
    conn.execute("ALTER TABLE runs_v2 RENAME TO runs")
    conn.execute("DROP TABLE metrics")
    for table in ("run_members", "run_names", "metric_sets", "metrics"):
        conn.execute(_TABLES[table])
    # Summary runs named their members in their config.
    conn.execute(
        """INSERT INTO run_members (run_key, position, member_key)
        SELECT r.run_key, CAST(j.key AS INTEGER), j.value FROM runs r,
        json_each(COALESCE(json_extract(r.config_json, '$.attack_runs'),
                           json_extract(r.config_json, '$.prompt_runs'), '[]')) j"""
    )
    now = time.time()
    conn.executemany(
        "INSERT INTO metric_sets VALUES (?,?,?,?)",
        [
            (key, s.key(), canonical_json(s.model_dump(mode="json")), now)
            for key, s in settings_of.items()
        ],
    )
    # Metrics of a run that is not there keep default settings: the reference check then
    # refuses the migration, as for any other row of a missing run.
    conn.executemany(
        "INSERT INTO metrics VALUES (?,?,?,?,?,?)",
        [
            (k, settings_of.get(k, MetricSettings()).key(), n, v, lo, hi)
            for k, n, v, lo, hi in old_metrics
        ],
    )
    conn.execute("INSERT OR IGNORE INTO run_names SELECT run_key, model, created_at FROM runs")
    conn.execute("ALTER TABLE prompt_examples ADD COLUMN choices TEXT NOT NULL DEFAULT '[]'")


def _run_columns(record: RunRecord, **when: Any) -> dict[str, Any]:
    """A record as the ``runs`` table stores it, column by column (the column names are this
    module's literals, never data); ``when`` adds the status and timing columns."""
    config = canonical_json(record.config.to_json())
    return {
        "run_key": record.run_key,
        "kind": record.kind,
        "task": record.task,
        "task_version": record.task_version,
        "task_hash": record.task_hash,
        "model": record.model,
        "model_path": record.model_path,
        "model_hash": record.model_hash,
        "config_json": config,
        "config_hash": sha256_text(config),
        "split": record.split,
        "n_examples": record.n_examples,
        "label_names": json.dumps(record.label_names),
        "label_mapping": canonical_json(record.label_mapping),
        "seed": record.seed,
        "harness_version": record.harness_version,
        "versions_json": canonical_json(record.versions),
        "column_name": record.column,
        "profile_hash": record.profile_hash,
        "backend": record.backend,
        **when,
    }


# ---- Submission bundles (issue 14) ----
def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Schema 3 adds two tables and touches no existing row: each run's key parts (runs stored
    before have none; a bundle rebuilds and checks them, see ``bench.bundle.build``) and the
    provenance of runs imported from submission bundles. Self-contained DDL on purpose."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS run_key_parts (
    run_key TEXT PRIMARY KEY REFERENCES runs(run_key) ON DELETE CASCADE,
    parts TEXT NOT NULL
)"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS run_provenance (
    run_key TEXT PRIMARY KEY REFERENCES runs(run_key) ON DELETE CASCADE,
    source TEXT NOT NULL CHECK (source IN ('imported', 'rescored')),
    bundle_sha256 TEXT NOT NULL,
    merkle_root TEXT NOT NULL,
    bundle_name TEXT NOT NULL,
    partial INTEGER NOT NULL DEFAULT 0,
    rescored INTEGER NOT NULL DEFAULT 0,
    imported_at REAL NOT NULL
)"""
    )


# ---- end of submission bundles ----


# ---- Audits (issue 15) ----
def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    """Schema 4 adds the audit tables: behavioural test cases and adversarial-example
    annotations. Nothing existing changes."""
    for statement in _AUDIT_TABLES.values():
        conn.execute(statement)


# ---- end of audits ----


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,  # submission bundles (issue 14)
    3: _migrate_3_to_4,  # audits (issue 15)
}


# --------------------------------------------------------------------------------------------------
# The store


class ResultStore:
    """SQLite-backed store. One connection per instance; safe to reopen after a crash.

    ``readonly`` opens an existing store for reading only (leaderboards, listings, exports): it
    never creates, migrates or writes the file. Without it, a missing file is created, but only
    inside an existing folder (or the default ``results/``): a mistyped ``--db`` must not
    silently start an empty store. ``create=False`` (read commands) refuses an existing file
    that holds no store yet (an empty file) instead of writing the schema into it.
    """

    def __init__(
        self, path: Path | str | None = None, *, readonly: bool = False, create: bool = True
    ) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.readonly = readonly
        self.create = create and not readonly
        self._check_path()
        try:
            if readonly:
                self._conn = sqlite3.connect(self._readonly_uri(), uri=True, timeout=30.0)
            else:
                self._conn = sqlite3.connect(str(self.path), timeout=30.0)
        except sqlite3.Error as exc:
            raise BenchError(
                f"cannot open results database {self.path}: {_describe(exc)}"
            ) from None
        try:
            self._open()
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            self._conn.close()
            raise self._error(exc, "cannot open") from None
        except BenchError:
            self._conn.close()
            raise

    def _check_path(self) -> None:
        if self.path.is_dir():
            raise BenchError(f"results database {self.path} is a directory; name a file")
        if self.path.exists():
            if not os.access(self.path, os.R_OK):
                raise BenchError(f"results database {self.path} is not readable")
            if not self.readonly and not os.access(self.path, os.W_OK):
                raise BenchError(
                    f"results database {self.path} is read-only; use a writable copy or another --db"
                )
            return
        if self.readonly:
            raise BenchError(f"results database {self.path} does not exist")
        parent = self.path.parent
        for above in (parent, *parent.parents):
            if above.exists() and not above.is_dir():
                raise BenchError(f"cannot create results database {self.path}: {above} is a file")
        if not parent.exists():
            if self.path != default_db_path() and self.path != DEFAULT_DB:
                raise BenchError(
                    f"cannot create results database {self.path}: folder {parent} does not exist "
                    "(create it first, or check the --db path)"
                )
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BenchError(
                    f"cannot create results database {self.path}: {exc.strerror or exc}"
                ) from None
        elif not os.access(parent, os.W_OK):
            raise BenchError(f"cannot create results database {self.path}: {parent} is read-only")

    def _readonly_uri(self) -> str:
        target = self.path.resolve()
        # Percent-encoded: a "?", "#" or "%" in a file name must not end the path.
        uri = f"file:{urllib.parse.quote(target.as_posix())}?mode=ro"
        # SQLite reads a WAL store through a shared-memory file beside it, which it cannot create
        # in a folder this user may not write. No one can be writing the store there either (a
        # writer needs that file, or a journal, in the same folder), so it is read as immutable.
        wal = target.with_name(f"{target.name}-wal")
        if not os.access(target.parent, os.W_OK) and not wal.exists():
            uri += "&immutable=1"
        return uri

    def _error(
        self, exc: sqlite3.Error | UnicodeDecodeError, what: str = "results database"
    ) -> BenchError:
        prefix = (
            f"cannot open results database {self.path}"
            if what == "cannot open"
            else (f"results database {self.path}")
        )
        return BenchError(f"{prefix}: {_describe(exc)}")

    def _open(self) -> None:
        conn = self._conn
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "runs" not in tables:
            raise BenchError(
                f"{self.path} is an SQLite database but not a bench results store (no runs "
                "table); use another --db"
            )
        version = self._schema_version(tables)
        # Everything that refuses the file comes before anything that writes to it.
        if version is None and not self.create:
            raise BenchError(
                f"results database {self.path} is empty (no results stored in it yet); run "
                "`bench run` with this --db first"
            )
        if version is not None and version > SCHEMA_VERSION:
            raise BenchError(
                f"results database {self.path} has schema {version}, newer than this harness "
                f"knows ({SCHEMA_VERSION}); upgrade nlp-bench or use another --db"
            )
        if version is not None and version < min(MIGRATIONS):
            raise BenchError(
                f"results database {self.path} has an unknown schema version {version}; use "
                "another --db"
            )
        self._check_integrity()
        if version == SCHEMA_VERSION:
            problem = self._schema_problem(tables)
            if problem:
                raise BenchError(f"results database {self.path} {problem}; use another --db")
        if self.readonly:
            if version != SCHEMA_VERSION:
                raise BenchError(
                    f"results database {self.path} is read-only and has schema {version}; "
                    f"migrate a writable copy to schema {SCHEMA_VERSION} first (any bench "
                    "command that opens it migrates it)"
                )
            conn.execute("PRAGMA foreign_keys=ON")
            return
        if version is not None and version < SCHEMA_VERSION:
            # In the file's own journal mode: a refused migration leaves it byte-identical.
            self._migrate(version)
        # WAL keeps committed units durable when the process dies mid-write, and lets a reader
        # (leaderboard) work while a run is writing.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if version is None:
            with conn:
                for statement in (*_TABLES.values(), *_INDICES):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?), ('app', ?)",
                    (str(SCHEMA_VERSION), APP_ID),
                )
        conn.execute("PRAGMA foreign_keys=ON")

    def _check_integrity(self) -> None:
        """Damaged pages behind a valid header surface only in a later query (after a model has
        loaded, say): look for them now, on stores small enough to check in well under a
        second."""
        if self.path.is_file() and self.path.stat().st_size <= _CHECKED_SIZE:
            result = self._conn.execute("PRAGMA quick_check(1)").fetchone()
            if result is None or result[0] != "ok":
                shown = str(result[0] if result else "no answer")[:80]
                raise BenchError(
                    f"results database {self.path} is damaged ({shown}); restore a backup or use "
                    "another --db"
                )

    def _schema_problem(self, tables: set[str]) -> str | None:
        """What a store claiming the current schema lacks of it (a table, a column), if any."""
        missing = [t for t in _TABLES if t not in tables]
        if missing:
            return f"lacks table {missing[0]} of schema {SCHEMA_VERSION}"
        for table, sql in _TABLES.items():
            have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
            wanted = set(re.findall(r"^\s+([a-z_]+) [A-Z]+", sql, re.MULTILINE))
            lacking = sorted(wanted - have)
            if lacking:
                return f"lacks column {lacking[0]} of table {table} (schema {SCHEMA_VERSION})"
        return None

    def _schema_version(self, tables: set[str]) -> int | None:
        if not tables:
            return None
        if "meta" not in tables:
            raise BenchError(
                f"results database {self.path} has no schema version; use another --db"
            )
        row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            raise BenchError(
                f"results database {self.path} has no schema version; use another --db"
            )
        try:
            return int(row[0])
        except (TypeError, ValueError):
            shown = str(row[0])[:40]
            raise BenchError(
                f"results database {self.path} has an unreadable schema version {shown!r}"
            ) from None

    def _migrate(self, version: int) -> None:
        """Migrate from ``version`` in one transaction, after a backup copy beside the file. A
        migration that fails (a table missing, rows that do not parse or refer to missing runs)
        is rolled back: the file is left byte-identical, the backup made for it removed, and
        the reason is one line."""
        from bench.progress import console

        start = version
        backup = self.path.with_name(f"{self.path.name}.schema{version}.bak")
        made_backup = not backup.exists()
        conn = self._conn
        try:
            if made_backup:
                with contextlib.closing(sqlite3.connect(str(backup))) as copy:
                    conn.backup(copy)
            # Tables are rebuilt: references must not be checked half-way (SQLite's recipe),
            # and the whole migration is one transaction.
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute("BEGIN")
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](conn)
                version += 1
            for statement in _INDICES:
                conn.execute(statement)
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?), ('app', ?)",
                (str(SCHEMA_VERSION), APP_ID),
            )
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            problem = self._schema_problem(tables)
            if problem:
                raise BenchError(f"the migrated store {problem}")
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise BenchError(f"{len(broken)} row(s) refer to missing runs")
            conn.commit()
        except BaseException as exc:
            if conn.in_transaction:
                conn.rollback()
            if made_backup:
                backup.unlink(missing_ok=True)
            if isinstance(exc, (BenchError, sqlite3.Error, UnicodeDecodeError)):
                if isinstance(exc, UnicodeDecodeError):
                    reason = "text that is not UTF-8"
                else:
                    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise BenchError(
                    f"results database {self.path} cannot be migrated from schema {start} to "
                    f"{SCHEMA_VERSION}: {reason}; the file is unchanged"
                ) from None
            raise
        console.print(
            f"migrated results database {self.path} from schema {start} to {SCHEMA_VERSION} "
            f"(a copy of the old file: {backup.name})"
        )

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise BenchError(f"results database {self.path} is open read-only")
        with self._conn:
            yield self._conn

    # -- runs -------------------------------------------------------------------------------

    @_guarded
    def begin_run(self, record: RunRecord) -> RunRecord:
        """Insert the run if new (a failed one starts again); return the stored record (an
        existing one wins), shown under ``record.model``."""
        columns = _run_columns(record, status="running", created_at=time.time())
        with self._tx() as conn:
            conn.execute(
                f"INSERT OR IGNORE INTO runs ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                tuple(columns.values()),
            )
            conn.execute(
                "UPDATE runs SET status='running', error=NULL WHERE run_key=? AND status='failed'",
                (record.run_key,),
            )
            if record.members:
                conn.executemany(
                    "INSERT OR IGNORE INTO run_members (run_key, position, member_key) "
                    "VALUES (?,?,?)",
                    [(record.run_key, i, m) for i, m in enumerate(record.members)],
                )
            self._name(conn, record.run_key, record.model)
            if record.key_parts is not None:  # submission bundles (issue 14)
                conn.execute(
                    "INSERT OR IGNORE INTO run_key_parts (run_key, parts) VALUES (?,?)",
                    (record.run_key, canonical_json(record.key_parts)),
                )
        stored = self.get_run(record.run_key)
        assert stored is not None
        return replace(stored, model=record.model)

    @staticmethod
    def _name(conn: sqlite3.Connection, key: str, name: str) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO run_names (run_key, name, added_at) VALUES (?,?,?)",
            (key, name, time.time()),
        )

    @_guarded
    def add_name(self, key: str, name: str) -> None:
        """Record that run ``key`` was asked for under ``name`` (identical weights under another
        display name): the leaderboard then shows it under that name too."""
        if self.readonly:
            return
        with self._tx() as conn:
            self._name(conn, key, name)

    def _run_rows(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        cursor = self._conn.cursor()
        # Rows by column name, for this cursor only: other queries keep plain tuples.
        cursor.row_factory = sqlite3.Row
        return cursor.execute(sql, tuple(params)).fetchall()

    @_guarded
    def get_run(self, key: str) -> RunRecord | None:
        rows = self._run_rows("SELECT * FROM runs WHERE run_key=?", (key,))
        return self._record(rows[0]) if rows else None

    @_guarded
    def runs(
        self,
        status: str | None = "complete",
        *,
        kinds: Sequence[str] | None = None,
        model: str | None = None,
        task: str | None = None,
    ) -> list[RunRecord]:
        """Runs, oldest first, filtered by status, kinds, a model name it was run under, task."""
        where, params = self._filters(status, kinds, task)
        if model is not None:
            where.append("run_key IN (SELECT run_key FROM run_names WHERE name=?)")
            params.append(model)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        records = [self._record(r) for r in self._run_rows(sql + " ORDER BY created_at", params)]
        if model is not None:
            records = [replace(r, model=model) for r in records]
        return records

    @staticmethod
    def _filters(
        status: str | None, kinds: Sequence[str] | None, task: str | None
    ) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status=?")
            params.append(status)
        if kinds is not None:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            params.extend(kinds)
        if task is not None:
            where.append("task=?")
            params.append(task)
        return where, params

    def _record(self, d: sqlite3.Row) -> RunRecord:
        key = d["run_key"]
        try:
            config = parse_config(d["kind"], json.loads(d["config_json"]))
            label_names = json.loads(d["label_names"])
            label_mapping = json.loads(d["label_mapping"])
            versions = json.loads(d["versions_json"])
        except (ValueError, TypeError) as exc:
            raise BenchError(
                f"results database {self.path}: run {key} has a malformed record "
                f"({type(exc).__name__}); remove it with `bench runs rm {key}`"
            ) from None
        members = tuple(
            r[0]
            for r in self._conn.execute(
                "SELECT member_key FROM run_members WHERE run_key=? ORDER BY position", (key,)
            )
        )
        return RunRecord(
            run_key=key,
            kind=d["kind"],
            task=d["task"],
            task_version=d["task_version"],
            task_hash=d["task_hash"],
            model=d["model"],
            model_path=d["model_path"],
            model_hash=d["model_hash"],
            config=config,
            split=d["split"],
            n_examples=d["n_examples"],
            label_names=label_names,
            label_mapping=label_mapping,
            seed=d["seed"],
            harness_version=d["harness_version"],
            versions=versions,
            column=d["column_name"],
            profile_hash=d["profile_hash"],
            backend=d["backend"],
            members=members,
            status=d["status"],
            error=d["error"],
            created_at=d["created_at"],
            finished_at=d["finished_at"],
            compute_s=d["compute_s"],
        )

    @_guarded
    def names(self, key: str) -> list[str]:
        """Every display name run ``key`` was asked for under, first first."""
        rows = self._conn.execute(
            "SELECT name FROM run_names WHERE run_key=? ORDER BY added_at, name", (key,)
        )
        return [r[0] for r in rows]

    @_guarded
    def add_compute_time(self, key: str, seconds: float) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE runs SET compute_s = compute_s + ? WHERE run_key=?", (seconds, key)
            )

    @_guarded
    def set_execution(self, key: str, info: dict[str, Any]) -> None:
        """Record how a run's rows were computed (executor, workers, throughput) in its config;
        provenance only, not part of its identity."""
        row = self._conn.execute("SELECT config_json FROM runs WHERE run_key=?", (key,)).fetchone()
        if row is None:
            return
        config = json.loads(row[0])
        config["execution"] = info
        with self._tx() as conn:
            conn.execute(
                "UPDATE runs SET config_json=? WHERE run_key=?", (canonical_json(config), key)
            )

    @_guarded
    def fail_run(self, key: str, error: str) -> None:
        """Mark a run failed with its error (its stored rows stay: a rerun resumes)."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE runs SET status='failed', error=? WHERE run_key=? AND status!='complete'",
                (error[:2000], key),
            )

    @_guarded
    def finish_run(
        self, key: str, metrics: Iterable[StoredMetric], settings: MetricSettings | None = None
    ) -> None:
        """Write the metrics (for ``settings``) and mark the run complete, atomically."""
        chosen = settings or MetricSettings()
        with self._tx() as conn:
            self._write_metrics(conn, key, chosen, metrics)
            conn.execute(
                "UPDATE runs SET status='complete', error=NULL, finished_at=? WHERE run_key=?",
                (time.time(), key),
            )

    @_guarded
    def delete_runs(self, keys: Sequence[str]) -> int:
        """Remove runs with every row, metric and name they own; the number of runs removed."""
        with self._tx() as conn:
            # Each statement's own count: ``total_changes`` also counts the rows, metrics and
            # names that the foreign keys delete with a run.
            return sum(
                conn.execute("DELETE FROM runs WHERE run_key=?", (k,)).rowcount
                for k in dict.fromkeys(keys)
            )

    @_guarded
    def summaries_of(self, key: str) -> list[str]:
        """The summary runs that list ``key`` as a member."""
        rows = self._conn.execute("SELECT run_key FROM run_members WHERE member_key=?", (key,))
        return [r[0] for r in rows]

    # -- metrics ----------------------------------------------------------------------------

    @staticmethod
    def _write_metrics(
        conn: sqlite3.Connection,
        key: str,
        settings: MetricSettings,
        metrics: Iterable[StoredMetric],
    ) -> None:
        tag = settings.key()
        conn.execute("DELETE FROM metrics WHERE run_key=? AND settings=?", (key, tag))
        conn.execute(
            "INSERT OR REPLACE INTO metric_sets (run_key, settings, settings_json, computed_at) "
            "VALUES (?,?,?,?)",
            (key, tag, canonical_json(settings.model_dump(mode="json")), time.time()),
        )
        conn.executemany(
            "INSERT INTO metrics (run_key, settings, name, value, low, high) VALUES (?,?,?,?,?,?)",
            [(key, tag, m.name, m.value, m.low, m.high) for m in metrics],
        )

    @_guarded
    def put_metrics(
        self, key: str, settings: MetricSettings, metrics: Iterable[StoredMetric]
    ) -> None:
        """Store metrics recomputed under other settings (a no-op on a read-only store)."""
        if self.readonly:
            return
        with self._tx() as conn:
            self._write_metrics(conn, key, settings, metrics)

    @_guarded
    def metrics(self, key: str, settings: MetricSettings | None = None) -> dict[str, StoredMetric]:
        """A run's metrics under ``settings``; without settings, the set written last. Empty
        when none is stored (see ``bench.engine.run_metrics``, which then computes them)."""
        if settings is not None:
            tag: str | None = settings.key()
        else:
            row = self._conn.execute(
                "SELECT settings FROM metric_sets WHERE run_key=? ORDER BY computed_at DESC "
                "LIMIT 1",
                (key,),
            ).fetchone()
            tag = row[0] if row else None
        if tag is None:
            return {}
        rows = self._conn.execute(
            "SELECT run_key, name, value, low, high FROM metrics WHERE run_key=? AND settings=?",
            (key, tag),
        ).fetchall()
        return {r[1]: StoredMetric(*r) for r in rows}

    # -- per-example rows -------------------------------------------------------------------

    @_guarded
    def add_rows(self, table: RowTable[R], key: str, rows: Sequence[R]) -> int:
        """Write one work unit's rows in one transaction. Rows already stored are kept, not
        duplicated. Returns the number of rows newly written."""
        with self._tx() as conn:
            before = conn.total_changes
            conn.executemany(table.insert_sql(), [(key, *table.encode(r)) for r in rows])
            return conn.total_changes - before

    @_guarded
    def rows(self, table: RowTable[R], key: str) -> list[R]:
        out: list[R] = []
        for t in self._conn.execute(table.select_sql(), (key,)):
            try:
                out.append(table.decode(t))
            except (ValueError, TypeError) as exc:
                raise BenchError(
                    f"results database {self.path}: run {key} has a malformed {table.name} row "
                    f"(example {shown(t[0], 12)}, {type(exc).__name__}); remove the run with "
                    f"`bench runs rm {key}`"
                ) from None
        return out

    @_guarded
    def row_indices(self, table: RowTable[Any], key: str) -> set[int]:
        rows = self._conn.execute(f"SELECT idx FROM {table.name} WHERE run_key=?", (key,))
        return {r[0] for r in rows}

    @_guarded
    def count_rows(self, table: RowTable[Any], key: str) -> int:
        sql = f"SELECT COUNT(*) FROM {table.name} WHERE run_key=?"
        return int(self._conn.execute(sql, (key,)).fetchone()[0])

    # The per-kind names the rest of the code base (and users' scripts) know.

    def add_predictions(self, key: str, rows: Sequence[PredictionRow]) -> int:
        return self.add_rows(PREDICTION_TABLE, key, rows)

    def predictions(self, key: str) -> list[PredictionRow]:
        return self.rows(PREDICTION_TABLE, key)

    def done_indices(self, key: str) -> set[int]:
        return self.row_indices(PREDICTION_TABLE, key)

    def count_predictions(self, key: str) -> int:
        return self.count_rows(PREDICTION_TABLE, key)

    def add_attack_rows(self, key: str, rows: Sequence[AttackRow]) -> int:
        return self.add_rows(ATTACK_TABLE, key, rows)

    def attack_rows(self, key: str) -> list[AttackRow]:
        return self.rows(ATTACK_TABLE, key)

    def attacked_indices(self, key: str) -> set[int]:
        return self.row_indices(ATTACK_TABLE, key)

    def add_prompt_rows(self, key: str, rows: Sequence[PromptRow]) -> int:
        return self.add_rows(PROMPT_TABLE, key, rows)

    def prompt_rows(self, key: str) -> list[PromptRow]:
        return self.rows(PROMPT_TABLE, key)

    def prompted_indices(self, key: str) -> set[int]:
        return self.row_indices(PROMPT_TABLE, key)

    # -- audits (issue 15) --

    def behave_rows(self, key: str) -> list[BehaveRow]:
        return self.rows(BEHAVE_TABLE, key)

    def explain_rows(self, key: str) -> list[ExplainRow]:
        return self.rows(EXPLAIN_TABLE, key)

    # -- leaderboard queries ----------------------------------------------------------------

    @_guarded
    def latest_complete(
        self, kinds: Sequence[str] = ("eval",), *, model: str | None = None, ranked: bool = False
    ) -> list[RunRecord]:
        """The newest complete run per (name, task, split, kind, column): what a leaderboard
        shows. A run asked for under several display names is shown under each. ``ranked``
        leaves out partial runs imported from submission bundles (they are never ranked), before
        the newest is chosen, so one cannot hide a complete run."""
        marks = ",".join("?" * len(kinds))
        params: list[Any] = [*kinds]
        named = ""
        if model is not None:
            named = " AND n.name=?"
            params.append(model)
        if ranked:  # submission bundles (issue 14)
            named += (
                " AND NOT EXISTS (SELECT 1 FROM run_provenance p"
                " WHERE p.run_key = r.run_key AND p.partial = 1)"
            )
        sql = f"""
            SELECT * FROM (
                SELECT r.*, n.name AS shown_name, ROW_NUMBER() OVER (
                    PARTITION BY n.name, r.task, r.split, r.kind, r.column_name
                    ORDER BY r.finished_at DESC, r.created_at DESC) AS newest
                FROM runs r INDEXED BY runs_latest
                JOIN run_names n ON n.run_key = r.run_key
                WHERE r.status='complete' AND r.kind IN ({marks}){named}
            ) WHERE newest = 1 ORDER BY created_at, shown_name"""
        return [
            replace(self._record(r), model=r["shown_name"]) for r in self._run_rows(sql, params)
        ]

    # ---- Submission bundles (issue 14) ----------------------------------------------------

    @_guarded
    def key_parts(self, key: str) -> dict[str, Any] | None:
        """What run ``key``'s key hashes, as recorded when it began (None for runs stored
        before schema 3 and for imported runs from bundles that predate it)."""
        row = self._conn.execute(
            "SELECT parts FROM run_key_parts WHERE run_key=?", (key,)
        ).fetchone()
        if row is None:
            return None
        try:
            parts = json.loads(row[0])
        except ValueError:
            raise BenchError(
                f"results database {self.path}: run {key} has malformed key parts; remove it "
                f"with `bench runs rm {key}`"
            ) from None
        return parts if isinstance(parts, dict) else None

    @_guarded
    def provenance(self, keys: Iterable[str]) -> dict[str, RunProvenance]:
        """Where each of ``keys`` came from, for runs imported from bundles (others: absent,
        i.e. computed here)."""
        wanted = list(dict.fromkeys(keys))
        out: dict[str, RunProvenance] = {}
        for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
            chunk = wanted[start : start + 500]
            rows = self._conn.execute(
                "SELECT run_key, source, bundle_sha256, merkle_root, bundle_name, partial, "
                f"rescored, imported_at FROM run_provenance WHERE run_key IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            )
            for r in rows:
                out[r[0]] = RunProvenance(r[1], r[2], r[3], r[4], bool(r[5]), int(r[6]), r[7])
        return out

    @_guarded
    def import_runs(self, runs: Sequence[ImportedRun]) -> list[str]:
        """Store runs from a verified bundle in one transaction: record, display name, members,
        key parts, the declared metrics (equal to those recomputed from the rows), rows and
        provenance. A run whose key is already stored is kept as it is (computed here, or
        imported before). Returns the keys imported now."""
        added: list[str] = []
        with self._tx() as conn:
            for item in runs:
                record = item.record
                exists = conn.execute(
                    "SELECT 1 FROM runs WHERE run_key=?", (record.run_key,)
                ).fetchone()
                if exists:
                    continue
                columns = _run_columns(
                    record,
                    status="complete",
                    created_at=record.created_at,
                    finished_at=record.finished_at,
                    compute_s=record.compute_s,
                )
                conn.execute(
                    f"INSERT INTO runs ({', '.join(columns)}) "
                    f"VALUES ({', '.join('?' * len(columns))})",
                    tuple(columns.values()),
                )
                conn.executemany(
                    "INSERT INTO run_members (run_key, position, member_key) VALUES (?,?,?)",
                    [(record.run_key, i, m) for i, m in enumerate(record.members)],
                )
                self._name(conn, record.run_key, record.model)
                if record.key_parts is not None:
                    conn.execute(
                        "INSERT INTO run_key_parts (run_key, parts) VALUES (?,?)",
                        (record.run_key, canonical_json(record.key_parts)),
                    )
                self._write_metrics(conn, record.run_key, item.settings, item.metrics)
                if item.table is not None:
                    conn.executemany(
                        item.table.insert_sql(),
                        [(record.run_key, *item.table.encode(r)) for r in item.rows],
                    )
                p = item.provenance
                conn.execute(
                    "INSERT INTO run_provenance (run_key, source, bundle_sha256, merkle_root, "
                    "bundle_name, partial, rescored, imported_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        record.run_key,
                        p.source,
                        p.bundle_sha256,
                        p.merkle_root,
                        p.bundle_name,
                        int(p.partial),
                        p.rescored,
                        p.imported_at,
                    ),
                )
                added.append(record.run_key)
        return added

    # ---- end of submission bundles --------------------------------------------------------


# ---- Submission bundles (issue 14) ----------------------------------------------------------


@dataclass(frozen=True)
class RunProvenance:
    """Where an imported run came from: ``source`` is ``imported`` (the bundle's hashes, Merkle
    root, completeness and metrics were verified) or ``rescored`` (also ``rescored`` sampled
    examples recomputed with the named model); ``partial``: a seeded sample of its split,
    never ranked."""

    source: str
    bundle_sha256: str
    merkle_root: str
    bundle_name: str
    partial: bool
    rescored: int
    imported_at: float


@dataclass(frozen=True)
class ImportedRun:
    """One run of a verified bundle, as ``ResultStore.import_runs`` stores it."""

    record: RunRecord
    settings: MetricSettings
    metrics: Sequence[StoredMetric]
    table: RowTable[Any] | None
    rows: Sequence[Any]
    provenance: RunProvenance


# ---- end of submission bundles ----------------------------------------------------------------


def open_store(path: Path | str | None = None) -> ResultStore:
    """An existing store for reading: writable when the file and its folder are (so metrics
    recomputed under other settings are kept, and an older schema is migrated), read-only
    otherwise. An empty file is refused, not made a store."""
    target = Path(path) if path is not None else default_db_path()
    if not target.exists():
        raise BenchError(f"results database {target} does not exist")
    if target.is_file() and not (
        os.access(target, os.W_OK) and os.access(target.resolve().parent, os.W_OK)
    ):
        return ResultStore(target, readonly=True)
    return ResultStore(target, create=False)
