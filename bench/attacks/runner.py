"""The attack controller: (task, model, suite) -> attacked examples and robustness metrics.

Modelled on the evaluation runner: a run's key hashes everything that can change its outcomes
(task data, model weights, the attack's full constraint profile, the settings, the harness
version), each finished example is committed at once, and a rerun skips what is stored. Every
example's attack is seeded from its own content hash, so a resumed run, a run with another
concurrency and an uninterrupted run attack each example identically.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from bench._version import __version__
from bench.attacks.specs import AttackConfig, AttackSpec, SuiteSpec
from bench.errors import BenchError, SpecError
from bench.progress import make_progress
from bench.specs import ModelSpec, canonical_json, sha256_text
from bench.store import AttackRow, ResultStore, RunRecord, StoredMetric, run_key
from bench.tasks.examples import Example, TaskData
from bench.tasks.loading import sample_examples

if TYPE_CHECKING:
    from bench.attacks.recipes import ResolvedAttack
    from bench.attacks.resources import AttackResources
    from bench.models.classifier import HFClassifier

ATTACK_METRICS = (
    "clean_accuracy",
    "accuracy_under_attack",
    "attack_success_rate",
    "skipped_rate",
    "avg_perturbed_word_pct",
    "avg_queries",
)


def example_seed(seed: int, uid: str) -> int:
    """The seed of one example's attack: independent of its position and of the other examples."""
    return int(sha256_text(f"{seed}:{uid}")[:8], 16)


@dataclass(frozen=True)
class AttackOutcome:
    record: RunRecord
    metrics: dict[str, StoredMetric]
    cached: bool
    attacked: int = 0
    # Model-side counters of this invocation (zero when answered from the store).
    model_queries: int = 0
    model_computed: int = 0
    mean_round: float = 0.0


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
        return f"{self.suite}/{self.resolved.display_name}"


