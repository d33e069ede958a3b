"""Classification metrics over per-example arrays, bootstrap CIs and paired significance tests.

Inputs are ``labels`` (n,) class ids and ``probs`` (n, k) rows summing to one; the prediction is the
argmax of a row, ties going to the lowest index (``np.argmax``). Per-class figures follow
scikit-learn's ``zero_division=0``: a ratio whose denominator is zero is 0. Macro F1 averages over
all ``k`` classes of the task, including classes that are never predicted or absent from the labels.

Bootstrap CIs resample example indices with ``np.random.default_rng(seed)`` and take a percentile
interval (``np.quantile``, linear interpolation, at alpha/2 and 1 - alpha/2). Every metric of one
call uses the same resamples, so the numbers are reproducible and mutually consistent. Only numpy
is imported here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bench.errors import DataError, SpecError
from bench.specs import TASK_METRICS

FloatArray = np.ndarray
IntArray = np.ndarray

PER_CLASS_PARTS: tuple[str, ...] = ("precision", "recall", "f1")

# Cap on one chunk of the resample index matrix (elements), so memory stays ~32 MB at any n.
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class MetricValue:
    """A point estimate with its bootstrap interval (``None`` when no bootstrap was run)."""

    value: float
    low: float | None = None
    high: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "low": self.low, "high": self.high}


# --------------------------------------------------------------------------------------------------
# Point metrics


def predictions(probs: FloatArray) -> IntArray:
    """Argmax per row; ties go to the lowest class index."""
    return np.asarray(np.argmax(probs, axis=1), dtype=np.int64)


def _check(labels: IntArray, preds: IntArray, k: int | None) -> tuple[IntArray, IntArray]:
    """Validate equal 1-D integer arrays of class ids in [0, k); k None means any non-negative."""
    labels = np.asarray(labels)
    preds = np.asarray(preds)
    if labels.ndim != 1 or preds.shape != labels.shape:
        raise ValueError(f"labels {labels.shape} and predictions {preds.shape} must be equal 1-D")
    if labels.size == 0:
        raise DataError("cannot compute metrics on zero examples")
    if k is not None and k < 1:
        raise ValueError(f"number of classes must be positive, got {k}")
    for name, arr in (("labels", labels), ("predictions", preds)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must be integer class ids, got dtype {arr.dtype}")
        if arr.min() < 0 or (k is not None and arr.max() >= k):
            raise ValueError(f"{name} hold class ids outside [0, {k or 'inf'})")
    return labels.astype(np.int64, copy=False), preds.astype(np.int64, copy=False)


def _check_probs(labels: IntArray, probs: FloatArray) -> tuple[IntArray, FloatArray, IntArray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs {probs.shape} must be (n, k) with n = {labels.shape[0]}")
    if probs.shape[0] == 0:
        raise DataError("cannot compute metrics on zero examples")
    preds = predictions(probs)
    labels, preds = _check(labels, preds, probs.shape[1])
    return labels, probs, preds


def confusion(labels: IntArray, preds: IntArray, k: int) -> IntArray:
    """(k, k) counts; row = true class, column = predicted class."""
    labels, preds = _check(labels, preds, k)
    return np.bincount(labels * k + preds, minlength=k * k).reshape(k, k)


def _prf_from_confusion(conf: np.ndarray) -> tuple[FloatArray, FloatArray, FloatArray, IntArray]:
    """Precision/recall/F1/support from confusion counts of shape (..., k, k)."""
    tp = np.diagonal(conf, axis1=-2, axis2=-1).astype(np.float64)
    predicted = conf.sum(axis=-2).astype(np.float64)
    support = conf.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        # F1 as 2tp / (2tp + fp + fn), the form scikit-learn uses, so values agree to the last bit.
        denom = predicted + support
        f1 = np.where(denom > 0, 2.0 * tp / denom, 0.0)
    return precision, recall, f1, support


def accuracy(labels: IntArray, preds: IntArray) -> float:
    labels, preds = _check(labels, preds, None)
    return float(np.mean(labels == preds))


def per_class_prf(labels: IntArray, preds: IntArray, k: int) -> dict[str, np.ndarray]:
    """Per-class ``precision``, ``recall``, ``f1`` (float, shape (k,)) and ``support`` (int)."""
    precision, recall, f1, support = _prf_from_confusion(confusion(labels, preds, k))
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def macro_f1(labels: IntArray, preds: IntArray, k: int) -> float:
    """Unweighted mean F1 over all ``k`` classes (absent or never-predicted classes count as 0)."""
    return float(np.mean(per_class_prf(labels, preds, k)["f1"]))


def _ece_bins(conf: FloatArray, n_bins: int) -> IntArray:
    # Edges are exactly i / n_bins (one float division each) and bins are right-closed, so a
    # confidence equal to an edge i / n_bins lands in bin i - 1. Values rounding above 1 stay in the
    # last bin.
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    return np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)


def expected_calibration_error(labels: IntArray, probs: FloatArray, n_bins: int = 15) -> float:
    """Top-label ECE with ``n_bins`` equal-width bins on (0, 1].

    Confidence is the largest probability of a row. Bin ``i`` holds confidences ``c`` with
    ``i / n_bins < c <= (i + 1) / n_bins`` (edges computed as ``i / n_bins`` in float64). The ECE is
    ``sum_i (n_i / n) * |acc_i - conf_i|`` over non-empty bins, with ``acc_i`` the accuracy and
    ``conf_i`` the mean confidence of bin ``i``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    labels, probs, preds = _check_probs(labels, probs)
    conf = probs.max(axis=1)
    bins = _ece_bins(conf, n_bins)
    correct = (preds == labels).astype(np.float64)
    gap = np.bincount(bins, weights=correct - conf, minlength=n_bins)
    return float(np.abs(gap).sum() / labels.size)


