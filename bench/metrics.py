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

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from bench.errors import DataError, SpecError

FloatArray = np.ndarray
IntArray = np.ndarray

# Aggregate metrics a task may request, plus "per_class" which adds precision/recall/f1 per label.
KNOWN_METRICS: tuple[str, ...] = ("accuracy", "macro_f1", "ece", "brier", "per_class")
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
# All metrics of a task


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
    labels, probs, preds = _check_probs(labels, probs)
    n, k = probs.shape
    if len(label_names) != k:
        raise ValueError(f"{len(label_names)} label names for {k} probability columns")
    if n_boot < 0:
        raise ValueError(f"n_boot must be non-negative, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")

    wanted = list(dict.fromkeys(metrics))
    names: list[str] = []
    points: list[float] = []
    correct = (preds == labels).astype(np.float64)
    codes = labels * k + preds
    conf = probs.max(axis=1)
    bins = _ece_bins(conf, n_bins)
    gap = correct - conf
    brier_each = _brier_per_example(labels, probs) if "brier" in wanted else None

    prec, rec, f1, _ = _prf_from_confusion(np.bincount(codes, minlength=k * k).reshape(k, k))
    for m in wanted:
        if m == "accuracy":
            names.append(m)
            points.append(float(correct.mean()))
        elif m == "macro_f1":
            names.append(m)
            points.append(float(f1.mean()))
        elif m == "ece":
            names.append(m)
            points.append(float(np.abs(np.bincount(bins, weights=gap, minlength=n_bins)).sum() / n))
        elif m == "brier":
            assert brier_each is not None
            names.append(m)
            points.append(float(brier_each.mean()))
        else:  # per_class
            for part, values in zip(PER_CLASS_PARTS, (prec, rec, f1), strict=True):
                names.extend(f"{part}/{name}" for name in label_names)
                points.extend(float(v) for v in values)

    if n_boot == 0:
        return {name: MetricValue(value) for name, value in zip(names, points, strict=True)}

    needs_confusion = "macro_f1" in wanted or "per_class" in wanted

    def stat_batch(idx: IntArray) -> FloatArray:
        cm = _batched_confusion(codes, idx, k) if needs_confusion else None
        bp, br, bf = _prf_from_confusion(cm)[:3] if cm is not None else (None, None, None)
        cols: list[FloatArray] = []
        for m in wanted:
            if m == "accuracy":
                cols.append(correct[idx].mean(axis=1)[:, None])
            elif m == "macro_f1":
                assert bf is not None
                cols.append(bf.mean(axis=1)[:, None])
            elif m == "ece":
                cols.append(_batched_ece(bins, gap, idx, n_bins)[:, None])
            elif m == "brier":
                assert brier_each is not None
                cols.append(brier_each[idx].mean(axis=1)[:, None])
            else:
                assert bp is not None and br is not None and bf is not None
                cols.extend([bp, br, bf])
        return np.concatenate(cols, axis=1)

    dist = bootstrap_distribution(stat_batch, n, n_boot, seed)
    lows, highs = np.quantile(dist, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    return {
        name: MetricValue(value, float(lo), float(hi))
        for name, value, lo, hi in zip(names, points, lows, highs, strict=True)
    }


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
