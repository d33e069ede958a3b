"""Attacks as run kinds of the engine: (task, model, suite) -> attacked examples and robustness.

A run's key hashes everything that can change its outcomes (task data, model identity, the
attack's full constraint profile, the settings, the harness version); each finished example is
one work unit, committed at once, and a rerun skips what is stored. Every example's attack is
seeded from its own content hash, so a resumed run, a run with another concurrency and an
uninterrupted run attack each example identically. The ``suite`` kind summarises a suite's
attack runs: an example is robust when no attack of the suite broke it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.attacks.specs import AttackConfig, AttackSpec, SuiteSpec
from bench.engine import Engine, EngineClient, RunOutcome, RunPlan, WorkUnit, new_plan
from bench.errors import BenchError, SpecError
from bench.metrics import ATTACK_METRICS, SUITE_METRICS
from bench.records import AttackRow, AttackRunConfig, MetricSettings, RunRecord, SuiteRunConfig
from bench.specs import ModelSpec, canonical_json, sha256_text
from bench.store import ATTACK_TABLE, ResultStore
from bench.tasks.examples import Example, TaskData
from bench.tasks.loading import sample_examples

if TYPE_CHECKING:
    from bench.attacks.recipes import ResolvedAttack
    from bench.attacks.resources import AttackResources
    from bench.attacks.scheduler import CooperativeScheduler
    from bench.attacks.wrapper import ModelQuery
    from bench.backends import Classifier, LoadSettings, ModelPool
    from bench.metrics import MetricValue

# What attacks return (the engine's outcome type).
AttackOutcome = RunOutcome


def example_seed(seed: int, uid: str) -> int:
    """The seed of one example's attack: independent of its position and of the other examples."""
    return int(sha256_text(f"{seed}:{uid}")[:8], 16)


@dataclass(frozen=True)
class PlannedAttack:
    """An attack resolved against a task: everything needed to key, build and label it."""

    suite: str
    spec: AttackSpec
    resolved: ResolvedAttack
    attack_columns: list[str]
    profile: dict[str, Any]
    profile_hash: str

    @property
    def column(self) -> str:
        """``suite/name``: the name the suite gives the attack. Names are unique within a suite,
        so two attacks of one suite built from the same recipe stay apart (the variant, which
        they may share, is recorded beside it)."""
        return f"{self.suite}/{self.spec.name}"


@dataclass
class _Started:
    classifier: Classifier
    query: ModelQuery
    queries_before: int
    computed_before: int
    scheduler: CooperativeScheduler[Example, AttackRow] | None = None


@dataclass(frozen=True)
class AttackSettings:
    """How attacks run, beside what they are: plain data, so a plan can travel to another
    process (a Ray worker) and run there."""

    config: AttackConfig
    masked_lm: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 64
    concurrency: int = 16
    progress: bool = True

    def load_settings(self) -> LoadSettings:
        from bench.backends import LoadSettings

        return LoadSettings(self.device, self.dtype, self.config.max_length)


@dataclass(frozen=True)
class _Detail:
    attack: PlannedAttack
    settings: AttackSettings


# Per process: the attack resources (embeddings, encoders, taggers; loaded once), and one query
# cache per (classifier, label routing), shared by the attacks of a suite: they all start from
# the same clean texts, and character attacks revisit each other's edits. Keyed weakly by the
# classifier, so a cache goes when its model does.
_RESOURCES: dict[str | None, AttackResources] = {}
_QUERIES: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], ModelQuery]] = (
    weakref.WeakKeyDictionary()
)


def attack_resources(masked_lm: str | None) -> AttackResources:
    if masked_lm not in _RESOURCES:
        from bench.attacks.resources import AttackResources

        _RESOURCES[masked_lm] = AttackResources(masked_lm=masked_lm, device="cpu")
    return _RESOURCES[masked_lm]


def query_for(classifier: Classifier, alignment: Any, batch_size: int) -> ModelQuery:
    from bench.attacks.wrapper import ModelQuery

    caches = _QUERIES.setdefault(classifier, {})
    key = (canonical_json(alignment.mapping), tuple(alignment.task_labels), batch_size)
    if key not in caches:
        caches[key] = ModelQuery(classifier, alignment, batch_size=batch_size)
    return caches[key]


def fetch_resources(attack: PlannedAttack, progress: bool) -> None:
    """Fetch (once; verified by hash) the pinned assets this attack reads."""
    from bench import assets
    from bench.attacks.resources import ASSET_RESOURCES

    needed = [name for name in attack.profile["resources"] if name in ASSET_RESOURCES]
    if needed:
        assets.fetch(needed, progress=progress)


