"""What a run kind is: the small plug-in the controller runs.

A run kind (evaluation, prompting, attack) declares how a planned run's model is started, its
work units, how a unit becomes rows, the table those rows live in, and its metrics from stored
rows. A summary kind (an attack suite's worst case, a prompt set's mean over templates) has no
model and no rows: its metrics come from its member runs' rows. The controller
(:mod:`bench.engine.controller`) owns everything else: keys, the store check, resume,
transactions, progress, compute time, failure and finishing.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bench.backends import ModelIdentity, ModelPool
    from bench.metrics import MetricValue
    from bench.records import MetricSettings, RunConfig, RunRecord, StoredMetric
    from bench.specs import ModelSpec
    from bench.store import ResultStore, RowTable
    from bench.tasks.examples import Example, TaskData


@dataclass(frozen=True)
class WorkUnit:
    """A deterministic piece of a run: positions into the plan's examples, committed together
    (one transaction), plus whatever the kind needs to compute it."""

    positions: tuple[int, ...]
    payload: Any = None


@dataclass
class RunPlan:
    """A run resolved before any model is loaded: its key, task, model and examples, the record
    it will be stored under (device and label mapping are filled in when it starts), and the
    kind-specific detail (a prompt format, an attack)."""

    kind: RunKind
    key: str
    task: TaskData
    model: ModelSpec
    identity: ModelIdentity
    examples: list[Example]
    record: RunRecord
    label: str
    detail: Any = None


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: its record (shown under the model name it was asked for), its metrics
    under the engine's metric settings, whether everything came from the store, how many rows
    were computed now, and kind-specific counters of this invocation."""

    record: RunRecord
    metrics: dict[str, StoredMetric]
    cached: bool
    computed: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    # The kinds' own words for ``computed``.
    @property
    def attacked(self) -> int:
        return self.computed

    @property
    def answered(self) -> int:
        return self.computed

    @property
    def model_queries(self) -> int:
        return int(self.stats.get("model_queries", 0))

    @property
    def model_computed(self) -> int:
        return int(self.stats.get("model_computed", 0))

    @property
    def mean_round(self) -> float:
        return float(self.stats.get("mean_round", 0.0))


class RunKind(Protocol):
    """A kind of run that computes per-example rows with a model."""

    name: str
    table: RowTable[Any]

    def start(self, plan: RunPlan, models: ModelPool) -> tuple[Any, RunRecord]:
        """Load what the run needs (through ``models``); the state and the record to store."""

    def units(self, plan: RunPlan, state: Any) -> list[WorkUnit]:
        """The run's work units, in the order a fresh run computes them; a pure function of the
        plan (and the loaded tokenizer), so a resumed run recomputes exactly the missing ones."""

    def compute(
        self, plan: RunPlan, state: Any, units: Sequence[WorkUnit]
    ) -> Iterator[Sequence[Any]]:
        """The rows of each unit as it finishes (units may finish out of order)."""

    def stats(self, state: Any) -> dict[str, Any]:
        """Counters of this invocation for the outcome (empty when there are none)."""

    def metrics(
        self, store: ResultStore, record: RunRecord, settings: MetricSettings
    ) -> dict[str, MetricValue]:
        """Metrics from the run's stored rows (no model is loaded)."""


class SummaryKind(Protocol):
    """A run that summarises other runs (its members) without a model."""

    name: str

    def record(self, key: str, members: Sequence[RunRecord], detail: Any) -> RunRecord:
        """The summary's record, derived from its members (same task, model and settings)."""

    def metrics(
        self, store: ResultStore, record: RunRecord, settings: MetricSettings
    ) -> dict[str, MetricValue]:
        """Metrics from the members' stored rows."""


def new_plan(
    kind: RunKind,
    parts: dict[str, Any],
    task: TaskData,
    model: ModelSpec,
    identity: ModelIdentity,
    examples: list[Example],
    config: RunConfig,
    label: str,
    detail: Any = None,
    *,
    column: str = "",
    profile_hash: str | None = None,
    versions: dict[str, str] | None = None,
) -> RunPlan:
    """A run plan with its key and record: the key hashes the kind, the task data, the model's
    identity, ``parts`` (everything else that changes the run's rows) and the harness version."""
    from bench._version import __version__
    from bench.engine.controller import library_versions
    from bench.records import RunRecord
    from bench.store import run_key

    key_parts = {
        "kind": kind.name,
        "task": task.data_hash,
        "model": identity.key(),
        **parts,
        "harness": __version__,
    }
    key = run_key(key_parts)
    record = RunRecord(
        run_key=key,
        kind=kind.name,
        task=task.spec.name,
        task_version=task.spec.version,
        task_hash=task.data_hash,
        model=model.name,
        model_path=model.path,
        model_hash=identity.hash,
        config=config,
        split=config.split,
        n_examples=len(examples),
        label_names=list(task.spec.labels),
        label_mapping={},
        seed=config.seed,
        harness_version=__version__,
        versions={**library_versions(), **(versions or {})},
        column=column,
        profile_hash=profile_hash,
        backend=identity.backend,
        key_parts=key_parts,
    )
    return RunPlan(kind, key, task, model, identity, examples, record, label, detail)


# Run kinds by name, for recomputing metrics of any stored run: built-ins imported on use.
_BUILTIN_KINDS = {
    "eval": "bench.runner:EVAL",
    "prompt": "bench.prompt_runner:PROMPT",
    "prompt_set": "bench.prompt_runner:PROMPT_SET",
    "attack": "bench.attacks.runner:ATTACK",
    "suite": "bench.attacks.runner:SUITE",
    # Audits (issue 15).
    "behave": "bench.behave.runner:BEHAVE",
    "explain": "bench.audit.explain:EXPLAIN",
}
_KINDS: dict[str, RunKind | SummaryKind] = {}


def register_kind(kind: RunKind | SummaryKind) -> None:
    _KINDS[kind.name] = kind


def get_kind(name: str, where: str = "the results database") -> RunKind | SummaryKind:
    """The kind called ``name``; ``where`` names what asked for it, in the error."""
    if name not in _KINDS:
        target = _BUILTIN_KINDS.get(name)
        if target is None:
            from bench.errors import BenchError, shown

            raise BenchError(f"unknown run kind {shown(name, 40)} in {where}")
        module, attr = target.split(":")
        _KINDS[name] = getattr(importlib.import_module(module), attr)
    return _KINDS[name]