@dataclass
class AttackRunner:
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
    _models: dict[str, HFClassifier] = field(default_factory=dict, init=False, repr=False)
    _resources: AttackResources | None = field(default=None, init=False, repr=False)
    _hashes: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _plans: dict[tuple[str, str], list[PlannedAttack]] = field(
        default_factory=dict, init=False, repr=False
    )
    _queries: dict[tuple[Any, ...], Any] = field(default_factory=dict, init=False, repr=False)

    # -- planning (no model loaded, nothing computed) --------------------------------------

    @property
    def resources(self) -> AttackResources:
        if self._resources is None:
            from bench.attacks.resources import AttackResources

            self._resources = AttackResources(masked_lm=self.masked_lm, device="cpu")
        return self._resources

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

    # -- running ---------------------------------------------------------------------------

    def _model(self, spec: ModelSpec) -> HFClassifier:
        key = spec.canonical()
        if key not in self._models:
            from bench.models.classifier import HFClassifier

            self._models[key] = HFClassifier.from_spec(
                spec, self.device, self.dtype, self.config.max_length
            )
        return self._models[key]

    def _identity(self) -> dict[str, Any]:
        from bench.models.classifier import resolve_device, resolve_dtype

        ident = self.config.model_dump(mode="json")
        ident.pop("n_bootstrap")  # changes CIs only, which are recomputed from stored rows
        ident["dtype"] = resolve_dtype(self.dtype, resolve_device(self.device))
        return ident

    def _model_hash(self, spec: ModelSpec) -> str:
        """The weights' identity hash, computed once per model (it reads every weight file)."""
        key = spec.canonical()
        if key not in self._hashes:
            from bench.models.identity import model_identity

            self._hashes[key] = model_identity(spec.path, spec.revision)["hash"]
        return self._hashes[key]

    def key_for(self, task: TaskData, model: ModelSpec, attack: PlannedAttack) -> str:
        return run_key(
            {
                "kind": "attack",
                "task": task.data_hash,
                "model": self._model_hash(model),
                "label_map": dict(sorted(model.label_map.items())),
                "profile": attack.profile,
                "config": self._identity(),
                "harness": __version__,
            }
        )

    def run_suite(
        self, task: TaskData, model: ModelSpec, suite: SuiteSpec
    ) -> tuple[list[AttackOutcome], AttackOutcome]:
        """Every attack of ``suite``, then the suite's worst-case accuracy under attack."""
        planned = self.plan(task, suite)
        outcomes = [self.run_attack(task, model, p) for p in planned]
        return outcomes, self._suite_summary(task, model, suite, outcomes)

    def run_attack(self, task: TaskData, model: ModelSpec, attack: PlannedAttack) -> AttackOutcome:
        from bench.models.labels import align_labels
        from bench.runner import library_versions

        key = self.key_for(task, model, attack)
        existing = self.store.get_run(key)
        if existing is not None and existing.status == "complete":
            return AttackOutcome(existing, self.store.metrics(key), cached=True)

        self._fetch_resources(attack)
        examples = sample_examples(
            task.split(self.config.split),
            self.config.limit,
            self.config.seed,
        )
        classifier = self._model(model)
        alignment = align_labels(
            classifier.labels, task.spec.labels, task.spec.label_aliases, model.label_map
        )
        record = self.store.begin_run(
            RunRecord(
                run_key=key,
                kind="attack",
                task=task.spec.name,
                task_version=task.spec.version,
                task_hash=task.data_hash,
                model=model.name,
                model_path=model.path,
                model_hash=self._model_hash(model),
                config={
                    **self._identity(),
                    "suite": attack.suite,
                    "attack": attack.spec.name,
                    "variant": attack.resolved.display_name,
                    "column": attack.column,
                    "attack_columns": attack.attack_columns,
                    "profile": attack.profile,
                    "profile_hash": attack.profile_hash,
                    "batch_size": self.batch_size,
                    "concurrency": self.concurrency,
                    "device": classifier.device,
                },
                split=self.config.split,
                n_examples=len(examples),
                label_names=list(task.spec.labels),
                label_mapping=alignment.mapping,
                seed=self.config.seed,
                harness_version=__version__,
                versions={**library_versions(), **_attack_versions()},
            )
        )
        stats = self._attack_examples(key, task, attack, examples, classifier, alignment)
        final = self._finish(key, record)
        return AttackOutcome(final, self.store.metrics(key), False, *stats)

    def _fetch_resources(self, attack: PlannedAttack) -> None:
        """Fetch (once; verified by hash) the pinned assets this attack reads."""
        from bench import assets
        from bench.attacks.resources import ASSET_RESOURCES

        needed = [name for name in attack.profile["resources"] if name in ASSET_RESOURCES]
        if needed:
            assets.fetch(needed, progress=self.progress)

    def _attack_examples(
        self,
        key: str,
        task: TaskData,
        attack: PlannedAttack,
        examples: Sequence[Example],
        classifier: HFClassifier,
        alignment: Any,
    ) -> tuple[int, int, int, float]:
        from bench.attacks.components import BuildContext, build_attack
        from bench.attacks.scheduler import CooperativeScheduler
        from bench.attacks.wrapper import ClassifierWrapper, ModelQuery

        done = self.store.attacked_indices(key)
        todo = [ex for ex in examples if ex.idx not in done]
        # One query cache per (model, label routing), shared by the attacks of a suite: they all
        # start from the same clean texts, and character attacks revisit each other's edits.
        cache_key = (
            id(classifier),
            canonical_json(alignment.mapping),
            tuple(alignment.task_labels),
        )
        query = self._queries.get(cache_key)
        if query is None:
            query = self._queries[cache_key] = ModelQuery(
                classifier, alignment, batch_size=self.batch_size
            )
        queries_before, computed_before = query.stats.queries, query.stats.computed
        scheduler: CooperativeScheduler[Example, AttackRow] = CooperativeScheduler(
            query, concurrency=min(self.concurrency, max(1, len(todo)))
        )
        ctx = BuildContext(
            resources=self.resources,
            input_columns=list(task.spec.inputs),
            attack_columns=set(attack.attack_columns),
            query_budget=self.config.query_budget,
            # The goal function must hand a whole search step to the wrapper at once; the
            # scheduler and the classifier do the batching.
            model_batch_size=1 << 30,
            attack_name=attack.spec.name,
        )
        wrapper = ClassifierWrapper(scheduler.query, model=classifier.model)
        # One Attack per concurrent slot: goal functions hold per-example state.
        free = [
            build_attack(attack.resolved.composition, wrapper, ctx)
            for _ in range(scheduler.concurrency)
        ]
        columns = list(task.spec.inputs)

        def attack_one(ex: Example) -> AttackRow:
            instance = free.pop()
            try:
                return _attack_example(instance, ex, columns)
            finally:
                free.append(instance)

        attacked = 0
        label = f"{task.spec.name} · {attack.column}"
        with make_progress(self.progress) as bar:
            tid = bar.add_task(label, total=len(examples), completed=len(done))
            started = time.perf_counter()
            try:
                jobs = ((ex, example_seed(self.config.seed, ex.uid)) for ex in todo)
                for _, row in scheduler.run(jobs, attack_one):
                    attacked += self.store.add_attack_rows(key, [row])
                    bar.advance(tid, 1)
            finally:
                self.store.add_compute_time(key, time.perf_counter() - started)
        return (
            attacked,
            query.stats.queries - queries_before,
            query.stats.computed - computed_before,
            scheduler.stats.mean_batch,
        )

    def _finish(self, key: str, record: RunRecord) -> RunRecord:
        rows = self.store.attack_rows(key)
        if len(rows) != record.n_examples:
            raise BenchError(
                f"run {key}: {len(rows)} attacked examples stored for {record.n_examples}"
            )
        values = attack_metrics(
            rows, self.config.n_bootstrap, self.config.seed, len(record.label_names)
        )
        # Undefined figures (no successful attack: no perturbed-word %) are left out, not NaN.
        self.store.finish_run(key, [StoredMetric(key, *v) for v in values if v[1] == v[1]])
        final = self.store.get_run(key)
        assert final is not None
        return final

    # -- the suite -------------------------------------------------------------------------

    def _suite_summary(
        self,
        task: TaskData,
        model: ModelSpec,
        suite: SuiteSpec,
        outcomes: Sequence[AttackOutcome],
    ) -> AttackOutcome:
        """An example is robust to a suite when it is classified correctly and no attack of the
        suite changes that; the suite's accuracy under attack is the rate of robust examples."""
        keys = [o.record.run_key for o in outcomes]
        hashes = [o.record.config["profile_hash"] for o in outcomes]
        suite_hash = sha256_text(canonical_json(hashes))[:12]
        key = run_key({"kind": "suite", "runs": keys, "harness": __version__})
        existing = self.store.get_run(key)
        if existing is not None and existing.status == "complete":
            return AttackOutcome(existing, self.store.metrics(key), cached=True)
        per_attack = [{r.idx: r for r in self.store.attack_rows(k)} for k in keys]
        first = outcomes[0].record
        # The suite describes the same task, model and settings as its attack runs.
        record = self.store.begin_run(
            replace(
                first,
                run_key=key,
                kind="suite",
                config={
                    **{k: v for k, v in first.config.items() if k not in _PER_ATTACK},
                    "suite": suite.name,
                    "suite_version": suite.version,
                    "column": suite.name,
                    "attacks": [o.record.config["column"] for o in outcomes],
                    "attack_runs": keys,
                    "profile_hash": suite_hash,
                },
            )
        )
        indices = sorted(per_attack[0])
        k = len(first.label_names)
        if any(sorted(rows) != indices for rows in per_attack):
            raise BenchError(f"suite {suite.name!r}: its attacks ran on different examples")
        clean = np.array(
            [per_attack[0][i].original_pred == per_attack[0][i].label for i in indices]
        )
        robust = np.array([all(rows[i].status == "failed" for rows in per_attack) for i in indices])
        metrics = [
            _proportion("accuracy_under_attack", robust, self.config),
            _proportion("clean_accuracy", clean, self.config),
            ("majority", _majority([per_attack[0][i].label for i in indices], k), None, None),
            ("n", float(len(indices)), None, None),
        ]
        self.store.finish_run(key, [StoredMetric(key, *m) for m in metrics if m[1] == m[1]])
        final = self.store.get_run(key)
        assert final is not None and record is not None
        return AttackOutcome(final, self.store.metrics(key), cached=False)