class AttackKind:
    """One attack of a suite on a sample of a task: one row per attacked example (original and
    perturbed text, scores, queries, status); each example is a work unit."""

    name = "attack"
    table = ATTACK_TABLE

    def start(self, plan: RunPlan, models: ModelPool) -> tuple[_Started, RunRecord]:
        from bench.models.labels import align_labels

        detail: _Detail = plan.detail
        settings = detail.settings
        fetch_resources(detail.attack, settings.progress)
        classifier = models.classifier(plan.model, settings.load_settings())
        alignment = align_labels(
            classifier.labels, plan.task.spec.labels, plan.task.spec.label_aliases,
            plan.model.label_map,
        )  # fmt: skip
        query = query_for(classifier, alignment, settings.batch_size)
        record = replace(
            plan.record,
            config=plan.record.config.model_copy(update={"device": classifier.device}),
            label_mapping=alignment.mapping,
        )
        return _Started(classifier, query, query.stats.queries, query.stats.computed), record

    def units(self, plan: RunPlan, state: _Started) -> list[WorkUnit]:
        return [WorkUnit((j,)) for j in range(len(plan.examples))]

    def compute(
        self, plan: RunPlan, state: _Started, units: Sequence[WorkUnit]
    ) -> Iterator[list[AttackRow]]:
        from bench.attacks.components import BuildContext, build_attack
        from bench.attacks.scheduler import CooperativeScheduler
        from bench.attacks.wrapper import ClassifierWrapper

        detail: _Detail = plan.detail
        attack, settings = detail.attack, detail.settings
        todo = [plan.examples[u.positions[0]] for u in units]
        scheduler: CooperativeScheduler[Example, AttackRow] = CooperativeScheduler(
            state.query, concurrency=min(settings.concurrency, max(1, len(todo)))
        )
        state.scheduler = scheduler
        ctx = BuildContext(
            resources=attack_resources(settings.masked_lm),
            input_columns=list(plan.task.spec.inputs),
            attack_columns=set(attack.attack_columns),
            query_budget=settings.config.query_budget,
            # The goal function must hand a whole search step to the wrapper at once; the
            # scheduler and the classifier do the batching.
            model_batch_size=1 << 30,
            attack_name=attack.spec.name,
        )
        wrapper = ClassifierWrapper(scheduler.query, model=state.classifier.torch_module)
        # One Attack per concurrent slot: goal functions hold per-example state.
        free = [
            build_attack(attack.resolved.composition, wrapper, ctx)
            for _ in range(scheduler.concurrency)
        ]
        columns = list(plan.task.spec.inputs)

        def attack_one(ex: Example) -> AttackRow:
            instance = free.pop()
            try:
                return _attack_example(instance, ex, columns)
            finally:
                free.append(instance)

        jobs = ((ex, example_seed(settings.config.seed, ex.uid)) for ex in todo)
        for _, row in scheduler.run(jobs, attack_one):
            yield [row]

    def stats(self, state: _Started) -> dict[str, float]:
        return {
            "model_queries": state.query.stats.queries - state.queries_before,
            "model_computed": state.query.stats.computed - state.computed_before,
            "mean_round": state.scheduler.stats.mean_batch if state.scheduler else 0.0,
        }

    def metrics(
        self, store: ResultStore, record: RunRecord, settings: MetricSettings
    ) -> dict[str, MetricValue]:
        from bench.metrics import compute

        rows = store.attack_rows(record.run_key)
        data = attack_data(rows, len(record.label_names))
        return compute(
            "attack", data, ATTACK_METRICS, settings.n_bootstrap, settings.seed, settings.alpha
        )


class SuiteKind:
    """A suite's worst case: an example is robust when it is classified correctly and no attack
    of the suite changes that; the suite's accuracy under attack is the rate of robust
    examples."""

    name = "suite"

    def record(self, key: str, members: Sequence[RunRecord], detail: Any) -> RunRecord:
        suite: SuiteSpec = detail
        first = members[0]
        assert isinstance(first.config, AttackRunConfig)
        hashes = [m.profile_hash for m in members]
        common = first.config.model_dump(exclude={"suite", "attack", "variant", "profile"})
        config = SuiteRunConfig(
            **common,
            suite=suite.name,
            suite_version=suite.version,
            attacks=[m.column for m in members],
        )
        # The suite describes the same task, model and settings as its attack runs.
        return replace(
            first,
            run_key=key,
            kind="suite",
            config=config,
            column=suite.name,
            profile_hash=sha256_text(canonical_json(hashes))[:12],
        )

    def metrics(
        self, store: ResultStore, record: RunRecord, settings: MetricSettings
    ) -> dict[str, MetricValue]:
        from bench.metrics import SuiteData, compute

        per_attack = [{r.idx: r for r in store.attack_rows(k)} for k in record.members]
        indices = sorted(per_attack[0])
        if any(sorted(rows) != indices for rows in per_attack):
            raise BenchError(f"suite {record.column!r}: its attacks ran on different examples")
        first = per_attack[0]
        data = SuiteData(
            robust=np.array(
                [all(rows[i].status == "failed" for rows in per_attack) for i in indices],
                dtype=np.float64,
            ),
            clean=np.array(
                [first[i].original_pred == first[i].label for i in indices], dtype=np.float64
            ),
            labels=np.array([first[i].label for i in indices], dtype=np.int64),
            k=len(record.label_names),
        )
        return compute(
            "suite", data, SUITE_METRICS, settings.n_bootstrap, settings.seed, settings.alpha
        )