def brier_score(labels: IntArray, probs: FloatArray) -> float:
    """Mean squared distance between each probability row and its one-hot label."""
    labels, probs, _ = _check_probs(labels, probs)
    return float(np.mean(_brier_per_example(labels, probs)))


def _brier_per_example(labels: IntArray, probs: FloatArray) -> FloatArray:
    onehot = np.zeros_like(probs)
    onehot[np.arange(labels.size), labels] = 1.0
    return np.asarray(((probs - onehot) ** 2).sum(axis=1))


def majority_rate(labels: IntArray, k: int) -> float:
    """Accuracy of always predicting this sample's most frequent class (the chance-level bar)."""
    labels, _ = _check(labels, labels, k)
    return float(np.bincount(labels, minlength=k).max() / labels.size)


# --------------------------------------------------------------------------------------------------
# Bootstrap


def bootstrap_indices(n: int, n_boot: int, seed: int) -> Iterator[IntArray]:
    """Resampled index matrices, in chunks of shape (b, n), ``n_boot`` rows in all.

    The chunk size depends only on ``n``, so a seed fixes every resample whatever the caller does
    with them.
    """
    if n < 1:
        raise DataError("cannot bootstrap zero examples")
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        yield rng.integers(0, n, size=(b, n))
        done += b


def _percentile(values: FloatArray, alpha: float) -> tuple[float, float]:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    return float(low), float(high)


def bootstrap_distribution(
    stat_batch: Callable[[IntArray], FloatArray], n: int, n_boot: int = 1000, seed: int = 0
) -> FloatArray:
    """Values of a batched statistic over ``n_boot`` resamples.

    ``stat_batch`` maps an index matrix (b, n) to b values, or to (b, m) for m statistics at once.
    """
    parts = [
        np.asarray(stat_batch(idx), dtype=np.float64) for idx in bootstrap_indices(n, n_boot, seed)
    ]
    if not parts:
        raise ValueError("n_boot must be positive")
    return np.concatenate(parts, axis=0)


def bootstrap_ci(
    stat: Callable[[IntArray], float],
    n: int,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile interval of ``stat(indices)`` over ``n_boot`` index resamples of ``n`` examples.

    ``stat`` receives one resample's index array (n,) into the caller's per-example arrays. For
    speed on big runs prefer ``bootstrap_distribution`` with a statistic over a whole index
    matrix; both draw the same resamples under the same seed.
    """

    def batched(idx: IntArray) -> FloatArray:
        return np.array([stat(row) for row in idx], dtype=np.float64)

    return _percentile(bootstrap_distribution(batched, n, n_boot, seed), alpha)


def mean_ci(
    values: FloatArray, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float | None, float | None]:
    """``(mean, CI low, CI high)`` of per-example values (e.g. 0/1 hits), percentile bootstrap;
    no interval below two resamples, NaN for no values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), None, None
    value = float(values.mean())
    if n_boot < 2:
        return value, None, None
    dist = bootstrap_distribution(lambda idx: values[idx].mean(axis=1), values.size, n_boot, seed)
    low, high = np.percentile(dist, [2.5, 97.5])
    return value, float(low), float(high)


def _batched_confusion(codes: IntArray, idx: IntArray, k: int) -> IntArray:
    """(b, k, k) confusion counts of each resample, from codes = label * k + pred."""
    b = idx.shape[0]
    offsets = (np.arange(b, dtype=np.int64) * (k * k))[:, None]
    counts = np.bincount((codes[idx] + offsets).ravel(), minlength=b * k * k)
    return counts.reshape(b, k, k)


def _batched_ece(bins: IntArray, gap: FloatArray, idx: IntArray, n_bins: int) -> FloatArray:
    b, n = idx.shape
    offsets = (np.arange(b, dtype=np.int64) * n_bins)[:, None]
    sums = np.bincount(
        (bins[idx] + offsets).ravel(), weights=gap[idx].ravel(), minlength=b * n_bins
    )
    return np.asarray(np.abs(sums.reshape(b, n_bins)).sum(axis=1) / n)


# --------------------------------------------------------------------------------------------------
# The metric registry


MetricFn = Callable[[Any, "IntArray | None"], Any]


