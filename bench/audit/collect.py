"""A robustness audit: compute what the store lacks, then gather every number a report shows.

For the audited model (and the baseline, when given) on each task: the clean evaluation of the
test split (accuracy, calibration), the attack suites on a seeded sample, the behavioural suite
that fits the task, and the annotations of every attack run (similarity of each adversarial
example to its original, integrated gradients and faithfulness for a budget of them). Each is an
ordinary run of the engine: keyed, stored, resumed, answered from the store when complete.

Everything the report shows is then computed from stored rows (no model is loaded for it) into
one JSON-ready dictionary: each figure with its interval and its n, the direction that is
better, and, with a baseline, the paired difference (``bench.gate.stats.paired_difference``:
examples paired by uid, clusters resampled together).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError, shown

if TYPE_CHECKING:
    from bench.attacks.specs import AttackConfig, SuiteSpec
    from bench.behave.spec import BehaveSuite
    from bench.engine import RunOutcome
    from bench.records import AttackRow, MetricSettings, RunRecord
    from bench.specs import EvalConfig, ModelSpec
    from bench.store import ResultStore
    from bench.tasks.examples import TaskData

FORMAT = "bench-audit/1"

# How to read each figure: the direction that is better for the audited model, or what a
# larger value means when neither is better.
HIGHER = "higher is better"
LOWER = "lower is better"
DIRECTIONS: dict[str, str] = {
    "accuracy": HIGHER,
    "clean_accuracy": HIGHER,
    "accuracy_under_attack": HIGHER,
    "worst_case": HIGHER,
    "attack_success_rate": LOWER + " (for the model: fewer examples flipped)",
    "avg_queries": "higher: the attack needed more model queries (descriptive)",
    "perturbed_word_share": "higher: the attack changed more words (descriptive)",
    "similarity": "higher: adversarial text closer to the original (descriptive)",
    "similarity_above": "higher: more adversarial examples plausibly keep their meaning",
    "failure_rate": LOWER,
    "ece": LOWER,
    "brier": LOWER,
    "comprehensiveness": HIGHER + " (the explanation found what the model uses)",
    "sufficiency": LOWER + " (the top tokens alone keep the prediction)",
    "comprehensiveness_random": "reference: a random ranking's comprehensiveness",
    "sufficiency_random": "reference: a random ranking's sufficiency",
    "comprehensiveness_gain": HIGHER + " (0: no better than random)",
    "sufficiency_gain": HIGHER + " (0: no better than random)",
    "ig_delta_max": LOWER + " (integrated gradients' completeness error)",
    "gap": "in-domain minus this task's accuracy: higher means a larger drop",
    "spread": LOWER + " (less sensitive to the prompt's wording)",
}


@dataclass(frozen=True)
class AuditOptions:
    """What an audit runs and how its numbers are computed."""

    suites: tuple[str, ...] = ("quick",)
    behave_suite: str | None = None
    limit: int | None = 100
    eval_limit: int | None = None
    seed: int = 0
    query_budget: int | None = None
    max_length: int = 256
    batch_size: int = 64
    concurrency: int = 16
    device: str = "auto"
    dtype: str = "auto"
    masked_lm: str | None = None
    ig_budget: int = 10
    ig_steps: int = 50
    similarity_threshold: float = 0.8
    n_bootstrap: int = 1000
    confidence: float = 0.95
    failing_examples: int = 5

    def check(self) -> None:
        """Refuse a setting out of range before anything is loaded (options named as the CLI
        names them)."""
        if not 0.0 <= self.similarity_threshold <= 1.0:
            raise BenchError(
                f"--similarity-threshold must be between 0 and 1, got {self.similarity_threshold}"
            )
        for name, value, low in (
            ("--ig-budget", self.ig_budget, 0),
            ("--ig-steps", self.ig_steps, 1),
            ("--n-bootstrap", self.n_bootstrap, 1),
            ("--batch-size", self.batch_size, 1),
            ("--concurrency", self.concurrency, 1),
            ("--max-length", self.max_length, 1),
            ("--limit", self.limit, 1),
            ("--eval-limit", self.eval_limit, 1),
        ):
            if value is not None and value < low:
                raise BenchError(f"{name} must be at least {low}, got {value}")
        if not 0.0 < self.confidence < 1.0:
            raise BenchError(f"--confidence must be between 0 and 1, got {self.confidence}")
        self.configs()

    def configs(self) -> tuple[EvalConfig, AttackConfig]:
        """The clean evaluation's and the attacks' settings; a value they refuse is named by
        its option, as ``bench attack`` names it."""
        from pydantic import ValidationError

        from bench.attacks.specs import AttackConfig
        from bench.specs import EvalConfig

        # The audit's --limit is the attacks' sample, --eval-limit the evaluation's.
        try:
            eval_config = EvalConfig(
                limit=self.eval_limit,
                seed=self.seed,
                n_bootstrap=self.n_bootstrap,
                confidence=self.confidence,
                device=self.device,
                dtype=self.dtype,  # type: ignore[arg-type]
                max_length=self.max_length,
            )
        except ValidationError as exc:
            raise _option_error(exc, {"limit": "--eval-limit"}) from None
        try:
            attack_config = AttackConfig(
                limit=self.limit,
                seed=self.seed,
                query_budget=self.query_budget,
                max_length=self.max_length,
                n_bootstrap=self.n_bootstrap,
                confidence=self.confidence,
            )
        except ValidationError as exc:
            raise _option_error(exc, {}) from None
        return eval_config, attack_config


def _option_error(exc: Any, renamed: Mapping[str, str]) -> BenchError:
    """A settings model's first validation error as ``--option: message`` (pydantic's whole
    text ends in a documentation link, which says nothing about the value)."""
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    option = renamed.get(field, "--" + field.replace("_", "-"))
    return BenchError(f"{option}: {str(first['msg']).removeprefix('Value error, ')}")


@dataclass
class AuditResult:
    data: dict[str, Any]
    computed: int
    runs: int
    cached: int
    seconds: float
    outcomes: list[RunOutcome] = field(default_factory=list)


def default_out(model: str, tasks: Sequence[str]) -> Path:
    """``reports/audit/<model>-<task>...``, each part reduced to file-name characters."""

    def part(text: str) -> str:
        text = Path(text).stem if text.endswith((".yaml", ".yml")) else text
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"

    return Path("reports") / "audit" / "-".join([part(model), *(part(t) for t in tasks)])


# --------------------------------------------------------------------------------------------------
# Checks before anything runs


def declared_labels(spec: ModelSpec, pool: Any, settings: Any) -> list[str]:
    """A classifier's output labels, from its folder's config.json when it has one (no weights
    read), else from the loaded model."""
    import json

    from bench.models.identity import local_model_dir

    folder = local_model_dir(spec.path)
    if folder is not None and (folder / "config.json").is_file():
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            id2label = config.get("id2label") or {}
            labels = [str(id2label[k]) for k in sorted(id2label, key=int)]
            if labels:
                return labels
        except (OSError, ValueError, TypeError, KeyError):
            pass  # the loader below says what is wrong with it
    return list(pool.classifier(spec, settings).labels)


def check_baseline(
    model: ModelSpec,
    baseline: ModelSpec,
    datas: Sequence[TaskData],
    pool: Any,
    settings: Any,
) -> None:
    """A paired comparison needs two classifiers of one label set, both answering each task."""
    from bench.models.labels import align_labels, normalise_label

    a = declared_labels(model, pool, settings)
    b = declared_labels(baseline, pool, settings)
    if sorted(normalise_label(x) for x in a) != sorted(normalise_label(x) for x in b):
        raise BenchError(
            f"--baseline {shown(baseline.name, 40)} has labels {', '.join(b)[:80]} but "
            f"{shown(model.name, 40)} has {', '.join(a)[:80]}; a paired comparison needs the "
            "same labels"
        )
    for d in datas:
        for spec, labels in ((model, a), (baseline, b)):
            align_labels(labels, d.spec.labels, d.spec.label_aliases, spec.label_map)


def choose_behave(
    data: TaskData, explicit: tuple[BehaveSuite, str] | None
) -> tuple[BehaveSuite, str] | None:
    """The behavioural suite for a task: the one asked for (refused when the task cannot take
    it), else the first built-in one that fits, else none."""
    from bench.behave.expand import check_fits
    from bench.behave.spec import list_behave_suites, load_behave_suite
    from bench.errors import SpecError

    spec = data.spec
    if explicit is not None:
        check_fits(explicit[0], explicit[1], spec.inputs, spec.labels, spec.name)
        return explicit
    for name in list_behave_suites():
        suite, origin = load_behave_suite(name)
        try:
            check_fits(suite, origin, spec.inputs, spec.labels, spec.name)
        except SpecError:
            continue
        return suite, origin
    return None


# --------------------------------------------------------------------------------------------------
# Running


def _check_captum(options: AuditOptions) -> None:
    """Integrated gradients need Captum (the ``audit`` extra): say so before any work."""
    import importlib.util

    if options.ig_budget > 0 and importlib.util.find_spec("captum") is None:
        raise BenchError(
            "integrated gradients need Captum: pip install 'nlp-bench[audit]' (or pass "
            "--ig-budget 0 to skip attributions)"
        )


@dataclass
class _ModelRuns:
    """One model's runs on one task."""

    eval: RunOutcome
    # One outcome per attack run, in the order the suites first name them.
    attacks: list[RunOutcome]
    suites: list[RunOutcome]
    behave: RunOutcome | None
    explain: list[RunOutcome]
    # Per attack run key: every suite's name for that run (``quick/deepwordbug``,
    # ``cheap/dwb``); attack runs are keyed without the suite, so suites can share one.
    labels: dict[str, list[str]] = field(default_factory=dict)

    def label(self, outcome: RunOutcome) -> str:
        """How the report names an attack run: each suite's name for it."""
        return " = ".join(self.labels.get(outcome.record.run_key) or [outcome.record.column])