ATTACK = AttackKind()
SUITE = SuiteKind()


@dataclass
class AttackRunner(EngineClient):
    """Runs attack suites; loads each model at most once and only when something must be run."""

    store: ResultStore
    config: AttackConfig = field(default_factory=AttackConfig)
    masked_lm: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 64
    # Attacks advanced together (their queries share forward passes). Outcomes do not depend on it.
    concurrency: int = 16
    progress: bool = True
    engine: Engine | None = None
    _plans: dict[tuple[str, str], list[PlannedAttack]] = field(
        default_factory=dict, init=False, repr=False
    )

    # -- planning (no model loaded, nothing computed) --------------------------------------

    @property
    def resources(self) -> AttackResources:
        return attack_resources(self.masked_lm)

    @property
    def settings(self) -> AttackSettings:
        return AttackSettings(
            self.config,
            self.masked_lm,
            self.device,
            self.dtype,
            self.batch_size,
            self.concurrency,
            self.progress,
        )

    def attack_columns(self, task: TaskData) -> list[str]:
        columns = list(task.spec.inputs)
        wanted = self.config.attack_columns or [columns[-1]]
        unknown = [c for c in wanted if c not in columns]
        if unknown:
            raise SpecError(
                f"task {task.spec.name!r} has input columns {columns}; cannot attack "
                f"{', '.join(repr(c) for c in unknown)}"
            )
        return [c for c in columns if c in wanted]

    def plan(self, task: TaskData, suite: SuiteSpec) -> list[PlannedAttack]:
        """Resolve every attack of ``suite`` for ``task``; raises before anything runs.

        Computed once per (task data, suite): profiles hash their resources, and a local
        masked-LM folder is read whole to hash it.
        """
        task.spec.require_labels("an attack")
        key = (task.data_hash, suite.canonical())
        if key not in self._plans:
            self._plans[key] = self._plan(task, suite)
        return self._plans[key]

    def _plan(self, task: TaskData, suite: SuiteSpec) -> list[PlannedAttack]:
        from bench.attacks.components import BuildContext, attack_profile, profile_hash
        from bench.attacks.recipes import resolve

        columns = self.attack_columns(task)
        planned = []
        for spec in suite.attacks:
            resolved = resolve(spec)
            if resolved.needs_masked_lm and not self.masked_lm:
                raise SpecError(
                    f"attack {spec.name!r} ({resolved.display_name}) needs a masked language "
                    "model; pass --masked-lm PATH (a local masked-LM folder)"
                )
            ctx = BuildContext(
                resources=self.resources,
                input_columns=list(task.spec.inputs),
                attack_columns=set(columns),
                query_budget=self.config.query_budget,
                model_batch_size=1 << 30,
                attack_name=spec.name,
            )
            profile = attack_profile(resolved, ctx)
            planned.append(
                PlannedAttack(suite.name, spec, resolved, columns, profile, profile_hash(profile))
            )
        return planned

    def load_settings(self) -> LoadSettings:
        return self.settings.load_settings()

    def run_plan(self, task: TaskData, model: ModelSpec, attack: PlannedAttack) -> RunPlan:
        pool = self._engine.models
        identity = pool.identity(model)
        outcomes = {**self.config.identity(), **pool.key_settings(model, self.load_settings())}
        examples = sample_examples(
            task.split(self.config.split), self.config.limit, self.config.seed
        )
        config = AttackRunConfig(
            **{**outcomes, "attack_columns": attack.attack_columns},
            n_bootstrap=self.config.n_bootstrap,
            batch_size=self.batch_size,
            concurrency=self.concurrency,
            suite=attack.suite,
            attack=attack.spec.name,
            variant=attack.resolved.display_name,
            profile=attack.profile,
        )
        parts = {
            "label_map": dict(sorted(model.label_map.items())),
            "profile": attack.profile,
            "config": outcomes,
        }
        return new_plan(
            ATTACK,
            parts,
            task,
            model,
            identity,
            examples,
            config,
            f"{task.spec.name} · {attack.column}",
            _Detail(attack, self.settings),
            column=attack.column,
            profile_hash=attack.profile_hash,
            versions=_attack_versions(),
        )

    def key_for(self, task: TaskData, model: ModelSpec, attack: PlannedAttack) -> str:
        return self.run_plan(task, model, attack).key

    def warm(self, model: ModelSpec) -> None:
        """Identify and load ``model`` now (e.g. outside a timed section), as a run would."""
        self._engine.models.identity(model)
        self._engine.models.classifier(model, self.load_settings())

    # -- running ---------------------------------------------------------------------------

    def run_suite(
        self, task: TaskData, model: ModelSpec, suite: SuiteSpec
    ) -> tuple[list[RunOutcome], RunOutcome]:
        """Every attack of ``suite``, then the suite's worst-case accuracy under attack."""
        planned = self.plan(task, suite)
        outcomes = [self.run_attack(task, model, p) for p in planned]
        summary = self._engine.summarize(SUITE, outcomes, suite)
        # Suite runs are keyed by their members' keys, so two suites of the same attacks share
        # one; each is shown under its own name.
        config = summary.record.config
        if isinstance(config, SuiteRunConfig):
            config = config.model_copy(
                update={
                    "suite": suite.name,
                    "suite_version": suite.version,
                    "attacks": [o.record.column for o in outcomes],
                }
            )
        record = replace(summary.record, column=suite.name, config=config)
        return outcomes, replace(summary, record=record)

    def run_attack(self, task: TaskData, model: ModelSpec, attack: PlannedAttack) -> RunOutcome:
        """One attack run, labelled as ``attack``'s suite names it: attack runs are keyed
        without the suite, so a run another suite stored first is answered from the store with
        that suite's label, which is not this suite's name for it."""
        outcome = self._engine.run(self.run_plan(task, model, attack))
        config = outcome.record.config
        if isinstance(config, AttackRunConfig):
            config = config.model_copy(update={"suite": attack.suite, "attack": attack.spec.name})
        record = replace(outcome.record, column=attack.column, config=config)
        return replace(outcome, record=record)