@dataclass(frozen=True)
class Metric:
    """A registered metric: one function gives the point value (``idx is None``) and the values
    over a batch of bootstrap resamples (``idx`` of shape (b, n): shape (b,), or (b, m) for a
    metric with several outputs)."""

    name: str
    family: str
    fn: MetricFn
    # True: larger is better; False: smaller (ECE, Brier); None: a count or a descriptive figure.
    higher_is_better: bool | None = True
    # Whether a bootstrap interval is reported (counts and rates of a whole run have none).
    ci: bool = True
    # Names of a multi-output metric's values (``per_class``: precision/<label>, ...).
    outputs: Callable[[Any], list[str]] | None = None
    # The examples a metric is defined on, when not all of them (attack success rate: the
    # attacked ones); resamples are drawn from that population.
    population: Callable[[Any], Any] | None = None
    description: str = ""

    def names(self, data: Any) -> list[str]:
        return self.outputs(data) if self.outputs is not None else [self.name]


# (family, name) -> metric. A family is the shape of data a metric reads: "classification"
# (labels and probabilities), "prompt" (per-example correctness), "attack" (attacked
# examples), "suite" (robustness per example over a suite's attacks).
METRICS: dict[tuple[str, str], Metric] = {}


def metric(
    name: str,
    family: str,
    *,
    higher_is_better: bool | None = True,
    ci: bool = True,
    outputs: Callable[[Any], list[str]] | None = None,
    population: Callable[[Any], Any] | None = None,
    description: str = "",
) -> Callable[[MetricFn], MetricFn]:
    """Register ``fn(data, idx)`` as metric ``name`` of ``family`` (usable as a decorator)."""

    def register(fn: MetricFn) -> MetricFn:
        if (family, name) in METRICS:
            raise ValueError(f"metric {name!r} of family {family!r} is registered twice")
        METRICS[family, name] = Metric(
            name,
            family,
            fn,
            higher_is_better,
            ci,
            outputs,
            population,
            description or (fn.__doc__ or "").strip().split("\n")[0],
        )
        return fn

    return register


def family_metrics(family: str) -> list[str]:
    return [name for fam, name in METRICS if fam == family]


def higher_is_better(name: str) -> bool | None:
    """The direction of a metric name (a per-class name like ``f1/pos`` reads its family's)."""
    base = name.split("/", 1)[0]
    base = {"precision": "per_class", "recall": "per_class", "f1": "per_class"}.get(base, base)
    directions = {m.higher_is_better for (_, n), m in METRICS.items() if n == base}
    return directions.pop() if len(directions) == 1 else None