def _distinct(outcomes: Sequence[RunOutcome]) -> list[RunOutcome]:
    """Each run once (the first outcome of its key): suites that share an attack run, or a
    whole suite run, must not count or show it twice."""
    seen: dict[str, RunOutcome] = {}
    for o in outcomes:
        seen.setdefault(o.record.run_key, o)
    return list(seen.values())


def run_audit(
    store: ResultStore,
    model: ModelSpec,
    datas: Sequence[TaskData],
    suites: Sequence[SuiteSpec],
    options: AuditOptions,
    baseline: ModelSpec | None = None,
    behave: tuple[BehaveSuite, str] | None = None,
    progress: bool = False,
    executor: Any = None,
) -> AuditResult:
    """Compute what is missing, then collect (see the module docstring)."""
    from bench.attacks.runner import AttackRunner
    from bench.audit.explain import ExplainRunner, ExplainSettings
    from bench.behave.runner import BehaveRunner
    from bench.engine import Engine
    from bench.engine.executors import LocalExecutor
    from bench.runner import Evaluator

    started = time.perf_counter()
    options.check()
    _check_captum(options)
    eval_config, attack_config = options.configs()
    engine = Engine(
        store,
        progress=progress,
        metric_settings=eval_config.metric_settings(),
        executor=executor if executor is not None else LocalExecutor(),
    )
    evaluator = Evaluator(store, eval_config, progress=progress, engine=engine)
    attacks = AttackRunner(
        store,
        attack_config,
        masked_lm=options.masked_lm,
        device=options.device,
        dtype=options.dtype,
        batch_size=options.batch_size,
        concurrency=options.concurrency,
        progress=progress,
        engine=engine,
    )
    behave_config = eval_config.model_copy(update={"batch_size": options.batch_size})
    behaver = BehaveRunner(store, behave_config, progress=progress, engine=engine)
    explainer = ExplainRunner(
        store,
        attacks,
        ExplainSettings(steps=options.ig_steps, budget=options.ig_budget, seed=options.seed),
        progress=progress,
        engine=engine,
    )
    models = [model] + ([baseline] if baseline is not None else [])
    if baseline is not None:
        # By identity, not by name: the same weights under another name would be "compared"
        # with themselves, every difference 0.
        pool = engine.models
        if (pool.identity(model).key(), model.label_map) == (
            pool.identity(baseline).key(),
            baseline.label_map,
        ):
            raise BenchError(
                f"--baseline {shown(baseline.name, 40)} is the audited model "
                f"{shown(model.name, 40)} (same content hash); name another model"
            )
        check_baseline(model, baseline, datas, pool, attacks.load_settings())
    # Everything is planned (and so checked) before the first forward pass.
    chosen = {d.spec.name: choose_behave(d, behave) for d in datas}
    for d in datas:
        for s in suites:
            attacks.plan(d, s)
        for m in models:
            evaluator.plan(d, m)
            picked = chosen[d.spec.name]
            if picked is not None:
                behaver.plan(d, m, *picked)
    runs: dict[tuple[str, str], _ModelRuns] = {}
    outcomes: list[RunOutcome] = []
    for m in models:
        for d in datas:
            clean = evaluator.evaluate(d, m)
            attacked: list[RunOutcome] = []
            labels: dict[str, list[str]] = {}
            summaries: list[RunOutcome] = []
            for s in suites:
                members, summary = attacks.run_suite(d, m, s)
                for o in members:
                    named = labels.setdefault(o.record.run_key, [])
                    if o.record.column not in named:
                        named.append(o.record.column)
                attacked += members
                summaries.append(summary)
            attacked = _distinct(attacked)
            picked = chosen[d.spec.name]
            behaved = behaver.run(behaver.plan(d, m, *picked)) if picked is not None else None
            explained = [explainer.run(explainer.plan(d, m, o)) for o in attacked]
            runs[m.name, d.spec.name] = _ModelRuns(
                clean, attacked, summaries, behaved, explained, labels
            )
            outcomes += [clean, *attacked, *summaries]
            outcomes += [*([behaved] if behaved else []), *explained]
    data = collect(store, model, baseline, datas, suites, options, runs, chosen)
    # Two suites of the same attacks share one suite run: it counts once.
    outcomes = _distinct(outcomes)
    computed = sum(o.computed for o in outcomes)
    cached = sum(1 for o in outcomes if o.cached)
    seconds = time.perf_counter() - started
    data["provenance"]["runs"] = len(outcomes)
    data["provenance"]["runs_from_store"] = cached
    data["provenance"]["rows_computed"] = computed
    data["provenance"]["seconds"] = round(seconds, 1)
    return AuditResult(data, computed, len(outcomes), cached, seconds, outcomes)


