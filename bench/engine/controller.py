"""The run controller: one skeleton for every kind of run.

For a planned run: answer it from the store when it is complete (recomputing metrics from the
stored rows when other metric settings are asked for, without loading any model); otherwise
load the model, begin (or resume) the run, compute the work units not yet stored, committing
each in one transaction, with progress and compute time; check that every example is stored
exactly once; compute the metrics from the stored rows; mark it complete. An exception marks the
run failed with its error (its rows stay, and a rerun resumes from them); a process killed
outright leaves it running, which resumes the same way.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any

from bench._version import __version__
from bench.backends import ModelPool
from bench.engine.executors import Executor, LocalExecutor
from bench.engine.kinds import RunKind, RunOutcome, RunPlan, SummaryKind, get_kind
from bench.errors import BenchError
from bench.progress import make_progress
from bench.records import MetricSettings, RunRecord, StoredMetric
from bench.store import ResultStore, run_key

_VERSIONED = ("torch", "transformers", "tokenizers", "datasets", "numpy", "pandas")


def library_versions() -> dict[str, str]:
    """Versions recorded with every run."""
    out = {"bench": __version__, "python": platform.python_version()}
    for dist in _VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def run_metrics(
    store: ResultStore, record: RunRecord, settings: MetricSettings | None = None
) -> dict[str, StoredMetric]:
    """A stored run's metrics under ``settings``, computed from its stored rows (and stored,
    when the store is writable) if they were never computed under those settings."""
    chosen = settings or MetricSettings()
    stored = store.metrics(record.run_key, chosen)
    if stored:
        return stored
    kind = get_kind(record.kind, f"run {record.run_key} of results database {store.path}")
    values = kind.metrics(store, record, chosen)
    # Undefined figures (no successful attack: no perturbed-word share) are left out, not NaN.
    metrics = [
        StoredMetric(record.run_key, name, v.value, v.low, v.high)
        for name, v in values.items()
        if math.isfinite(v.value)
    ]
    store.put_metrics(record.run_key, chosen, metrics)
    return {m.name: m for m in metrics}


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()


@dataclass
class Engine:
    """Runs planned runs and summaries against one store, loading each model at most once."""

    store: ResultStore
    models: ModelPool = field(default_factory=ModelPool)
    progress: bool = True
    metric_settings: MetricSettings = field(default_factory=MetricSettings)
    # Where work units are computed: in this process, or on Ray workers.
    executor: Executor = field(default_factory=LocalExecutor)

    def _answered(self, record: RunRecord, name: str) -> RunOutcome:
        """A complete run, shown under the name it was asked for now."""
        if record.model != name:
            self.store.add_name(record.run_key, name)
            record = replace(record, model=name)
        return RunOutcome(record, run_metrics(self.store, record, self.metric_settings), True)

    def run(self, plan: RunPlan) -> RunOutcome:
        existing = self.store.get_run(plan.key)
        if existing is not None and existing.status == "complete":
            return self._answered(existing, plan.model.name)
        kind: RunKind = plan.kind
        # What is stored is read before the model is loaded: a damaged store fails first.
        done = self.store.row_indices(kind.table, plan.key)
        positions = {ex.idx: pos for pos, ex in enumerate(plan.examples)}
        done_positions = {positions[i] for i in done if i in positions}
        execution = self.executor.start(plan, self.models, done_positions)
        record = self.store.begin_run(execution.record)
        computed = 0
        with make_progress(self.progress) as bar:
            tid = bar.add_task(plan.label, total=len(plan.examples), completed=len(done_positions))
            started = time.perf_counter()
            try:
                for rows in execution.rows:
                    new = self.store.add_rows(kind.table, plan.key, rows)
                    computed += new
                    bar.advance(tid, new)
            except BaseException as exc:
                self.store.fail_run(plan.key, _error_text(exc))
                raise
            finally:
                self.store.add_compute_time(plan.key, time.perf_counter() - started)
                stats = execution.stats()
                info = {**execution.info(), **stats}
                if info:
                    self.store.set_execution(plan.key, info)
        final = self._finish(record)
        return RunOutcome(
            final, run_metrics(self.store, final, self.metric_settings), False, computed, stats
        )

    def _finish(self, record: RunRecord) -> RunRecord:
        kind = get_kind(record.kind)
        table = getattr(kind, "table", None)  # summary kinds have no rows of their own
        if table is not None:
            stored = self.store.count_rows(table, record.run_key)
            if stored != record.n_examples:
                message = (
                    f"run {record.run_key}: {stored} stored rows for {record.n_examples} examples"
                )
                self.store.fail_run(record.run_key, message)
                raise BenchError(message)
        values = kind.metrics(self.store, record, self.metric_settings)
        self.store.finish_run(
            record.run_key,
            [
                StoredMetric(record.run_key, name, v.value, v.low, v.high)
                for name, v in values.items()
                if math.isfinite(v.value)
            ],
            self.metric_settings,
        )
        final = self.store.get_run(record.run_key)
        assert final is not None
        return replace(final, model=record.model)

    def summarize(
        self, kind: SummaryKind, members: Sequence[RunOutcome], detail: Any = None
    ) -> RunOutcome:
        """A summary run over ``members`` (keyed by their keys, in order)."""
        keys = [m.record.run_key for m in members]
        parts = {"kind": kind.name, "runs": keys, "harness": __version__}
        key = run_key(parts)
        name = members[0].record.model
        existing = self.store.get_run(key)
        if existing is not None and existing.status == "complete":
            return self._answered(existing, name)
        record = kind.record(key, [m.record for m in members], detail)
        record = self.store.begin_run(
            replace(record, members=tuple(keys), model=name, key_parts=parts)
        )
        final = self._finish(record)
        return RunOutcome(final, run_metrics(self.store, final, self.metric_settings), False)


class EngineClient:
    """For the planners (``Evaluator``, ``PromptRunner``, ``AttackRunner``): dataclasses with
    ``store``, ``config``, ``progress`` and an optional shared ``engine``; without one, they get
    their own, with the config's metric settings."""

    store: ResultStore
    config: Any
    progress: bool
    engine: Engine | None

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = Engine(
                self.store, progress=self.progress, metric_settings=self.config.metric_settings()
            )

    @property
    def _engine(self) -> Engine:
        assert self.engine is not None
        return self.engine
