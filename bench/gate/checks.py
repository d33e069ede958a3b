"""From a gate config and the store to verdicts: find each check's runs of the two models, pair
them (same task data and prediction settings, examples aligned by uid), take each example's
cluster from the task, bootstrap the difference and decide.

Nothing here loads a model; ``bench gate --run`` computes missing runs first (``bench.gate.run``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.compare import pairing_problem
from bench.errors import BenchError
from bench.gate.spec import CheckSpec, GateSpec
from bench.gate.stats import (
    Difference,
    Verdict,
    adjust,
    corrected_level,
    decide_n,
    paired_difference,
    verdict,
)
from bench.records import RunRecord
from bench.store import ResultStore

# Lower is better for these: the gate negates them, so "worse" is always a negative difference.
LOWER_IS_BETTER = frozenset({"ece", "brier"})


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: the two models' values, ``candidate - baseline`` with its CI (in
    the metric's own units: ``diff``, ``ci``), the same signed so that positive is better
    (``improvement``, ``improvement_ci``: negated for lower-is-better metrics; what the verdict
    compares with ``-margin``), the p-values and the verdict."""

    check: CheckSpec
    margin: float
    difference: Difference
    p_pass: float
    p_fail: float
    p_pass_adjusted: float
    p_fail_adjusted: float
    verdict: Verdict
    p_mcnemar: float | None
    mde: float
    n_to_decide: int | None
    unpaired: int
    seeds: tuple[int, int]
    baseline_runs: tuple[str, ...]
    candidate_runs: tuple[str, ...]
    lower_is_better: bool = False

    @property
    def diff(self) -> float:
        """candidate - baseline in the metric's units (for ECE/Brier a positive diff is worse)."""
        return -self.difference.diff if self.lower_is_better else self.difference.diff

    @property
    def ci(self) -> tuple[float, float]:
        d = self.difference
        return (-d.high, -d.low) if self.lower_is_better else (d.low, d.high)

    @property
    def improvement(self) -> float:
        """The difference signed so that positive is better (``diff``, negated for ECE/Brier)."""
        return self.difference.diff

    @property
    def improvement_ci(self) -> tuple[float, float]:
        return (self.difference.low, self.difference.high)

    @property
    def baseline(self) -> float:
        d = self.difference
        return -d.baseline if self.lower_is_better else d.baseline

    @property
    def candidate(self) -> float:
        d = self.difference
        return -d.candidate if self.lower_is_better else d.candidate


@dataclass
class GateResult:
    spec: GateSpec
    baseline: str
    candidate: str
    checks: list[CheckResult] = field(default_factory=list)

    def blocking_failures(self) -> list[CheckResult]:
        bad: set[str] = {"fail", "inconclusive"} if self.spec.inconclusive == "fail" else {"fail"}
        return [c for c in self.checks if c.check.blocking and c.verdict in bad]

    @property
    def passed(self) -> bool:
        return not self.blocking_failures()

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


# --------------------------------------------------------------------------------------------------
# Finding runs


def _kind_and_column(check: CheckSpec) -> tuple[str, str]:
    if check.suite is not None:
        return ("attack", check.suite) if check.attack else ("suite", check.suite)
    if check.shots is not None:
        if check.template is not None:
            return "prompt", f"{check.shots}shot/t{check.template}"
        return "prompt_set", f"{check.shots}shot"
    return "eval", ""


def _matches(record: RunRecord, check: CheckSpec, task: str, column: str) -> bool:
    if record.task != task:
        return False
    if record.kind == "attack":
        attack = getattr(record.config, "attack", "")
        variant = getattr(record.config, "variant", "")
        return record.column.split("/", 1)[0] == column and check.attack in (attack, variant)
    return record.column == column


def _stamp(record: RunRecord) -> tuple[float, float]:
    """When a run was stored, for "newest" (as the store's latest-run queries order them)."""
    return (record.finished_at or record.created_at, record.created_at)