# --------------------------------------------------------------------------------------------------
# Numbers


def _figure(value: float, low: float | None, high: float | None, n: int | None) -> dict[str, Any]:
    def clean(x: float | None) -> float | None:
        return None if x is None or not math.isfinite(x) else float(x)

    return {"value": clean(value), "low": clean(low), "high": clean(high), "n": n}


def _stored(metrics: dict[str, Any], name: str, n: int | None) -> dict[str, Any]:
    m = metrics.get(name)
    if m is None:
        return _figure(math.nan, None, None, n)
    return _figure(m.value, m.low, m.high, n)


def _mean_figure(values: Sequence[float], settings: MetricSettings) -> dict[str, Any]:
    """Mean with a percentile bootstrap CI (the metric settings' resamples and seed)."""
    import numpy as np

    from bench.metrics import bootstrap_distribution

    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return _figure(math.nan, None, None, 0)
    if settings.n_bootstrap < 1:
        return _figure(float(arr.mean()), None, None, int(arr.size))
    dist = bootstrap_distribution(
        lambda idx: arr[idx].mean(axis=1), arr.size, settings.n_bootstrap, settings.seed
    )
    low, high = np.quantile(dist, [settings.alpha / 2, 1 - settings.alpha / 2])
    return _figure(float(arr.mean()), float(low), float(high), int(arr.size))


def _distribution(values: Sequence[float], settings: MetricSettings) -> dict[str, Any]:
    import numpy as np

    arr = np.asarray(values, dtype=np.float64)
    out = _mean_figure(values, settings)
    if arr.size:
        q = np.quantile(arr, [0.1, 0.5, 0.9])
        out.update(p10=float(q[0]), median=float(q[1]), p90=float(q[2]))
    out["values"] = [round(float(v), 4) for v in arr]
    return out


def _paired(
    model: dict[str, float],
    base: dict[str, float] | None,
    settings: MetricSettings,
    clusters: dict[str, str],
    statistic: Callable[[list[str]], Callable[[Any, Any], Any]] | None = None,
) -> dict[str, Any] | None:
    """``model - baseline`` on the examples both have (by key), paired bootstrap CI."""
    import numpy as np

    from bench.gate.stats import paired_difference

    if base is None:
        return None
    keys = [k for k in model if k in base]
    if not keys:
        return {"value": None, "low": None, "high": None, "n": 0, "note": "no common examples"}
    a = np.array([base[k] for k in keys], dtype=np.float64)
    c = np.array([model[k] for k in keys], dtype=np.float64)
    d = paired_difference(
        a,
        c,
        [clusters.get(k.split("#")[0], k) for k in keys],
        n_boot=max(1, settings.n_bootstrap),
        seed=settings.seed,
        alpha=settings.alpha,
        statistic=statistic(keys) if statistic is not None else None,
    )
    out = _figure(d.diff, d.low, d.high, d.n)
    out["clusters"] = d.n_clusters
    return out


# Figures that are shares of examples: they also get a Wilson score interval, which stays
# informative where a percentile bootstrap collapses (0 of 100 failures gives [0, 0]).
PROPORTIONS = frozenset(
    {
        "accuracy",
        "clean_accuracy",
        "accuracy_under_attack",
        "worst_case",
        "attack_success_rate",
        "similarity_above",
        "failure_rate",
    }
)


