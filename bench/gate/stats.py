"""The statistics of a regression gate: a paired, cluster-aware (and seed-aware) bootstrap of a
candidate-minus-baseline difference, a verdict by a non-inferiority margin, multiplicity
corrections across checks, and what it would take to decide an inconclusive check.

Everything works on per-example values already aligned by example: ``base[i]`` and ``cand[i]``
are the two models' values on example ``i`` (1/0 correctness, or any per-example score whose
mean is the metric), ``clusters[i]`` the cluster example ``i`` belongs to (examples sharing a
source passage, contrastive revisions of one claim). A resample draws clusters with replacement
(each example its own cluster when there are none), keeps the pairing, and recomputes the
difference of means; with several seeds per model (``base`` and ``cand`` of shape
(seeds, examples)), each resample also draws seeds, independently for the two models.

Verdicts, for a metric where higher is better (a lower-is-better metric is negated first), with
``d`` = candidate - baseline and margin ``m`` >= 0:

- ``pass``: the CI's lower bound is above ``-m`` (non-inferior);
- ``fail``: the CI's upper bound is below ``-m`` (worse by more than the margin);
- ``inconclusive``: otherwise (the data cannot tell).

Each bound has a one-sided bootstrap p-value (twice the share of resamples on the wrong side of
``-m``, so ``p < alpha`` exactly when the bound clears ``-m``); Holm or Benjamini-Hochberg adjust
them across checks before the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Verdict = Literal["pass", "fail", "inconclusive"]
Correction = Literal["holm", "bh", "none"]

# Resample matrices are drawn in chunks of at most this many elements (memory stays ~64 MB).
_CHUNK = 1 << 23


@dataclass(frozen=True)
class Difference:
    """``candidate - baseline`` with its bootstrap distribution's summary."""

    baseline: float
    candidate: float
    diff: float
    low: float
    high: float
    se: float
    n: int
    n_clusters: int
    n_boot: int
    # Share of resamples with d* <= -margin and d* >= -margin (for the one-sided p-values).
    below: float
    above: float

    def p_pass(self) -> float:
        """One-sided p-value against "worse by the margin or more" (small: non-inferior)."""
        return min(1.0, 2.0 * self.below)

    def p_fail(self) -> float:
        """One-sided p-value against "within the margin" (small: worse than the margin)."""
        return min(1.0, 2.0 * self.above)


def cluster_ids(clusters: Sequence[object] | None, n: int) -> np.ndarray:
    """Integer ids 0..K-1 for cluster labels (each example its own cluster when None)."""
    if clusters is None:
        return np.arange(n, dtype=np.int64)
    if len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster labels for {n} examples")
    _, ids = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    return np.asarray(ids, dtype=np.int64)