def find_runs(
    store: ResultStore, model: str, check: CheckSpec, task: str
) -> list[tuple[RunRecord, ...]]:
    """Every complete run the model has for the check, newest first, each as a tuple: one run,
    or, when the model is a family of seeds (runs stored under ``model#s0``, ``model#s1``, ...),
    one run per seed, all with the same protocol settings."""
    kind, column = _kind_and_column(check)

    def runs_of(name: str) -> list[RunRecord]:
        found = store.runs(kinds=(kind,), model=name, task=task)
        return sorted((r for r in found if _matches(r, check, task, column)), key=_stamp,
                      reverse=True)  # fmt: skip

    exact = runs_of(model)
    if exact:
        return [(r,) for r in exact]
    pattern = re.compile(re.escape(model) + r"#s\d+")
    names = {r.model for r in store.latest_complete(kinds=(kind,)) if pattern.fullmatch(r.model)}
    members = [runs_of(name) for name in sorted(names)]
    members = [m for m in members if m]
    # A family's runs at one protocol setting: each seed's newest run that pairs with an anchor
    # run, for every anchor from the newest down (a seed rerun at other settings must not hide
    # the family's complete set at the gate's settings).
    options: list[tuple[RunRecord, ...]] = []
    seen: set[tuple[str, ...]] = set()
    for anchor in sorted((r for m in members for r in m), key=_stamp, reverse=True):
        picked = [next((r for r in m if pairing_problem(anchor, r) is None), None) for m in members]
        if any(r is None for r in picked):
            continue
        option = tuple(r for r in picked if r is not None)
        keys = tuple(r.run_key for r in option)
        if keys not in seen:
            seen.add(keys)
            options.append(option)
    return options


def choose_pair(
    base: Sequence[tuple[RunRecord, ...]], cand: Sequence[tuple[RunRecord, ...]], split: str
) -> tuple[tuple[RunRecord, ...], tuple[RunRecord, ...], str | None]:
    """The runs to gate: of every baseline option against every candidate option, the newest
    pair that can be paired, preferring pairs on ``split``; when none can, the pair that would
    have come first, with the reason it cannot be paired."""

    def newest(option: tuple[RunRecord, ...]) -> tuple[float, float]:
        return max(_stamp(r) for r in option)

    def rank(pair: tuple[tuple[RunRecord, ...], tuple[RunRecord, ...]]) -> tuple[Any, ...]:
        b, c = pair
        on_split = b[0].split == split and c[0].split == split
        stamps = sorted((newest(b), newest(c)), reverse=True)
        return (on_split, *stamps)

    pairs = sorted(((b, c) for b in base for c in cand), key=rank, reverse=True)
    for b, c in pairs:
        # The runs of a seed family share their settings, so the first of each stands for all.
        if pairing_problem(b[0], c[0]) is None:
            return b, c, None
    b, c = pairs[0]
    return b, c, pairing_problem(b[0], c[0])


# --------------------------------------------------------------------------------------------------
# Per-example values


def _keyed(rows: Sequence[Any], values: Sequence[Any]) -> dict[str, Any]:
    from bench.compare import example_keys

    return dict(zip(example_keys([r.uid for r in rows]), values, strict=True))


def _eval_values(store: ResultStore, rec: RunRecord, metric: str) -> dict[str, Any]:
    rows = store.predictions(rec.run_key)
    if metric == "accuracy":
        return _keyed(rows, [float(r.pred == r.label) for r in rows])
    if metric == "brier":
        values = []
        for r in rows:
            onehot = np.zeros(len(r.probs))
            onehot[r.label] = 1.0
            values.append(float(((np.asarray(r.probs) - onehot) ** 2).sum()))
        return _keyed(rows, values)
    # Not means of per-example values: the statistic is recomputed per resample.
    return _keyed(rows, [(r.label, r.pred, tuple(r.probs)) for r in rows])


def _attack_survived(store: ResultStore, key: str) -> dict[str, float]:
    rows = store.attack_rows(key)
    return _keyed(rows, [float(r.status == "failed") for r in rows])


def _prompt_correct(store: ResultStore, key: str) -> dict[str, float]:
    rows = store.prompt_rows(key)
    return _keyed(rows, [float(r.correct) for r in rows])