def _attack_versions() -> dict[str, str]:
    from bench.attacks.compat import textattack_version

    return {"textattack": textattack_version()}


def _attack_example(attack: Any, ex: Example, columns: list[str]) -> AttackRow:
    """Attack one example with a TextAttack ``Attack`` and turn its result into a store row."""
    from collections import OrderedDict

    from bench.attacks.compat import load_textattack

    ta = load_textattack()
    text = ta.shared.AttackedText(OrderedDict(zip(columns, ex.inputs, strict=True)))
    result = attack.attack(text, ex.label)
    original = result.original_result
    perturbed = result.perturbed_result
    if isinstance(result, ta.attack_results.SuccessfulAttackResult):
        status = "succeeded"
    elif isinstance(result, ta.attack_results.SkippedAttackResult):
        status = "skipped"
    else:
        status = "failed"
    before, after = original.attacked_text, perturbed.attacked_text
    changed = len(before.all_words_diff(after)) if status == "succeeded" else 0
    return AttackRow(
        idx=ex.idx,
        uid=ex.uid,
        label=ex.label,
        status=status,
        original=list(ex.inputs),
        perturbed=[after._text_input[c] for c in columns],
        original_pred=int(original.output),
        perturbed_pred=int(perturbed.output),
        original_scores=[float(x) for x in original.raw_output.tolist()],
        perturbed_scores=[float(x) for x in perturbed.raw_output.tolist()],
        queries=int(perturbed.num_queries),
        words_changed=changed,
        words_total=len(before.words),
    )


def attack_data(rows: Sequence[AttackRow], k: int) -> Any:
    """The arrays TextAttack's summary figures are computed from (see ``bench.metrics``)."""
    from bench.metrics import AttackData

    status = np.array([r.status for r in rows])
    return AttackData(
        status=status,
        clean=np.array([r.original_pred == r.label for r in rows], dtype=np.float64),
        labels=np.array([r.label for r in rows], dtype=np.int64),
        k=k,
        perturbed_pct=np.array(
            [
                100.0 * r.words_changed / max(1, r.words_total)
                for r in rows
                if r.status == "succeeded"
            ],
            dtype=np.float64,
        ),
        queries=np.array([r.queries for r in rows if r.status != "skipped"], dtype=np.float64),
    )