_PER_ATTACK = {"attack", "variant", "profile", "profile_hash", "column"}


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


def _majority(labels: Sequence[int], k: int) -> float:
    from bench.metrics import majority_rate

    return majority_rate(np.asarray(labels, dtype=np.int64), k) if labels else float("nan")


def _proportion(
    name: str, hits: np.ndarray, config: AttackConfig
) -> tuple[str, float, float | None, float | None]:
    from bench.metrics import mean_ci

    return (name, *mean_ci(hits, config.n_bootstrap, config.seed))


def attack_metrics(
    rows: Sequence[AttackRow], n_bootstrap: int, seed: int, k: int
) -> list[tuple[str, float, float | None, float | None]]:
    """TextAttack's summary figures, with bootstrap CIs on the proportions.

    Definitions follow TextAttack's ``attack_metrics``: success rate over attacked (not skipped)
    examples; perturbed-word % and queries averaged over successful / attacked examples.
    """
    config = AttackConfig(n_bootstrap=n_bootstrap, seed=seed)
    status = np.array([r.status for r in rows])
    attacked = status != "skipped"
    succeeded = status == "succeeded"
    clean = np.array([r.original_pred == r.label for r in rows])
    pct = [100.0 * r.words_changed / max(1, r.words_total) for r in rows if r.status == "succeeded"]
    queries = [r.queries for r in rows if r.status != "skipped"]
    return [
        _proportion("clean_accuracy", clean, config),
        _proportion("accuracy_under_attack", status == "failed", config),
        _proportion("attack_success_rate", succeeded[attacked], config),
        ("skipped_rate", float((~attacked).mean()) if len(rows) else float("nan"), None, None),
        ("avg_perturbed_word_pct", float(np.mean(pct)) if pct else float("nan"), None, None),
        ("avg_queries", float(np.mean(queries)) if queries else float("nan"), None, None),
        # A constant classifier cannot be attacked: its accuracy under attack is this rate.
        ("majority", _majority([r.label for r in rows], k), None, None),
        ("n", float(len(rows)), None, None),
        ("succeeded", float(succeeded.sum()), None, None),
        ("failed", float((status == "failed").sum()), None, None),
        ("skipped", float((~attacked).sum()), None, None),
    ]