def _values(store: ResultStore, rec: RunRecord, metric: str) -> dict[str, Any]:
    """Per example key: the value whose mean is the check's metric (or the raw prediction)."""
    if rec.kind == "eval":
        return _eval_values(store, rec, metric)
    if rec.kind == "attack":
        return _attack_survived(store, rec.run_key)
    if rec.kind == "prompt":
        return _prompt_correct(store, rec.run_key)
    if rec.kind in ("suite", "prompt_set"):
        parts = [
            (_attack_survived if rec.kind == "suite" else _prompt_correct)(store, k)
            for k in rec.members
        ]
        keys = set.intersection(*(set(p) for p in parts))
        if rec.kind == "suite":  # robust: no attack of the suite broke it
            return {u: float(all(p[u] for p in parts)) for u in keys}
        return {u: float(np.mean([p[u] for p in parts])) for u in keys}
    raise BenchError(f"run {rec.run_key} of kind {rec.kind} cannot be gated")


def _statistic(metric: str, base: list[Any], cand: list[Any], k: int) -> Any:
    """A resample statistic for macro-F1 or ECE over aligned (label, pred, probs) tuples."""
    from bench.metrics import METRICS, ClassificationData

    datas = []
    for rows in (base, cand):
        labels = np.array([r[0] for r in rows], dtype=np.int64)
        probs = np.array([r[2] for r in rows], dtype=np.float64)
        datas.append(ClassificationData(labels, probs, tuple(str(i) for i in range(k))))
    fn = METRICS["classification", metric].fn
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0

    def statistic(idx: np.ndarray, which: np.ndarray) -> np.ndarray:
        data = datas[int(which[0])]
        values = np.asarray(fn(data, idx), dtype=np.float64)
        return sign * values

    return statistic


# --------------------------------------------------------------------------------------------------
# The gate


def _clusters(task_name: str, tasks_dir: Sequence[Path], task_hash: str) -> dict[str, str]:
    """uid -> cluster from the task's current data, which must be the data the runs saw."""
    from bench.tasks import get_task, load_task_data

    item = get_task(task_name, tasks_dir)
    data = load_task_data(item.spec, item.base_dir)
    if data.data_hash != task_hash:
        raise BenchError(
            f"task {task_name!r} has changed since its runs were stored (data hash "
            f"{data.data_hash[:12]} now, {task_hash[:12]} then); rerun the models (bench gate --run)"
        )
    return {ex.uid: ex.cluster for split in data.splits.values() for ex in split}