def compute(
    family: str,
    data: Any,
    names: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, MetricValue]:
    """Point values and percentile bootstrap CIs of ``names`` (metrics of ``family``), in the
    order requested. Metrics on one population share their resamples, so their intervals are
    mutually consistent and the same under the same seed whatever else is requested.
    ``n_boot = 0`` skips the bootstrap. Undefined values (no population) are NaN."""
    if n_boot < 0:
        raise ValueError(f"n_boot must be non-negative, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    wanted = [METRICS[family, name] for name in dict.fromkeys(names)]
    out: dict[str, MetricValue] = {}
    # Populations (by the metric that defines them) -> metrics whose CIs are drawn there.
    groups: dict[Any, list[tuple[Metric, Any]]] = {}
    for m in wanted:
        subset = m.population(data) if m.population is not None else data
        size = _size(subset)
        points = np.atleast_1d(np.asarray(m.fn(subset, None), dtype=np.float64)) if size else None
        for i, name in enumerate(m.names(data)):
            out[name] = MetricValue(float(points[i]) if points is not None else math.nan)
        if m.ci and n_boot > 0 and size:
            groups.setdefault(m.population, []).append((m, subset))
    for members in groups.values():
        subset = members[0][1]

        def stat_batch(idx: IntArray, members: list[tuple[Metric, Any]] = members) -> FloatArray:
            cols = [np.asarray(m.fn(d, idx), dtype=np.float64) for m, d in members]
            return np.concatenate([c[:, None] if c.ndim == 1 else c for c in cols], axis=1)

        dist = bootstrap_distribution(stat_batch, _size(subset), n_boot, seed)
        lows, highs = np.quantile(dist, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
        col = 0
        for m, _ in members:
            for name in m.names(data):
                out[name] = MetricValue(out[name].value, float(lows[col]), float(highs[col]))
                col += 1
    return out


def _size(data: Any) -> int:
    return int(data.n)


# --------------------------------------------------------------------------------------------------
# Classification: labels and probabilities of a classifier's predictions


@dataclass(frozen=True)
class ClassificationData:
    """Per-example arrays of a classifier run, derived once for every metric."""

    labels: IntArray
    probs: FloatArray
    label_names: tuple[str, ...]
    n_bins: int = 15

    @property
    def n(self) -> int:
        return int(self.labels.size)

    @property
    def k(self) -> int:
        return int(self.probs.shape[1])

    @functools.cached_property
    def preds(self) -> IntArray:
        return predictions(self.probs)

    @functools.cached_property
    def correct(self) -> FloatArray:
        return (self.preds == self.labels).astype(np.float64)

    @functools.cached_property
    def codes(self) -> IntArray:
        return np.asarray(self.labels * self.k + self.preds)

    @functools.cached_property
    def bins(self) -> IntArray:
        return _ece_bins(self.probs.max(axis=1), self.n_bins)

    @functools.cached_property
    def gap(self) -> FloatArray:
        return np.asarray(self.correct - self.probs.max(axis=1))

    @functools.cached_property
    def brier(self) -> FloatArray:
        return _brier_per_example(self.labels, self.probs)

    def prf(self, idx: IntArray | None) -> tuple[FloatArray, FloatArray, FloatArray]:
        if idx is None:
            conf = np.bincount(self.codes, minlength=self.k * self.k).reshape(self.k, self.k)
        else:
            conf = _batched_confusion(self.codes, idx, self.k)
        return _prf_from_confusion(conf)[:3]


def _mean(values: FloatArray, idx: IntArray | None) -> Any:
    return float(values.mean()) if idx is None else values[idx].mean(axis=1)


@metric("accuracy", "classification")
def _accuracy(d: ClassificationData, idx: IntArray | None) -> Any:
    """Share of examples whose most probable label is the gold label."""
    return _mean(d.correct, idx)


@metric("macro_f1", "classification")
def _macro_f1(d: ClassificationData, idx: IntArray | None) -> Any:
    """Unweighted mean F1 over all the task's classes."""
    f1 = d.prf(idx)[2]
    return float(f1.mean()) if idx is None else f1.mean(axis=1)


@metric("ece", "classification", higher_is_better=False)
def _ece(d: ClassificationData, idx: IntArray | None) -> Any:
    """Top-label expected calibration error, 15 equal-width bins."""
    if idx is None:
        sums = np.bincount(d.bins, weights=d.gap, minlength=d.n_bins)
        return float(np.abs(sums).sum() / d.n)
    return _batched_ece(d.bins, d.gap, idx, d.n_bins)


@metric("brier", "classification", higher_is_better=False)
def _brier(d: ClassificationData, idx: IntArray | None) -> Any:
    """Mean squared distance between the probabilities and the one-hot label."""
    return _mean(d.brier, idx)


def _per_class_names(d: ClassificationData) -> list[str]:
    return [f"{part}/{name}" for part in PER_CLASS_PARTS for name in d.label_names]


@metric("per_class", "classification", outputs=_per_class_names)
def _per_class(d: ClassificationData, idx: IntArray | None) -> Any:
    """Precision, recall and F1 of every label."""
    parts = d.prf(idx)
    return np.concatenate(parts, axis=-1)


@metric("majority", "classification", higher_is_better=None, ci=False)
def _majority(d: ClassificationData, idx: IntArray | None) -> Any:
    """Accuracy of always predicting the most frequent gold label (the chance-level bar)."""
    return majority_rate(d.labels, d.k)


@metric("n", "classification", higher_is_better=None, ci=False)
def _n(d: ClassificationData, idx: IntArray | None) -> Any:
    """Examples evaluated."""
    return float(d.n)


@metric("dominant_share", "classification", higher_is_better=None, ci=False)
def _dominant_share(d: ClassificationData, idx: IntArray | None) -> Any:
    """Share of predictions taken by the most predicted label (1.0: a constant predictor)."""
    return float(np.bincount(d.preds, minlength=d.k).max() / d.n)


@metric("dominant_label", "classification", higher_is_better=None, ci=False)
def _dominant_label(d: ClassificationData, idx: IntArray | None) -> Any:
    """Index of the most predicted label (lowest on ties)."""
    return float(np.argmax(np.bincount(d.preds, minlength=d.k)))


# Aggregate metrics a task may request, plus "per_class" which adds precision/recall/f1 per label.
KNOWN_METRICS: tuple[str, ...] = TASK_METRICS
# Recorded for every classifier run besides what the task requests.
RUN_FIGURES: tuple[str, ...] = ("majority", "n", "dominant_share", "dominant_label")


def compute_metrics(
    labels: IntArray,
    probs: FloatArray,
    label_names: Sequence[str],
    metrics: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    n_bins: int = 15,
) -> dict[str, MetricValue]:
    """Point estimates and bootstrap CIs, keyed by metric name, in the order requested.

    Names: ``accuracy``, ``macro_f1``, ``ece``, ``brier``; ``per_class`` adds ``precision/<label>``,
    ``recall/<label>`` and ``f1/<label>`` for every task label (only when requested, so default
    tables stay compact). ``n_boot = 0`` skips the bootstrap (low/high are ``None``).
    """
    unknown = [m for m in metrics if m not in KNOWN_METRICS]
    if unknown:
        raise SpecError(f"unknown metric(s) {unknown}; known: {', '.join(KNOWN_METRICS)}")
    labels, probs, _ = _check_probs(labels, probs)
    if len(label_names) != probs.shape[1]:
        raise ValueError(f"{len(label_names)} label names for {probs.shape[1]} probability columns")
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    data = ClassificationData(labels, probs, tuple(label_names), n_bins)
    return compute("classification", data, metrics, n_boot, seed, alpha)


# --------------------------------------------------------------------------------------------------
# Prompted runs: per-example correctness (a template's 0/1, or the mean over a set's templates)


@dataclass(frozen=True)
class PromptData:
    """Correctness per example (by raw and by length-normalised loglikelihood), the gold labels
    and the task's kind; ``per_template`` holds each template's accuracy for a prompt set."""

    hits: FloatArray
    hits_norm: FloatArray
    labels: IntArray
    n_labels: int
    task_kind: str
    per_template: FloatArray | None = None

    @property
    def n(self) -> int:
        return int(self.hits.size)


@metric("accuracy", "prompt")
def _prompt_accuracy(d: PromptData, idx: IntArray | None) -> Any:
    """Share answered correctly (a set: each example's correctness averaged over templates)."""
    return _mean(d.hits, idx)


@metric("accuracy_norm", "prompt")
def _prompt_accuracy_norm(d: PromptData, idx: IntArray | None) -> Any:
    """Accuracy when each answer's loglikelihood is divided by its length in characters."""
    return _mean(d.hits_norm, idx)


@metric("exact_match", "prompt")
def _exact_match(d: PromptData, idx: IntArray | None) -> Any:
    """A generation task's accuracy, under lm-evaluation-harness's name."""
    return _mean(d.hits, idx)


@metric("majority", "prompt", higher_is_better=None, ci=False)
def _prompt_majority(d: PromptData, idx: IntArray | None) -> Any:
    """Majority-class rate of a classification task's gold labels."""
    return majority_rate(d.labels, d.n_labels)


@metric("n", "prompt", higher_is_better=None, ci=False)
def _prompt_n(d: PromptData, idx: IntArray | None) -> Any:
    """Questions answered."""
    return float(d.n)


@metric("n_templates", "prompt", higher_is_better=None, ci=False)
def _n_templates(d: PromptData, idx: IntArray | None) -> Any:
    """Templates a prompt set averages over."""
    return float(len(d.per_template)) if d.per_template is not None else math.nan


@metric("spread", "prompt", higher_is_better=None, ci=False)
def _spread(d: PromptData, idx: IntArray | None) -> Any:
    """Max - min of the templates' accuracies (prompt sensitivity)."""
    if d.per_template is None or len(d.per_template) < 2:
        return math.nan
    return float(d.per_template.max() - d.per_template.min())


@metric("template_sd", "prompt", higher_is_better=None, ci=False)
def _template_sd(d: PromptData, idx: IntArray | None) -> Any:
    """Standard deviation of the templates' accuracies."""
    if d.per_template is None or len(d.per_template) < 2:
        return math.nan
    return float(d.per_template.std(ddof=1))


def prompt_metric_names(task_kind: str, summary: bool = False) -> list[str]:
    """What a prompted run reports: accuracy and its length-normalised variant (or exact match
    for generation), the majority rate of a classification task, and a set's spread."""
    names = ["accuracy", "n", "exact_match" if task_kind == "generation" else "accuracy_norm"]
    if task_kind == "classification":
        names.append("majority")
    if summary:
        names += ["n_templates", "spread", "template_sd"]
    return names


# --------------------------------------------------------------------------------------------------
# Attacks: attacked examples (TextAttack's summary figures), and a suite's worst case


@dataclass(frozen=True)
class AttackData:
    """One attack run's outcomes: status per example, clean correctness, perturbed-word share
    of successful attacks, queries of attacked ones."""

    status: np.ndarray  # "succeeded" | "failed" | "skipped"
    clean: FloatArray
    labels: IntArray
    k: int
    perturbed_pct: FloatArray
    queries: FloatArray

    @property
    def n(self) -> int:
        return int(self.status.size)

    def attacked(self) -> AttackData:
        keep = self.status != "skipped"
        return replace(
            self, status=self.status[keep], clean=self.clean[keep], labels=self.labels[keep]
        )


@metric("clean_accuracy", "attack")
def _clean_accuracy(d: AttackData, idx: IntArray | None) -> Any:
    """Accuracy on the sampled examples before any attack."""
    return _mean(d.clean, idx)


@metric("accuracy_under_attack", "attack")
def _under_attack(d: AttackData, idx: IntArray | None) -> Any:
    """Share of examples classified correctly that the attack failed to flip."""
    return _mean((d.status == "failed").astype(np.float64), idx)


@metric("attack_success_rate", "attack", higher_is_better=None, population=AttackData.attacked)
def _success_rate(d: AttackData, idx: IntArray | None) -> Any:
    """Share of attacked (correctly classified, not skipped) examples the attack flipped."""
    return _mean((d.status == "succeeded").astype(np.float64), idx)


@metric("skipped_rate", "attack", higher_is_better=None, ci=False)
def _skipped_rate(d: AttackData, idx: IntArray | None) -> Any:
    """Share of examples not attacked (misclassified before the attack)."""
    return float((d.status == "skipped").mean())


@metric("avg_perturbed_word_pct", "attack", higher_is_better=None, ci=False)
def _perturbed_pct(d: AttackData, idx: IntArray | None) -> Any:
    """Mean share of words changed, over successful attacks (percent)."""
    return float(d.perturbed_pct.mean()) if d.perturbed_pct.size else math.nan


@metric("avg_queries", "attack", higher_is_better=None, ci=False)
def _avg_queries(d: AttackData, idx: IntArray | None) -> Any:
    """Mean model queries per attacked example."""
    return float(d.queries.mean()) if d.queries.size else math.nan


@metric("majority", "attack", higher_is_better=None, ci=False)
def _attack_majority(d: AttackData, idx: IntArray | None) -> Any:
    """A constant classifier cannot be attacked: its accuracy under attack is this rate."""
    return majority_rate(d.labels, d.k)


@metric("n", "attack", higher_is_better=None, ci=False)
def _attack_n(d: AttackData, idx: IntArray | None) -> Any:
    """Examples sampled for the attack."""
    return float(d.n)


for _status in ("succeeded", "failed", "skipped"):

    def _count(d: AttackData, idx: IntArray | None, status: str = _status) -> Any:
        return float((d.status == status).sum())

    metric(_status, "attack", higher_is_better=None, ci=False, description=f"Examples {_status}.")(
        _count
    )


ATTACK_METRICS: tuple[str, ...] = (
    "clean_accuracy",
    "accuracy_under_attack",
    "attack_success_rate",
    "skipped_rate",
    "avg_perturbed_word_pct",
    "avg_queries",
    "majority",
    "n",
    "succeeded",
    "failed",
    "skipped",
)


@dataclass(frozen=True)
class SuiteData:
    """Per example: robust (correct, and no attack of the suite flipped it) and clean."""

    robust: FloatArray
    clean: FloatArray
    labels: IntArray
    k: int

    @property
    def n(self) -> int:
        return int(self.robust.size)


@metric("accuracy_under_attack", "suite")
def _suite_under_attack(d: SuiteData, idx: IntArray | None) -> Any:
    """Share of examples no attack of the suite broke (the worst case over its attacks)."""
    return _mean(d.robust, idx)


@metric("clean_accuracy", "suite")
def _suite_clean(d: SuiteData, idx: IntArray | None) -> Any:
    """Accuracy on the sampled examples before any attack."""
    return _mean(d.clean, idx)


@metric("majority", "suite", higher_is_better=None, ci=False)
def _suite_majority(d: SuiteData, idx: IntArray | None) -> Any:
    """Majority-class rate of the sampled examples."""
    return majority_rate(d.labels, d.k)


@metric("n", "suite", higher_is_better=None, ci=False)
def _suite_n(d: SuiteData, idx: IntArray | None) -> Any:
    """Examples sampled."""
    return float(d.n)


SUITE_METRICS: tuple[str, ...] = ("accuracy_under_attack", "clean_accuracy", "majority", "n")


# --------------------------------------------------------------------------------------------------
# Audits (issue 15): behavioural tests, adversarial-example annotations, calibration


@dataclass(frozen=True)
class BehaveData:
    """Per behavioural test case: failed (1.0) or passed, and which test it belongs to."""

    failed: FloatArray
    test_ids: IntArray
    tests: tuple[str, ...]

    @property
    def n(self) -> int:
        return int(self.failed.size)

    def per_test(self) -> FloatArray:
        k = len(self.tests)
        counts = np.bincount(self.test_ids, minlength=k)
        fails = np.bincount(self.test_ids, weights=self.failed, minlength=k)
        return np.asarray(fails / np.maximum(counts, 1))


@metric("failure_rate", "behave", higher_is_better=False)
def _behave_failure_rate(d: BehaveData, idx: IntArray | None) -> Any:
    """Share of all test cases that fail (cases of every test pooled)."""
    return _mean(d.failed, idx)


def _behave_test_names(d: BehaveData) -> list[str]:
    return [f"failure_rate/{t}" for t in d.tests]


@metric("per_test", "behave", higher_is_better=False, outputs=_behave_test_names)
def _behave_per_test(d: BehaveData, idx: IntArray | None) -> Any:
    """Failure rate of each test. A resample draws cases of the whole suite; a test's rate is
    its failed share among its drawn cases (a test with no case drawn keeps its point value,
    which happens with probability about exp(-cases) per resample)."""
    point = d.per_test()
    if idx is None:
        return point
    k = len(d.tests)
    b = idx.shape[0]
    codes = (d.test_ids[idx] + (np.arange(b, dtype=np.int64) * k)[:, None]).ravel()
    counts = np.bincount(codes, minlength=b * k).reshape(b, k)
    fails = np.bincount(codes, weights=d.failed[idx].ravel(), minlength=b * k).reshape(b, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where(counts > 0, fails / np.maximum(counts, 1), point[None, :])
    return rates


@metric("n", "behave", higher_is_better=None, ci=False)
def _behave_n(d: BehaveData, idx: IntArray | None) -> Any:
    """Test cases run."""
    return float(d.n)


@metric("n_tests", "behave", higher_is_better=None, ci=False)
def _behave_n_tests(d: BehaveData, idx: IntArray | None) -> Any:
    """Tests in the suite."""
    return float(len(d.tests))


@metric("tests_failing", "behave", higher_is_better=False, ci=False)
def _behave_tests_failing(d: BehaveData, idx: IntArray | None) -> Any:
    """Tests with at least one failing case."""
    return float(np.count_nonzero(d.per_test() > 0))


BEHAVE_METRICS: tuple[str, ...] = ("failure_rate", "per_test", "n", "n_tests", "tests_failing")


@dataclass(frozen=True)
class ExplainedData:
    """Faithfulness per explained example (AOPC of the attribution ranking and of a random
    ranking, on the original text)."""

    comprehensiveness: FloatArray
    sufficiency: FloatArray
    comprehensiveness_random: FloatArray
    sufficiency_random: FloatArray

    @property
    def n(self) -> int:
        return int(self.comprehensiveness.size)


@dataclass(frozen=True)
class ExplainData:
    """One attack run's successful adversarial examples: similarity for each; faithfulness,
    convergence deltas and seconds for those explained; ``threshold`` for the share of
    examples at least that similar."""

    similarity: FloatArray
    explained: ExplainedData
    delta: FloatArray
    seconds: FloatArray
    threshold: float = 0.8

    @property
    def n(self) -> int:
        return int(self.similarity.size)


def _explained(d: ExplainData) -> ExplainedData:
    return d.explained


@metric("similarity_mean", "explain", higher_is_better=None)
def _similarity_mean(d: ExplainData, idx: IntArray | None) -> Any:
    """Mean MiniLM cosine similarity of original and adversarial text (higher: closer to the
    original, a more credible adversarial example)."""
    return _mean(d.similarity, idx)


@metric("similarity_above", "explain", higher_is_better=None)
def _similarity_above(d: ExplainData, idx: IntArray | None) -> Any:
    """Share of adversarial examples whose similarity is at least the threshold (higher: more
    of them plausibly keep the meaning)."""
    return _mean((d.similarity >= d.threshold).astype(np.float64), idx)


@metric("n", "explain", higher_is_better=None, ci=False)
def _explain_n(d: ExplainData, idx: IntArray | None) -> Any:
    """Successful adversarial examples annotated."""
    return float(d.n)


@metric("n_explained", "explain", higher_is_better=None, ci=False)
def _explain_n_explained(d: ExplainData, idx: IntArray | None) -> Any:
    """Adversarial examples explained with integrated gradients (the budget)."""
    return float(d.explained.n)


@metric("comprehensiveness", "explain", population=_explained)
def _comprehensiveness(d: ExplainedData, idx: IntArray | None) -> Any:
    """AOPC comprehensiveness: mean drop of the target probability when the top-k% attributed
    tokens are deleted (higher: the attributions found what the model uses)."""
    return _mean(d.comprehensiveness, idx)


@metric("sufficiency", "explain", higher_is_better=False, population=_explained)
def _sufficiency(d: ExplainedData, idx: IntArray | None) -> Any:
    """AOPC sufficiency: mean drop of the target probability when only the top-k% attributed
    tokens are kept (lower: those tokens alone suffice)."""
    return _mean(d.sufficiency, idx)


@metric("comprehensiveness_random", "explain", higher_is_better=None, population=_explained)
def _comprehensiveness_random(d: ExplainedData, idx: IntArray | None) -> Any:
    """Comprehensiveness of a seeded random ranking of the same tokens (the reference)."""
    return _mean(d.comprehensiveness_random, idx)


@metric("sufficiency_random", "explain", higher_is_better=None, population=_explained)
def _sufficiency_random(d: ExplainedData, idx: IntArray | None) -> Any:
    """Sufficiency of a seeded random ranking of the same tokens (the reference)."""
    return _mean(d.sufficiency_random, idx)


@metric("comprehensiveness_gain", "explain", population=_explained)
def _comprehensiveness_gain(d: ExplainedData, idx: IntArray | None) -> Any:
    """Comprehensiveness minus a random ranking's, per example (higher: more faithful than
    chance; 0: no better than deleting random tokens)."""
    return _mean(d.comprehensiveness - d.comprehensiveness_random, idx)


@metric("sufficiency_gain", "explain", population=_explained)
def _sufficiency_gain(d: ExplainedData, idx: IntArray | None) -> Any:
    """A random ranking's sufficiency minus the attributions', per example (higher: the top
    tokens carry more of the prediction than random ones)."""
    return _mean(d.sufficiency_random - d.sufficiency, idx)


@metric("ig_delta_max", "explain", higher_is_better=False, ci=False)
def _ig_delta_max(d: ExplainData, idx: IntArray | None) -> Any:
    """Largest absolute convergence delta of integrated gradients over explained texts."""
    return float(np.abs(d.delta).max()) if d.delta.size else math.nan


@metric("ig_delta_mean", "explain", higher_is_better=False, ci=False)
def _ig_delta_mean(d: ExplainData, idx: IntArray | None) -> Any:
    """Mean absolute convergence delta of integrated gradients over explained texts."""
    return float(np.abs(d.delta).mean()) if d.delta.size else math.nan


@metric("ig_seconds", "explain", higher_is_better=None, ci=False)
def _ig_seconds(d: ExplainData, idx: IntArray | None) -> Any:
    """Mean seconds per explained example (both texts and the faithfulness passes)."""
    return float(d.seconds.mean()) if d.seconds.size else math.nan


EXPLAIN_METRICS: tuple[str, ...] = (
    "similarity_mean",
    "n",
    "n_explained",
    "comprehensiveness",
    "sufficiency",
    "comprehensiveness_random",
    "sufficiency_random",
    "comprehensiveness_gain",
    "sufficiency_gain",
    "ig_delta_max",
    "ig_delta_mean",
    "ig_seconds",
)


def batched_ece(labels: IntArray, probs: FloatArray, idx: IntArray, n_bins: int = 15) -> FloatArray:
    """Top-label ECE of each resample (rows of ``idx``), binned as
    :func:`expected_calibration_error` bins: for paired bootstraps of a calibration difference."""
    labels, probs, preds = _check_probs(labels, probs)
    conf = probs.max(axis=1)
    gap = (preds == labels).astype(np.float64) - conf
    return _batched_ece(_ece_bins(conf, n_bins), gap, np.atleast_2d(idx), n_bins)


def reliability_bins(
    labels: IntArray, probs: FloatArray, n_bins: int = 15
) -> list[dict[str, float]]:
    """Per non-empty confidence bin (the ECE's bins): its range, examples, mean confidence and
    accuracy; what a reliability diagram draws."""
    labels, probs, preds = _check_probs(labels, probs)
    conf = probs.max(axis=1)
    bins = _ece_bins(conf, n_bins)
    out = []
    for b in range(n_bins):
        members = bins == b
        count = int(members.sum())
        if not count:
            continue
        out.append(
            {
                "low": b / n_bins,
                "high": (b + 1) / n_bins,
                "n": float(count),
                "confidence": float(conf[members].mean()),
                "accuracy": float((preds[members] == labels[members]).mean()),
            }
        )
    return out


# --------------------------------------------------------------------------------------------------
# Paired comparisons (regression gate)


def _paired(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"paired outcomes must be equal 1-D arrays, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise DataError("cannot compare two runs on zero examples")
    return a, b


def paired_bootstrap_test(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float, float]:
    """Accuracy difference A - B on the same examples: ``(diff, low, high, p_value)``.

    The interval is the percentile interval of the resampled differences. The two-sided p-value
    shifts that distribution to the null (Efron & Tibshirani, ch. 16): the share of resamples with
    ``|d* - d| >= |d|``, counted as ``(1 + hits) / (1 + n_boot)`` so it is never exactly zero.
    """
    a, b = _paired(correct_a, correct_b)
    delta = a.astype(np.float64) - b.astype(np.float64)
    diff = float(delta.mean())
    dist = bootstrap_distribution(lambda idx: delta[idx].mean(axis=1), a.size, n_boot, seed)
    low, high = _percentile(dist, alpha)
    # A tiny tolerance keeps resamples equal to |d| (up to rounding) on the "as extreme" side.
    hits = int(np.count_nonzero(np.abs(dist - diff) >= abs(diff) - 1e-12))
    return diff, low, high, (1 + hits) / (1 + n_boot)


# Below this many discordant pairs the chi-square approximation is poor; use the exact test.
MCNEMAR_EXACT_BELOW = 25


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, float]:
    """McNemar's test on paired correctness: ``(statistic, p_value)``, two-sided.

    With ``b`` = A right/B wrong and ``c`` = A wrong/B right: when ``b + c < 25`` the exact binomial
    test (statistic ``min(b, c)``, p = ``min(1, 2 P[X <= min(b, c)])``, X ~ Bin(b + c, 1/2));
    otherwise the chi-square with continuity correction, ``(|b - c| - 1)^2 / (b + c)`` on 1 df.
    No discordant pairs gives ``(0.0, 1.0)``.
    """
    a, b_ = _paired(correct_a, correct_b)
    b = int(np.count_nonzero(a & ~b_))
    c = int(np.count_nonzero(~a & b_))
    m = b + c
    if m == 0:
        return 0.0, 1.0
    if m < MCNEMAR_EXACT_BELOW:
        low = min(b, c)
        tail = sum(math.comb(m, i) for i in range(low + 1)) / 2**m
        return float(low), min(1.0, 2.0 * tail)
    stat = (abs(b - c) - 1) ** 2 / m
    # Chi-square survival with 1 df: P[Z^2 >= x] = erfc(sqrt(x / 2)).
    return float(stat), math.erfc(math.sqrt(stat / 2.0))