def paired_difference(
    base: np.ndarray,
    cand: np.ndarray,
    clusters: Sequence[object] | None = None,
    *,
    margin: float = 0.0,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Difference:
    """Bootstrap of mean(cand) - mean(base) over clusters (and seeds, for 2-D inputs).

    ``base`` and ``cand``: shape (n,) or (seeds, n), paired by column. ``statistic``, when
    given, replaces the mean: it maps a (b, n) matrix of resampled example indices and a model
    index (0 base, 1 cand) to b metric values (used for metrics that are not means, such as
    macro-F1); it cannot be combined with seeds.
    """
    a = np.atleast_2d(np.asarray(base, dtype=np.float64))
    c = np.atleast_2d(np.asarray(cand, dtype=np.float64))
    if a.shape[1] != c.shape[1]:
        raise ValueError(f"paired values of different lengths: {a.shape[1]} and {c.shape[1]}")
    n = a.shape[1]
    if n == 0:
        raise ValueError("no paired examples")
    if n_boot < 1:
        raise ValueError("n_boot must be positive")
    ids = cluster_ids(clusters, n)
    k = int(ids.max()) + 1
    rng = np.random.default_rng(seed)
    if statistic is not None:
        if a.shape[0] != 1 or c.shape[0] != 1:
            raise ValueError("a custom statistic takes one seed per model")
        point_a = float(statistic(np.arange(n)[None, :], np.zeros(1, dtype=np.int64))[0])
        point_c = float(statistic(np.arange(n)[None, :], np.ones(1, dtype=np.int64))[0])
        dist = _custom_distribution(statistic, ids, k, n_boot, rng)
    else:
        point_a, point_c = float(a.mean()), float(c.mean())
        dist = _mean_distribution(a, c, ids, k, n_boot, rng)
    diff = point_c - point_a
    low, high = np.quantile(dist, [alpha / 2.0, 1.0 - alpha / 2.0])
    threshold = -margin
    return Difference(
        baseline=point_a,
        candidate=point_c,
        diff=diff,
        low=float(low),
        high=float(high),
        se=float(dist.std(ddof=1)) if n_boot > 1 else 0.0,
        n=n,
        n_clusters=k,
        n_boot=n_boot,
        below=float(np.mean(dist <= threshold + 1e-12)),
        above=float(np.mean(dist >= threshold - 1e-12)),
    )


def _mean_distribution(
    a: np.ndarray, c: np.ndarray, ids: np.ndarray, k: int, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Resampled mean differences: clusters drawn with replacement (the same draw for both
    models: paired), seeds drawn independently per model. Sums per cluster make each resample
    O(clusters), whatever the cluster sizes."""
    sa, sc = a.shape[0], c.shape[0]
    # (seeds, clusters) sums, and examples per cluster.
    sum_a = np.stack([np.bincount(ids, weights=row, minlength=k) for row in a])
    sum_c = np.stack([np.bincount(ids, weights=row, minlength=k) for row in c])
    size = np.bincount(ids, minlength=k).astype(np.float64)
    out = np.empty(n_boot)
    chunk = max(1, _CHUNK // max(k, 1))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        pick = rng.integers(0, k, size=(b, k))
        seeds_a = rng.integers(0, sa, size=b) if sa > 1 else np.zeros(b, dtype=np.int64)
        seeds_c = rng.integers(0, sc, size=b) if sc > 1 else np.zeros(b, dtype=np.int64)
        denom = size[pick].sum(axis=1)
        # A resampled mean over the drawn clusters' examples; with several seeds, one drawn
        # seed's model per resample (the seed-to-seed spread enters the interval).
        num_a = np.take_along_axis(sum_a[seeds_a], pick, axis=1).sum(axis=1)
        num_c = np.take_along_axis(sum_c[seeds_c], pick, axis=1).sum(axis=1)
        out[done : done + b] = (num_c - num_a) / denom
        done += b
    return out


def _custom_distribution(
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    ids: np.ndarray,
    k: int,
    n_boot: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Resampled differences of a non-mean statistic (macro-F1, ECE): clusters drawn with
    replacement and expanded to their examples; resamples of equal size (no clusters, or
    clusters of one size) are computed as a batch, others one at a time."""
    members = [np.flatnonzero(ids == j) for j in range(k)]
    out = np.empty(n_boot)
    for start in range(0, n_boot, 64):
        rows = []
        for _ in range(min(64, n_boot - start)):
            pick = rng.integers(0, k, size=k)
            rows.append(np.concatenate([members[j] for j in pick]))
        width = max(len(r) for r in rows)
        if any(len(r) != width for r in rows):
            # Unequal cluster sizes: compute row by row.
            vals = [
                float(statistic(r[None, :], np.ones(1, dtype=np.int64))[0])
                - float(statistic(r[None, :], np.zeros(1, dtype=np.int64))[0])
                for r in rows
            ]
        else:
            idx = np.stack(rows)
            ones = np.ones(len(rows), dtype=np.int64)
            vals = list(statistic(idx, ones) - statistic(idx, ones * 0))
        out[start : start + len(rows)] = vals
    return out


def verdict(p_pass: float, p_fail: float, alpha: float) -> Verdict:
    if p_pass < alpha:
        return "pass"
    if p_fail < alpha:
        return "fail"
    return "inconclusive"


def adjust(p_values: Sequence[float], method: Correction) -> list[float]:
    """Adjusted p-values: Holm's step-down (family-wise error) or Benjamini-Hochberg's step-up
    (false discovery rate); ``none`` returns them as they are."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0 or method == "none":
        return [float(x) for x in p]
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adj = np.maximum.accumulate((m - np.arange(m)) * ranked)
    elif method == "bh":
        adj = np.minimum.accumulate(m / np.arange(m, 0, -1) * ranked[::-1])[::-1]
    else:
        raise ValueError(f"unknown correction {method!r}")
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return [float(x) for x in out]


def corrected_level(alpha: float, checks: int, method: Correction) -> float:
    """The level a check's own p-value must be under for its adjusted p-value to be under
    ``alpha`` whatever the other checks' p-values: ``alpha / checks`` for Holm and for
    Benjamini-Hochberg (both adjust a p-value by at most the number of checks corrected
    together: the Bonferroni bound), ``alpha`` uncorrected."""
    return alpha if method == "none" else alpha / max(1, checks)


def decide_n(
    d: Difference, margin: float, alpha: float, level: float | None = None
) -> tuple[float, int | None]:
    """(the minimum detectable difference from -margin at this n, with 80 % power; the number
    of examples at which an inconclusive check would decide if the point estimate held, or None
    when it sits on the margin).

    ``alpha`` is the level of ``d``'s CI; ``level`` the level the check's p-value must clear
    (after correction across checks: ``corrected_level``), ``alpha`` when not given. The CI's
    half-width on the side that faces ``-margin``, rescaled from ``alpha`` to ``level`` and
    shrinking as 1/sqrt(n), must fall strictly short of the distance from the point estimate
    to ``-margin`` (a bound exactly on it does not decide); the check is undecided at ``n``, so
    the answer is never below ``n + 1``.
    """
    level = alpha if level is None else level
    z_ci, z = _z(1.0 - alpha / 2.0), _z(1.0 - level / 2.0)
    mde = (z + _z(0.8)) * d.se
    gap = d.diff + margin  # above 0: heading for a pass; below: for a fail
    half = d.diff - d.low if gap > 0 else d.high - d.diff
    if abs(gap) <= 1e-12 or half <= 0:
        return mde, None
    needed = d.n * (half * z / z_ci / abs(gap)) ** 2
    return mde, max(d.n + 1, math.floor(needed) + 1)


def _z(q: float) -> float:
    """The standard normal quantile."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(q)