def evaluate_check(
    store: ResultStore,
    spec: GateSpec,
    check: CheckSpec,
    baseline: str,
    candidate: str,
    tasks_dir: Sequence[Path] = (),
) -> tuple[CheckSpec, Difference, dict[str, Any]]:
    from bench.tasks import get_task

    try:
        task = get_task(check.task, tasks_dir).spec.name
    except BenchError as exc:
        raise BenchError(f"check {check.label}: {exc}") from None
    base_options = find_runs(store, baseline, check, task)
    cand_options = find_runs(store, candidate, check, task)
    for name, options in ((baseline, base_options), (candidate, cand_options)):
        if not options:
            raise BenchError(
                f"no stored run of {name!r} for check {check.label}; run it first or pass --run"
            )
    base_runs, cand_runs, problem = choose_pair(base_options, cand_options, spec.split)
    if problem is not None:
        tried = len(base_options) * len(cand_options)
        also = f" (nor can any of the {tried} pairs of their stored runs)" if tried > 1 else ""
        raise BenchError(f"check {check.label}: runs cannot be paired: {problem}{also}")
    clusters = _clusters(check.task, tasks_dir, base_runs[0].task_hash)
    base_vals = [_values(store, r, check.metric) for r in base_runs]
    cand_vals = [_values(store, r, check.metric) for r in cand_runs]
    shared = set.intersection(*(set(v) for v in [*base_vals, *cand_vals]))
    every = set.union(*(set(v) for v in [*base_vals, *cand_vals]))
    uids = sorted(shared)
    if not uids:
        raise BenchError(f"check {check.label}: the two models share no examples")
    # An example without a cluster stands alone; a repeat ("uid#2": the same text and label
    # twice in the split) is the same item and moves with its first occurrence.
    groups = [clusters.get(u.split("#", 1)[0]) or u.split("#", 1)[0] for u in uids]
    mean_type = check.metric in ("accuracy", "brier") or base_runs[0].kind != "eval"
    sign = -1.0 if check.metric in LOWER_IS_BETTER else 1.0
    margin = spec.margin_of(check)
    if mean_type:
        a = sign * np.array([[v[u] for u in uids] for v in base_vals])
        c = sign * np.array([[v[u] for u in uids] for v in cand_vals])
        diff = paired_difference(a, c, groups, margin=margin, n_boot=spec.n_bootstrap,
                                 seed=spec.seed, alpha=spec.alpha)  # fmt: skip
    else:
        if len(base_runs) > 1 or len(cand_runs) > 1:
            raise BenchError(
                f"check {check.label}: {check.metric} takes one run per model, not seeds"
            )
        k = len(base_runs[0].label_names)
        stat = _statistic(check.metric, [base_vals[0][u] for u in uids],
                          [cand_vals[0][u] for u in uids], k)  # fmt: skip
        diff = paired_difference(np.zeros(len(uids)), np.zeros(len(uids)), groups, margin=margin,
                                 n_boot=spec.n_bootstrap, seed=spec.seed, alpha=spec.alpha,
                                 statistic=stat)  # fmt: skip
    extra = {
        "unpaired": len(every) - len(shared),
        "seeds": (len(base_runs), len(cand_runs)),
        "baseline_runs": tuple(r.run_key for r in base_runs),
        "candidate_runs": tuple(r.run_key for r in cand_runs),
        "p_mcnemar": None,
    }
    if check.metric == "accuracy" and len(base_runs) == len(cand_runs) == 1:
        from bench.metrics import mcnemar_test

        a1 = np.array([base_vals[0][u] for u in uids])
        c1 = np.array([cand_vals[0][u] for u in uids])
        if set(np.unique(a1)) <= {0.0, 1.0} and set(np.unique(c1)) <= {0.0, 1.0}:
            extra["p_mcnemar"] = mcnemar_test(c1.astype(bool), a1.astype(bool))[1]
    # Reported under the task's name (a check may name its YAML file).
    return check.model_copy(update={"task": task}), diff, extra


def run_gate(
    store: ResultStore,
    spec: GateSpec,
    baseline: str,
    candidate: str,
    tasks_dir: Sequence[Path] = (),
) -> GateResult:
    """Every check of ``spec``, with blocking checks corrected together (``correction``) and
    advisory ones together (``advisory_correction``)."""
    evaluated = [
        evaluate_check(store, spec, c, baseline, candidate, tasks_dir) for c in spec.checks
    ]
    result = GateResult(spec, baseline, candidate)
    adjusted: dict[int, tuple[float, float]] = {}
    levels: dict[int, float] = {}
    for blocking, method in ((True, spec.correction), (False, spec.advisory_correction)):
        members = [i for i, (c, _, _) in enumerate(evaluated) if c.blocking is blocking]
        p_pass = adjust([evaluated[i][1].p_pass() for i in members], method)
        p_fail = adjust([evaluated[i][1].p_fail() for i in members], method)
        for j, i in enumerate(members):
            adjusted[i] = (p_pass[j], p_fail[j])
            levels[i] = corrected_level(spec.alpha, len(members), method)
    for i, (check, diff, extra) in enumerate(evaluated):
        margin = spec.margin_of(check)
        pp, pf = adjusted[i]
        # What would decide the check is judged at its corrected level: the verdict is.
        mde, n_needed = decide_n(diff, margin, spec.alpha, levels[i])
        decided = verdict(pp, pf, spec.alpha)
        result.checks.append(
            CheckResult(
                check=check,
                margin=margin,
                difference=diff,
                p_pass=diff.p_pass(),
                p_fail=diff.p_fail(),
                p_pass_adjusted=pp,
                p_fail_adjusted=pf,
                verdict=decided,
                p_mcnemar=extra["p_mcnemar"],
                mde=mde,
                n_to_decide=n_needed if decided == "inconclusive" else None,
                unpaired=extra["unpaired"],
                seeds=extra["seeds"],
                baseline_runs=extra["baseline_runs"],
                candidate_runs=extra["candidate_runs"],
                lower_is_better=check.metric in LOWER_IS_BETTER,
            )
        )
    return result
