"""Metrics against scikit-learn / scipy / hand computations; bootstrap and paired-test behaviour."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest

from bench.errors import DataError, SpecError
from bench.metrics import (
    KNOWN_METRICS,
    MetricValue,
    accuracy,
    bootstrap_ci,
    brier_score,
    compute_metrics,
    expected_calibration_error,
    macro_f1,
    majority_rate,
    mcnemar_test,
    paired_bootstrap_test,
    per_class_prf,
    predictions,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def random_case(seed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n)
    return labels, probs


def loop_ece(labels: np.ndarray, probs: np.ndarray, n_bins: int) -> float:
    """Straightforward reference: bin i holds i/n_bins < conf <= (i+1)/n_bins."""
    total = 0.0
    n = len(labels)
    for i in range(n_bins):
        lo, hi = i / n_bins, (i + 1) / n_bins
        members = []
        for y, p in zip(labels, probs, strict=True):
            conf = float(max(p))
            if lo < conf <= hi:
                members.append((int(np.argmax(p)) == y, conf))
        if members:
            acc = sum(c for c, _ in members) / len(members)
            mean_conf = sum(c for _, c in members) / len(members)
            total += len(members) / n * abs(acc - mean_conf)
    return total


# --------------------------------------------------------------------------------------------------
# Point metrics vs scikit-learn


@pytest.mark.parametrize("k", [2, 3, 5, 7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_metrics_match_sklearn(k: int, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = 300
    labels = rng.integers(0, k, n)
    preds = rng.integers(0, k, n)
    # Class k-1 is never predicted; class 0 never appears in the labels (for k > 2).
    preds[preds == k - 1] = 0
    if k > 2:
        labels[labels == 0] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, s = sklearn_metrics.precision_recall_fscore_support(
            labels, preds, labels=list(range(k)), zero_division=0
        )
        want_macro = sklearn_metrics.f1_score(
            labels, preds, average="macro", labels=list(range(k)), zero_division=0
        )
    got = per_class_prf(labels, preds, k)
    np.testing.assert_allclose(got["precision"], p, rtol=1e-12, atol=0)
    np.testing.assert_allclose(got["recall"], r, rtol=1e-12, atol=0)
    np.testing.assert_allclose(got["f1"], f, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(got["support"], s)
    np.testing.assert_allclose(macro_f1(labels, preds, k), want_macro, rtol=1e-12, atol=0)
    np.testing.assert_allclose(
        accuracy(labels, preds), sklearn_metrics.accuracy_score(labels, preds), rtol=1e-12
    )
    assert got["f1"][k - 1] == 0.0 or (labels == k - 1).sum() == 0  # never predicted -> f1 0
    if k > 2:
        assert got["recall"][0] == 0.0 and got["support"][0] == 0


def test_compute_metrics_points_match_sklearn_and_brier() -> None:
    labels, probs = random_case(3, 500, 4)
    preds = probs.argmax(axis=1)
    names = ["a", "b", "c", "d"]
    out = compute_metrics(labels, probs, names, ["accuracy", "macro_f1", "brier", "per_class"], 0)
    p, r, f, _ = sklearn_metrics.precision_recall_fscore_support(
        labels, preds, labels=list(range(4)), zero_division=0
    )
    assert out["accuracy"].value == pytest.approx(sklearn_metrics.accuracy_score(labels, preds))
    np.testing.assert_allclose(
        out["macro_f1"].value,
        sklearn_metrics.f1_score(labels, preds, average="macro", labels=list(range(4))),
        rtol=1e-12,
    )
    for i, name in enumerate(names):
        assert out[f"precision/{name}"].value == pytest.approx(p[i], rel=1e-12)
        assert out[f"recall/{name}"].value == pytest.approx(r[i], rel=1e-12)
        assert out[f"f1/{name}"].value == pytest.approx(f[i], rel=1e-12)
    onehot = np.eye(4)[labels]
    want_brier = float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))
    assert out["brier"].value == pytest.approx(want_brier, rel=1e-12)
    assert brier_score(labels, probs) == pytest.approx(want_brier, rel=1e-12)
    assert all(v.low is None and v.high is None for v in out.values())


def test_argmax_ties_go_to_lowest_index() -> None:
    probs = np.array([[0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [0.1, 0.2, 0.7]])
    np.testing.assert_array_equal(predictions(probs), [0, 1, 2])


def test_majority_rate() -> None:
    assert majority_rate(np.array([0, 1, 1, 2, 1]), 4) == pytest.approx(0.6)
    assert majority_rate(np.array([3, 3]), 4) == 1.0


# --------------------------------------------------------------------------------------------------
# ECE


def test_ece_hand_computed_tiny_case() -> None:
    # Two bins (0, .5], (.5, 1]. Confidences .9 right, .7 wrong, .6 right land in the upper bin:
    # |2/3 - 2.2/3| * 3/4 = 0.05. The tie [.5, .5] predicts class 0 (right), conf .5 on the edge ->
    # lower bin: |1 - .5| * 1/4 = 0.125. Total 0.175.
    labels = np.array([0, 0, 1, 0])
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.4, 0.6], [0.5, 0.5]])
    assert expected_calibration_error(labels, probs, n_bins=2) == pytest.approx(0.175, abs=1e-15)


@pytest.mark.parametrize("n_bins", [1, 5, 10, 15])
@pytest.mark.parametrize("k", [2, 3, 10])
def test_ece_matches_loop_reference(n_bins: int, k: int) -> None:
    labels, probs = random_case(k * 31 + n_bins, 400, k)
    # Put some confidences exactly on bin edges to exercise the right-closed rule.
    edges = np.arange(1, n_bins + 1) / n_bins
    for j, e in enumerate(edges[edges >= 1 / k + 1e-9][:5]):
        row = np.full(k, (1 - e) / (k - 1))
        row[j % k] = e
        probs[j] = row
    got = expected_calibration_error(labels, probs, n_bins=n_bins)
    np.testing.assert_allclose(got, loop_ece(labels, probs, n_bins), rtol=1e-12, atol=1e-15)
    out = compute_metrics(labels, probs, [str(i) for i in range(k)], ["ece"], 0)
    assert out["ece"].value == pytest.approx(
        expected_calibration_error(labels, probs, n_bins=15), rel=1e-12
    )


def test_ece_perfectly_calibrated_and_overconfident() -> None:
    # Always confidence 1 and always right: 0. Always confidence 1 and always wrong: 1.
    labels = np.array([0, 1, 0])
    onehot = np.eye(2)[labels]
    assert expected_calibration_error(labels, onehot) == 0.0
    assert expected_calibration_error(1 - labels, onehot) == 1.0


# --------------------------------------------------------------------------------------------------
# Bootstrap


def test_bootstrap_reproducible_and_seed_dependent() -> None:
    rng = np.random.default_rng(7)
    correct = rng.random(800) < 0.7

    def stat(idx: np.ndarray) -> float:
        return float(correct[idx].mean())

    a = bootstrap_ci(stat, correct.size, n_boot=300, seed=5)
    b = bootstrap_ci(stat, correct.size, n_boot=300, seed=5)
    c = bootstrap_ci(stat, correct.size, n_boot=300, seed=6)
    assert a == b
    assert a != c


def test_bootstrap_ci_agrees_with_compute_metrics_resamples() -> None:
    # The callable path and the vectorised path draw the same resamples under a seed.
    labels, probs = random_case(11, 1000, 3)
    correct = probs.argmax(axis=1) == labels
    lo, hi = bootstrap_ci(lambda idx: float(correct[idx].mean()), labels.size, 400, seed=3)
    mv = compute_metrics(labels, probs, ["x", "y", "z"], ["accuracy"], n_boot=400, seed=3)
    assert mv["accuracy"].low == pytest.approx(lo, abs=1e-15)
    assert mv["accuracy"].high == pytest.approx(hi, abs=1e-15)


def test_bootstrap_ci_contains_point_and_matches_normal_approximation() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    labels = rng.integers(0, 2, n)
    flip = rng.random(n) < 0.2
    preds = np.where(flip, 1 - labels, labels)
    probs = np.eye(2)[preds] * 0.8 + 0.1
    out = compute_metrics(labels, probs, ["neg", "pos"], ["accuracy", "macro_f1", "ece"], 2000, 0)
    for name, mv in out.items():
        assert mv.low is not None and mv.high is not None
        assert mv.low <= mv.value <= mv.high, name
    acc = out["accuracy"]
    assert acc.low is not None and acc.high is not None
    half = 1.959964 * math.sqrt(acc.value * (1 - acc.value) / n)
    assert (acc.high - acc.low) / 2 == pytest.approx(half, rel=0.12)
    assert (acc.low + acc.high) / 2 == pytest.approx(acc.value, abs=half * 0.2)


def test_bootstrap_width_shrinks_with_n() -> None:
    widths = []
    for n in (200, 1800):
        labels, probs = random_case(n, n, 2)
        mv = compute_metrics(labels, probs, ["a", "b"], ["accuracy"], 500, 0)["accuracy"]
        assert mv.low is not None and mv.high is not None
        widths.append(mv.high - mv.low)
    # Width scales like 1/sqrt(n): 9x the data gives about a third of the width.
    assert widths[1] < widths[0] * 0.5
    assert widths[1] == pytest.approx(widths[0] / 3, rel=0.3)


def test_bootstrap_accuracy_is_fast() -> None:
    labels, probs = random_case(0, 5000, 3)
    start = time.perf_counter()
    compute_metrics(labels, probs, ["a", "b", "c"], ["accuracy"], n_boot=1000, seed=0)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"1000 resamples of 5000 took {elapsed:.2f}s"


def test_per_class_cis_and_order() -> None:
    labels, probs = random_case(4, 600, 3)
    out = compute_metrics(labels, probs, ["n", "e", "c"], ["ece", "per_class", "accuracy"], 200)
    assert list(out) == [
        "ece",
        "precision/n",
        "precision/e",
        "precision/c",
        "recall/n",
        "recall/e",
        "recall/c",
        "f1/n",
        "f1/e",
        "f1/c",
        "accuracy",
    ]
    for mv in out.values():
        assert mv.low is not None and mv.high is not None and mv.low <= mv.high
    assert out["accuracy"].to_dict() == {
        "value": out["accuracy"].value,
        "low": out["accuracy"].low,
        "high": out["accuracy"].high,
    }


# --------------------------------------------------------------------------------------------------
# Errors


def test_unknown_metric_is_one_line_spec_error() -> None:
    labels, probs = random_case(0, 10, 2)
    with pytest.raises(SpecError) as err:
        compute_metrics(labels, probs, ["a", "b"], ["accuracy", "auroc"])
    msg = str(err.value)
    assert "\n" not in msg and "auroc" in msg
    assert all(name in msg for name in KNOWN_METRICS)


def test_empty_input_is_data_error() -> None:
    with pytest.raises(DataError):
        compute_metrics(np.array([], dtype=int), np.zeros((0, 2)), ["a", "b"], ["accuracy"])
    with pytest.raises(DataError):
        accuracy(np.array([], dtype=int), np.array([], dtype=int))
    with pytest.raises(DataError):
        mcnemar_test(np.array([], dtype=bool), np.array([], dtype=bool))


def test_shape_and_range_errors() -> None:
    with pytest.raises(ValueError):
        compute_metrics(np.array([0, 1]), np.full((3, 2), 0.5), ["a", "b"], ["accuracy"])
    with pytest.raises(ValueError):
        compute_metrics(np.array([0, 2]), np.full((2, 2), 0.5), ["a", "b"], ["accuracy"])
    with pytest.raises(ValueError):
        compute_metrics(np.array([0, 1]), np.full((2, 2), 0.5), ["a"], ["accuracy"])


def test_metric_value_is_frozen() -> None:
    mv = MetricValue(0.5, 0.4, 0.6)
    with pytest.raises(AttributeError):
        mv.value = 0.7  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------
# Paired tests


def test_paired_bootstrap_vs_normal_approximation() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(2)
    n = 3000
    a = rng.random(n) < 0.82
    # B agrees with A except on a random 10% where it is independently right 60% of the time.
    b = np.where(rng.random(n) < 0.1, rng.random(n) < 0.6, a)
    diff, low, high, p = paired_bootstrap_test(a, b, n_boot=2000, seed=0)
    delta = a.astype(float) - b.astype(float)
    assert diff == pytest.approx(delta.mean(), abs=1e-15)
    se = delta.std(ddof=1) / math.sqrt(n)
    assert (high - low) / 2 == pytest.approx(1.959964 * se, rel=0.15)
    assert low <= diff <= high
    want_p = 2 * stats.norm.sf(abs(diff) / se)
    assert abs(p - want_p) < 0.02 + 0.3 * want_p
    assert paired_bootstrap_test(a, b, n_boot=2000, seed=0) == (diff, low, high, p)


def test_paired_bootstrap_identical_and_clear_difference() -> None:
    rng = np.random.default_rng(3)
    a = rng.random(500) < 0.7
    diff, low, high, p = paired_bootstrap_test(a, a.copy(), 500, 0)
    assert (diff, low, high, p) == (0.0, 0.0, 0.0, 1.0)
    b = a & (rng.random(500) < 0.7)  # B loses ~30% of A's right answers
    diff, low, high, p = paired_bootstrap_test(a, b, 500, 0)
    assert diff > 0.1 and low > 0
    assert p == pytest.approx(1 / 501)


@pytest.mark.parametrize(("b", "c"), [(0, 3), (2, 5), (7, 7), (12, 3), (0, 24)])
def test_mcnemar_exact_matches_scipy_binomtest(b: int, c: int) -> None:
    stats = pytest.importorskip("scipy.stats")
    both, neither = 40, 10
    a = np.array([True] * both + [True] * b + [False] * c + [False] * neither)
    bb = np.array([True] * both + [False] * b + [True] * c + [False] * neither)
    stat, p = mcnemar_test(a, bb)
    assert stat == min(b, c)
    want = stats.binomtest(b, b + c, 0.5).pvalue
    assert p == pytest.approx(want, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize(("b", "c"), [(30, 15), (20, 20), (5, 40), (100, 70)])
def test_mcnemar_chi_square_matches_hand_and_scipy(b: int, c: int) -> None:
    stats = pytest.importorskip("scipy.stats")
    a = np.array([True] * b + [False] * c + [True] * 9)
    bb = np.array([False] * b + [True] * c + [True] * 9)
    stat, p = mcnemar_test(a, bb)
    want_stat = (abs(b - c) - 1) ** 2 / (b + c)
    assert stat == pytest.approx(want_stat, rel=1e-12)
    assert p == pytest.approx(stats.chi2.sf(want_stat, 1), rel=1e-9)
    if (b, c) == (30, 15):
        assert stat == pytest.approx(196 / 45)


def test_mcnemar_no_discordant_pairs() -> None:
    a = np.array([True, False, True])
    assert mcnemar_test(a, a) == (0.0, 1.0)


def test_random_cases_agree_with_sklearn_property() -> None:
    # A cheap property sweep: many small random cases, including degenerate ones (n = 1, one class).
    rng = np.random.default_rng(99)
    for _ in range(100):
        k = int(rng.integers(2, 6))
        n = int(rng.integers(1, 30))
        labels = rng.integers(0, int(rng.integers(1, k + 1)), n)
        preds = rng.integers(0, k, n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = sklearn_metrics.f1_score(
                labels, preds, average="macro", labels=list(range(k)), zero_division=0
            )
        np.testing.assert_allclose(macro_f1(labels, preds, k), want, rtol=1e-12, atol=1e-15)