def wilson(share: float, n: int, confidence: float) -> tuple[float, float]:
    """The Wilson score interval of a share of ``n`` examples."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _row(
    key: str,
    label: str,
    model: dict[str, Any],
    base: dict[str, Any] | None = None,
    diff: dict[str, Any] | None = None,
    note: str = "",
    short: str = "",
) -> dict[str, Any]:
    return {
        "metric": key,
        "label": label,
        "short": short or label,
        "direction": DIRECTIONS.get(key, ""),
        "model": model,
        "baseline": base,
        "diff": diff,
        "note": note,
    }


def _add_wilson(node: Any, confidence: float) -> None:
    """Every table row of a share (see ``PROPORTIONS``) gets its Wilson interval."""
    if isinstance(node, list):
        for item in node:
            _add_wilson(item, confidence)
    elif isinstance(node, dict):
        if node.get("metric") in PROPORTIONS and "model" in node:
            for fig in (node["model"], node.get("baseline")):
                if fig and fig.get("value") is not None and fig.get("n"):
                    fig["wilson"] = list(wilson(fig["value"], int(fig["n"]), confidence))
        for value in node.values():
            if isinstance(value, list | dict):
                _add_wilson(value, confidence)


def _keys_by(rows: Sequence[Any], value: Callable[[Any], float | None]) -> dict[str, float]:
    """Per example key (uid, with #2... for repeats): the value, where it is defined."""
    from bench.compare import example_keys

    keys = example_keys([r.uid for r in rows])
    out = {}
    for k, r in zip(keys, rows, strict=True):
        v = value(r)
        if v is not None:
            out[k] = float(v)
    return out


def _short(record: RunRecord, column: str | None = None) -> dict[str, Any]:
    return {
        "run_key": record.run_key,
        "kind": record.kind,
        "column": record.column if column is None else column,
        "n": record.n_examples,
        "profile_hash": record.profile_hash,
        "computed_s": round(record.compute_s, 1),
    }


def _model_identity(spec: ModelSpec, record: RunRecord) -> dict[str, Any]:
    # The folder's name only: a report must not carry this machine's paths.
    return {
        "name": spec.name,
        "backend": record.backend,
        "hash": record.model_hash,
        "folder": Path(record.model_path).name,
        "label_mapping": record.label_mapping,
        "dtype": record.config.dtype,
    }


def collect(
    store: ResultStore,
    model: ModelSpec,
    baseline: ModelSpec | None,
    datas: Sequence[TaskData],
    suites: Sequence[SuiteSpec],
    options: AuditOptions,
    runs: dict[tuple[str, str], _ModelRuns],
    behave: dict[str, tuple[BehaveSuite, str] | None],
) -> dict[str, Any]:
    """Every number of the report, from stored rows (see the module docstring)."""
    from bench._version import __version__
    from bench.engine import library_versions
    from bench.records import MetricSettings

    settings = MetricSettings(
        n_bootstrap=options.n_bootstrap, confidence=options.confidence, seed=options.seed
    )
    names = [model.name] + ([baseline.name] if baseline is not None else [])
    first = runs[model.name, datas[0].spec.name].eval.record
    out: dict[str, Any] = {
        "format": FORMAT,
        "model": _model_identity(model, first),
        "baseline": (
            _model_identity(baseline, runs[baseline.name, datas[0].spec.name].eval.record)
            if baseline is not None
            else None
        ),
        "settings": {
            "suites": [s.name for s in suites],
            "limit": options.limit,
            "eval_limit": options.eval_limit,
            "seed": options.seed,
            "query_budget": options.query_budget,
            "max_length": options.max_length,
            "n_bootstrap": options.n_bootstrap,
            "confidence": options.confidence,
            "similarity_threshold": options.similarity_threshold,
            "ig_budget": options.ig_budget,
            "ig_steps": options.ig_steps,
            # A file given by path is named, not located (no machine paths in reports).
            "behave_suite": Path(options.behave_suite).name if options.behave_suite else None,
        },
        "directions": dict(DIRECTIONS),
        "tasks": [],
        "provenance": {
            "harness": __version__,
            "versions": library_versions(),
            "store": store.path.name,
            "generated_at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        },
    }
    for d in datas:
        per = {n: runs[n, d.spec.name] for n in names}
        out["tasks"].append(
            _task_section(
                store,
                d,
                model.name,
                baseline.name if baseline else None,
                per,
                behave[d.spec.name],
                options,
                settings,
            )
        )
    out["context"] = _context(store, datas, names, settings)
    _add_wilson(out["tasks"], options.confidence)
    return out


def _task_section(
    store: ResultStore,
    data: TaskData,
    name: str,
    base: str | None,
    runs: dict[str, _ModelRuns],
    behave: tuple[BehaveSuite, str] | None,
    options: AuditOptions,
    settings: MetricSettings,
) -> dict[str, Any]:
    from bench.engine import run_metrics

    clusters = {ex.uid: ex.cluster for ex in data.split("test") if ex.cluster}
    labels = list(data.spec.labels)
    mine = runs[name]
    theirs = runs[base] if base is not None else None
    section: dict[str, Any] = {
        "task": data.spec.name,
        "version": data.spec.version,
        "data_hash": data.data_hash,
        "labels": labels,
        "inputs": list(data.spec.inputs),
        "models": [name] + ([base] if base else []),
        "runs": {
            n: [_short(r.eval.record)]
            + [_short(o.record, r.label(o)) for o in r.attacks]
            + [_short(o.record) for o in _distinct(r.suites)]
            + [_short(o.record) for o in r.explain]
            + ([_short(r.behave.record)] if r.behave else [])
            for n, r in runs.items()
        },
        # Every name an attack goes by in the audited suites, with its profile's hash.
        "profiles": {
            label: o.record.profile_hash
            for o in mine.attacks
            for label in mine.labels.get(o.record.run_key) or [o.record.column]
        },
    }
    # ---- clean evaluation and calibration
    preds = {n: store.predictions(r.eval.record.run_key) for n, r in runs.items()}
    correct = {n: _keys_by(p, lambda r: float(r.pred == r.label)) for n, p in preds.items()}
    evalm = {n: run_metrics(store, r.eval.record, settings) for n, r in runs.items()}
    calib = {n: _calibration(p, labels, settings) for n, p in preds.items()}
    split = mine.eval.record.split
    whole = len(data.split(split))  # type: ignore[arg-type]  # a stored split is a Role
    evaluated = mine.eval.record.n_examples
    # --eval-limit evaluates a seeded sample: the label must not claim the whole split.
    sampled = evaluated < whole
    summary = [
        _row(
            "accuracy",
            f"clean accuracy (seeded sample of {evaluated} of the {split} split's {whole})"
            if sampled
            else f"clean accuracy ({split} split)",
            _stored(evalm[name], "accuracy", mine.eval.record.n_examples),
            _stored(evalm[base], "accuracy", theirs.eval.record.n_examples)
            if base and theirs
            else None,
            _paired(correct[name], correct.get(base) if base else None, settings, clusters),
            short=f"clean ({split} sample)" if sampled else f"clean ({split} split)",
        )
    ]
    # ---- attacks
    attack_rows = {
        n: [store.attack_rows(o.record.run_key) for o in r.attacks] for n, r in runs.items()
    }
    explain_rows = {
        n: [store.explain_rows(o.record.run_key) for o in r.explain] for n, r in runs.items()
    }
    attacks_out = []
    for i, outcome in enumerate(mine.attacks):
        column = mine.label(outcome)
        per_model: dict[str, Any] = {}
        for n, r in runs.items():
            rows = attack_rows[n][i]
            sims = {e.idx: e.similarity for e in explain_rows[n][i]}
            m = run_metrics(store, r.attacks[i].record, settings)
            per_model[n] = {
                "rows": rows,
                "sims": sims,
                "metrics": m,
                "record": r.attacks[i].record,
                "explain": r.explain[i],
            }
        attacks_out.append(
            _attack_section(store, column, name, base, per_model, clusters, options, settings)
        )
    sample_clean = (
        {n: _keys_by(attack_rows[n][0], lambda r: float(r.original_pred == r.label)) for n in runs}
        if mine.attacks
        else {}
    )
    if mine.attacks:
        first = {n: run_metrics(store, r.attacks[0].record, settings) for n, r in runs.items()}
        summary.append(
            _row(
                "clean_accuracy",
                f"clean accuracy (attack sample of {mine.attacks[0].record.n_examples})",
                _stored(first[name], "clean_accuracy", mine.attacks[0].record.n_examples),
                _stored(first[base], "clean_accuracy", theirs.attacks[0].record.n_examples)
                if base and theirs
                else None,
                _paired(
                    sample_clean[name], sample_clean.get(base) if base else None, settings, clusters
                ),
                short="clean (attack sample)",
            )
        )
    for a in attacks_out:
        summary += [r for r in a["table"] if r["metric"] == "accuracy_under_attack"]
    for j, suite_run in enumerate(mine.suites):
        robust = {}
        for n, r in runs.items():
            keys = set(r.suites[j].record.members)
            members = [
                rows
                for o, rows in zip(r.attacks, attack_rows[n], strict=True)
                if o.record.run_key in keys
            ]
            robust[n] = _keys_by(members[0], _robust(members))
        sm = {n: run_metrics(store, r.suites[j].record, settings) for n, r in runs.items()}
        column = suite_run.record.column
        summary.append(
            _row(
                "worst_case",
                f"accuracy under the worst attack of each example (suite {column})",
                _stored(sm[name], "accuracy_under_attack", suite_run.record.n_examples),
                _stored(sm[base], "accuracy_under_attack", suite_run.record.n_examples)
                if base
                else None,
                _paired(robust[name], robust.get(base) if base else None, settings, clusters),
                short=f"worst case ({column})",
            )
        )
    for a in attacks_out:
        summary += [
            r
            for r in a["table"]
            if r["metric"] in ("attack_success_rate", "avg_queries", "perturbed_word_share")
        ]
    section["summary"] = summary
    section["attacks"] = [
        {k: v for k, v in a.items() if k != "table"} | {"table": a["table"]} for a in attacks_out
    ]
    section["calibration"] = {
        "models": calib,
        "table": _calibration_rows(preds, correct, calib, name, base, settings, clusters),
    }
    section["behave"] = (
        _behave_section(store, runs, name, base, behave, options, settings) if behave else None
    )
    section["attributions"] = _attribution_section(
        store, runs, name, base, labels, settings, explain_rows, attack_rows
    )
    section["examples"] = _examples(runs, attack_rows, explain_rows, labels)
    return section


def _robust(per_attack: Sequence[Sequence[AttackRow]]) -> Callable[[AttackRow], float]:
    """Whether an example survived every attack of the suite (1.0) or not."""
    by_uid = [{r.uid: r for r in rows} for rows in per_attack]
    return lambda r: float(all(p[r.uid].status == "failed" for p in by_uid))


def _attack_section(
    store: ResultStore,
    column: str,
    name: str,
    base: str | None,
    per_model: dict[str, dict[str, Any]],
    clusters: dict[str, str],
    options: AuditOptions,
    settings: MetricSettings,
) -> dict[str, Any]:
    from bench.audit.explain import explain_data
    from bench.metrics import compute

    def values(n: str, fn: Callable[[AttackRow], float | None]) -> dict[str, float]:
        return _keys_by(per_model[n]["rows"], fn)

    def share(r: AttackRow) -> float | None:
        return 100.0 * r.words_changed / max(1, r.words_total) if r.status == "succeeded" else None

    def sim(n: str) -> Callable[[AttackRow], float | None]:
        sims = per_model[n]["sims"]
        return lambda r: sims.get(r.idx) if r.status == "succeeded" else None

    def above(n: str) -> Callable[[AttackRow], float | None]:
        sims = per_model[n]["sims"]
        t = options.similarity_threshold
        return lambda r: (
            (float(sims[r.idx] >= t) if r.idx in sims else None)
            if r.status == "succeeded"
            else None
        )

    defs: list[tuple[str, str, Callable[[str], dict[str, float]]]] = [
        (
            "accuracy_under_attack",
            f"accuracy under {column}",
            lambda n: values(n, lambda r: float(r.status == "failed")),
        ),
        (
            "attack_success_rate",
            f"attack success rate, {column} (of examples attacked)",
            lambda n: values(
                n, lambda r: None if r.status == "skipped" else float(r.status == "succeeded")
            ),
        ),
        (
            "avg_queries",
            f"model queries per attacked example, {column}",
            lambda n: values(n, lambda r: None if r.status == "skipped" else float(r.queries)),
        ),
        (
            "perturbed_word_share",
            f"perturbed words %, {column} (successful attacks)",
            lambda n: values(n, share),
        ),
        (
            "similarity",
            f"original-adversarial similarity (MiniLM cosine), {column}",
            lambda n: values(n, sim(n)),
        ),
        (
            "similarity_above",
            f"share of adversarial examples with similarity >= {options.similarity_threshold:g}, {column}",
            lambda n: values(n, above(n)),
        ),
    ]
    table = []
    validity: dict[str, Any] = {}
    for key, label, fn in defs:
        per = {n: fn(n) for n in per_model}
        figs = {}
        for n in per_model:
            m = per_model[n]["metrics"]
            rec = per_model[n]["record"]
            if key == "accuracy_under_attack":
                figs[n] = _stored(m, "accuracy_under_attack", rec.n_examples)
            elif key == "attack_success_rate":
                figs[n] = _stored(m, "attack_success_rate", len(per[n]))
            else:
                figs[n] = _mean_figure(list(per[n].values()), settings)
        table.append(
            _row(
                key,
                label,
                figs[name],
                figs.get(base) if base else None,
                _paired(per[name], per.get(base) if base else None, settings, clusters),
                short=f"under {column}" if key == "accuracy_under_attack" else "",
            )
        )
    for n in per_model:
        shares = [v for v in values(n, share).values()]
        sims = list(per_model[n]["sims"].values())
        data = explain_data(
            store.explain_rows(per_model[n]["explain"].record.run_key), options.similarity_threshold
        )
        above_fig = compute(
            "explain",
            data,
            ["similarity_above"],
            settings.n_bootstrap,
            settings.seed,
            settings.alpha,
        )["similarity_above"]
        validity[n] = {
            "perturbed_word_share": _distribution(shares, settings),
            "similarity": _distribution(sims, settings),
            "similarity_above": _figure(above_fig.value, above_fig.low, above_fig.high, len(sims)),
            "threshold": options.similarity_threshold,
        }
    rec = per_model[name]["record"]
    return {
        "attack": column,
        "variant": rec.config.variant if hasattr(rec.config, "variant") else "",
        "profile_hash": rec.profile_hash,
        "run_key": rec.run_key,
        "n": rec.n_examples,
        "validity": validity,
        "table": table,
    }


def _calibration(
    rows: Sequence[Any], labels: list[str], settings: MetricSettings
) -> dict[str, Any]:
    import numpy as np

    from bench.metrics import ClassificationData, compute, reliability_bins

    y = np.array([r.label for r in rows], dtype=np.int64)
    p = np.array([r.probs for r in rows], dtype=np.float64)
    values = compute(
        "classification",
        ClassificationData(y, p, tuple(labels)),
        ["accuracy", "ece", "brier"],
        settings.n_bootstrap,
        settings.seed,
        settings.alpha,
    )
    return {
        "n": int(y.size),
        "bins": reliability_bins(y, p),
        **{k: _figure(v.value, v.low, v.high, int(y.size)) for k, v in values.items()},
    }


def _calibration_rows(
    preds: Mapping[str, Sequence[Any]],
    correct: dict[str, dict[str, float]],
    calib: dict[str, dict[str, Any]],
    name: str,
    base: str | None,
    settings: MetricSettings,
    clusters: dict[str, str],
) -> list[dict[str, Any]]:
    import numpy as np

    from bench.compare import example_keys
    from bench.metrics import batched_ece

    def brier(rows: Sequence[Any]) -> dict[str, float]:
        return _keys_by(
            rows, lambda r: float(sum((p - (i == r.label)) ** 2 for i, p in enumerate(r.probs)))
        )

    def ece_statistic(keys: list[str]) -> Callable[[Any, Any], Any]:
        # Both models' predictions on the paired examples, in ``keys`` order.
        arrays = []
        for n in (base, name):
            by_key = dict(
                zip(example_keys([r.uid for r in preds[n or ""]]), preds[n or ""], strict=True)
            )
            rows = [by_key[k] for k in keys]
            arrays.append((np.array([r.label for r in rows]), np.array([r.probs for r in rows])))

        def stat(idx: Any, which: Any) -> Any:
            out = np.empty(idx.shape[0])
            for w in (0, 1):
                sel = which == w
                if sel.any():
                    y, p = arrays[w]
                    out[sel] = batched_ece(y, p, idx[sel])
            return out

        return stat

    rows = [
        _row(
            "accuracy",
            "accuracy",
            calib[name]["accuracy"],
            calib[base]["accuracy"] if base else None,
            _paired(correct[name], correct.get(base) if base else None, settings, clusters),
        ),
        _row(
            "ece",
            "expected calibration error (15 bins)",
            calib[name]["ece"],
            calib[base]["ece"] if base else None,
            _paired(
                correct[name],
                correct.get(base) if base else None,
                settings,
                clusters,
                ece_statistic,
            )
            if base
            else None,
        ),
        _row(
            "brier",
            "Brier score",
            calib[name]["brier"],
            calib[base]["brier"] if base else None,
            _paired(brier(preds[name]), brier(preds[base]) if base else None, settings, clusters),
        ),
    ]
    return rows


def _behave_section(
    store: ResultStore,
    runs: dict[str, _ModelRuns],
    name: str,
    base: str | None,
    behave: tuple[BehaveSuite, str],
    options: AuditOptions,
    settings: MetricSettings,
) -> dict[str, Any]:
    from bench.engine import run_metrics

    suite, origin = behave
    rows = {n: store.behave_rows(r.behave.record.run_key) for n, r in runs.items() if r.behave}
    metrics = {
        n: run_metrics(store, r.behave.record, settings) for n, r in runs.items() if r.behave
    }
    rec = runs[name].behave.record  # type: ignore[union-attr]
    tests = []
    table = []
    for t in suite.tests:
        per = {
            n: {r.uid: float(not r.passed) for r in rs if r.test == t.name}
            for n, rs in rows.items()
        }
        figs = {n: _stored(metrics[n], f"failure_rate/{t.name}", len(per[n])) for n in rows}
        failing = {
            n: [_behave_case(r, rec.label_names) for r in rs if r.test == t.name and not r.passed][
                : options.failing_examples
            ]
            for n, rs in rows.items()
        }
        table.append(
            _row(
                "failure_rate",
                t.name,
                figs[name],
                figs.get(base) if base else None,
                _paired(per[name], per.get(base) if base else None, settings, {}),
            )
        )
        tests.append(
            {
                "name": t.name,
                "capability": t.capability,
                "type": t.type,
                "description": t.description,
                "source": t.source,
                "n": len(per[name]),
                "failing": failing,
                "predicted": {
                    n: _predicted([r for r in rs if r.test == t.name], rec.label_names)
                    for n, rs in rows.items()
                },
            }
        )
    overall = {n: {r.uid: float(not r.passed) for r in rs} for n, rs in rows.items()}
    table.append(
        _row(
            "failure_rate",
            "all tests (cases pooled)",
            _stored(metrics[name], "failure_rate", len(overall[name])),
            _stored(metrics[base], "failure_rate", len(overall[base]))
            if base and base in metrics
            else None,
            _paired(overall[name], overall.get(base) if base else None, settings, {}),
        )
    )
    return {
        "suite": suite.name,
        "version": suite.version,
        "file": Path(origin).name,
        "suite_hash": getattr(rec.config, "suite_hash", ""),
        "run_key": rec.run_key,
        "seed": options.seed,
        "tests": tests,
        "table": table,
    }


def _predicted(rows: Sequence[Any], labels: Sequence[str]) -> dict[str, Any]:
    """How a test's predictions (cases and variants) spread over the labels: a model that says
    one label to every case passes every invariance test, which then says little."""
    preds = [r.pred for r in rows] + [r.pred_variant for r in rows if r.pred_variant >= 0]
    shares = {label: preds.count(i) / max(1, len(preds)) for i, label in enumerate(labels)}
    top = max(shares, key=lambda k: shares[k]) if preds else None
    return {"shares": shares, "top": top, "top_share": shares[top] if top else None}


def _behave_case(row: Any, labels: Sequence[str]) -> dict[str, Any]:
    def name(i: int) -> str | None:
        return labels[i] if 0 <= i < len(labels) else None

    return {
        "inputs": list(row.inputs),
        "variant": list(row.variant),
        "expected": name(row.expected),
        "pred": name(row.pred),
        "pred_variant": name(row.pred_variant),
        "probs": [round(x, 4) for x in row.probs],
        "probs_variant": [round(x, 4) for x in row.probs_variant],
    }


def _attribution_section(
    store: ResultStore,
    runs: dict[str, _ModelRuns],
    name: str,
    base: str | None,
    labels: list[str],
    settings: MetricSettings,
    explain_rows: dict[str, list[list[Any]]],
    attack_rows: dict[str, list[list[Any]]],
) -> dict[str, Any]:
    from bench.engine import run_metrics

    out: dict[str, Any] = {"attacks": []}
    keys = [
        ("comprehensiveness", "comprehensiveness (AOPC)"),
        ("comprehensiveness_random", "comprehensiveness of a random ranking"),
        ("comprehensiveness_gain", "comprehensiveness minus random"),
        ("sufficiency", "sufficiency (AOPC)"),
        ("sufficiency_random", "sufficiency of a random ranking"),
        ("sufficiency_gain", "random minus sufficiency"),
        ("ig_delta_max", "largest |convergence delta|"),
    ]
    for i, outcome in enumerate(runs[name].explain):
        metrics = {n: run_metrics(store, r.explain[i].record, settings) for n, r in runs.items()}
        n_exp = {
            n: int(metrics[n]["n_explained"].value) if "n_explained" in metrics[n] else 0
            for n in runs
        }
        table = [
            _row(
                key,
                label,
                _stored(metrics[name], key, n_exp[name]),
                _stored(metrics[base], key, n_exp[base]) if base else None,
                None,
                "not paired: each model's flipped examples differ" if base else "",
            )
            for key, label in keys
        ]
        examples = {}
        for n in runs:
            by_idx = {r.idx: r for r in attack_rows[n][i]}
            examples[n] = [
                {
                    "idx": e.idx,
                    "uid": e.uid,
                    "target": labels[e.explanation.target],
                    "label": labels[by_idx[e.idx].label],
                    "perturbed_pred": labels[by_idx[e.idx].perturbed_pred],
                    "similarity": round(e.similarity, 4),
                    "original": _attr(e.explanation.original),
                    "adversarial": _attr(e.explanation.adversarial),
                    "comprehensiveness": e.explanation.comprehensiveness,
                    "sufficiency": e.explanation.sufficiency,
                    "comprehensiveness_random": e.explanation.comprehensiveness_random,
                    "sufficiency_random": e.explanation.sufficiency_random,
                    "seconds": round(e.explanation.seconds, 3),
                }
                for e in explain_rows[n][i]
                if e.explanation is not None
            ]
        seconds = {
            n: _figure(metrics[n]["ig_seconds"].value, None, None, n_exp[n])
            if "ig_seconds" in metrics[n]
            else _figure(math.nan, None, None, 0)
            for n in runs
        }
        # Named as the attack run is named now: a stored explain run keeps the label its
        # attack had when it was computed.
        attack = runs[name].attacks[i]
        out["attacks"].append(
            {
                "attack": getattr(attack.record.config, "attack", ""),
                "column": runs[name].label(attack),
                "run_key": outcome.record.run_key,
                "steps": getattr(outcome.record.config, "ig_steps", None),
                "budget": getattr(outcome.record.config, "ig_budget", None),
                "seconds_per_example": seconds,
                "table": table,
                "examples": examples,
            }
        )
    return out


def _attr(a: Any) -> dict[str, Any]:
    return {
        "tokens": list(a.tokens),
        "scores": [round(float(s), 5) for s in a.scores],
        "delta": a.delta,
        "output": a.output,
        "baseline_output": a.baseline_output,
        "sum": float(sum(a.scores)),
    }


def _examples(
    runs: dict[str, _ModelRuns],
    attack_rows: dict[str, list[list[Any]]],
    explain_rows: dict[str, list[list[Any]]],
    labels: list[str],
) -> list[dict[str, Any]]:
    """Every attacked example of every attack, for the example browser."""
    out = []
    for n, r in runs.items():
        for i, outcome in enumerate(r.attacks):
            sims = {e.idx: e.similarity for e in explain_rows[n][i]}
            for row in attack_rows[n][i]:
                out.append(
                    {
                        "model": n,
                        "attack": r.label(outcome),
                        "idx": row.idx,
                        "uid": row.uid,
                        "status": row.status,
                        "label": labels[row.label],
                        "original_pred": labels[row.original_pred],
                        "perturbed_pred": labels[row.perturbed_pred],
                        "original_scores": [round(x, 4) for x in row.original_scores],
                        "perturbed_scores": [round(x, 4) for x in row.perturbed_scores],
                        "queries": row.queries,
                        "words_changed": row.words_changed,
                        "words_total": row.words_total,
                        "similarity": round(sims[row.idx], 4) if row.idx in sims else None,
                        "original": list(row.original),
                        "perturbed": list(row.perturbed),
                    }
                )
    return out


# --------------------------------------------------------------------------------------------------
# Context: other tasks of the same labels, prompt sensitivity


def _context(
    store: ResultStore, datas: Sequence[TaskData], names: list[str], settings: MetricSettings
) -> dict[str, Any]:
    """What the store holds besides the audit: the models' clean accuracy on other tasks with
    the same labels (domain transfer) and prompted runs of the audited tasks (prompt
    sensitivity). Nothing is computed for it."""
    from bench.engine import run_metrics

    audited = {d.spec.name: d for d in datas}
    label_sets = {tuple(d.spec.labels) for d in datas}
    transfer: dict[str, Any] = {"models": names, "tasks": [], "cells": {}, "gaps": []}
    accuracy_rows: dict[tuple[str, str], Any] = {}
    for n in names:
        for rec in store.latest_complete(kinds=("eval",), model=n):
            if tuple(rec.label_names) not in label_sets or rec.split != "test":
                continue
            m = run_metrics(store, rec, settings).get("accuracy")
            if m is None:
                continue
            accuracy_rows[n, rec.task] = rec
            transfer["cells"].setdefault(n, {})[rec.task] = _figure(
                m.value, m.low, m.high, rec.n_examples
            )
    tasks = sorted({t for _, t in accuracy_rows}, key=lambda t: (t not in audited, t))
    transfer["tasks"] = tasks
    for n in names:
        for home in audited:
            if (n, home) not in accuracy_rows:
                continue
            for other in tasks:
                if other == home or (n, other) not in accuracy_rows:
                    continue
                if tuple(accuracy_rows[n, other].label_names) != tuple(audited[home].spec.labels):
                    continue
                transfer["gaps"].append(
                    {
                        "model": n,
                        "from": home,
                        "to": other,
                        **_gap(store, accuracy_rows[n, home], accuracy_rows[n, other], settings),
                    }
                )
    prompts = []
    for d in datas:
        for rec in store.runs(kinds=["prompt_set"], task=d.spec.name):
            set_metrics = run_metrics(store, rec, settings)
            templates = []
            for key in rec.members:
                member = store.get_run(key)
                if member is None:
                    continue
                mm = run_metrics(store, member, settings).get("accuracy")
                templates.append(
                    {
                        "template": getattr(member.config, "template", None),
                        "run_key": key,
                        **(_figure(mm.value, mm.low, mm.high, member.n_examples) if mm else {}),
                    }
                )
            prompts.append(
                {
                    "task": d.spec.name,
                    "model": ", ".join(store.names(rec.run_key)),
                    "column": rec.column,
                    "run_key": rec.run_key,
                    "accuracy": _stored(set_metrics, "accuracy", rec.n_examples),
                    "spread": _stored(set_metrics, "spread", len(templates)),
                    "templates": templates,
                }
            )
    return {"transfer": transfer, "prompts": prompts}


def _gap(
    store: ResultStore, home: RunRecord, other: RunRecord, settings: MetricSettings
) -> dict[str, Any]:
    """Accuracy at home minus on the other task: two independent samples, resampled apart."""
    import numpy as np

    from bench.metrics import bootstrap_distribution

    a = np.array([r.pred == r.label for r in store.predictions(home.run_key)], dtype=np.float64)
    b = np.array([r.pred == r.label for r in store.predictions(other.run_key)], dtype=np.float64)
    diff = float(a.mean() - b.mean())
    if settings.n_bootstrap < 1:
        return _figure(diff, None, None, None) | {"n_from": int(a.size), "n_to": int(b.size)}
    da = bootstrap_distribution(
        lambda i: a[i].mean(axis=1), a.size, settings.n_bootstrap, settings.seed
    )
    db = bootstrap_distribution(
        lambda i: b[i].mean(axis=1), b.size, settings.n_bootstrap, settings.seed + 1
    )
    low, high = np.quantile(da - db, [settings.alpha / 2, 1 - settings.alpha / 2])
    return _figure(diff, float(low), float(high), None) | {
        "n_from": int(a.size),
        "n_to": int(b.size),
    }
