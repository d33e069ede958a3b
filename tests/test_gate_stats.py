"""The gate's statistics, checked by simulation: the cluster bootstrap's false-failure rate under
the null with clustered items, its power against a real regression, and the corrections."""

from __future__ import annotations

import numpy as np
import pytest

from bench.gate.stats import (
    Difference,
    adjust,
    corrected_level,
    decide_n,
    paired_difference,
    verdict,
)

ALPHA = 0.05


def _clustered_null(rng: np.random.Generator, clusters: int = 100, size: int = 10) -> tuple:
    """Paired correctness under the null (no difference in the population), with items that
    share a source: on each cluster the candidate is better or worse by a cluster-level amount
    that averages to zero over clusters, so items of a cluster move together."""
    # Symmetric around 0.5 and small enough never to be clipped: the candidate's expected
    # advantage is exactly zero over the population of clusters, and these 100 are a sample.
    base_p = rng.uniform(0.4, 0.6, clusters)
    effect = np.clip(rng.normal(0.0, 0.3, clusters), -0.35, 0.35)
    cand_p = base_p + effect
    ids = np.repeat(np.arange(clusters), size)
    base = (rng.random(clusters * size) < base_p[ids]).astype(float)
    cand = (rng.random(clusters * size) < cand_p[ids]).astype(float)
    return base, cand, ids


def _verdict(base: np.ndarray, cand: np.ndarray, clusters: object, seed: int, n_boot: int) -> str:
    d = paired_difference(base, cand, clusters, margin=0.0, n_boot=n_boot, seed=seed, alpha=ALPHA)  # type: ignore[arg-type]
    return verdict(d.p_pass(), d.p_fail(), ALPHA)


def test_cluster_bootstrap_false_failure_rate_under_the_null() -> None:
    rng = np.random.default_rng(2026)
    gates = 2000
    cluster_fail = naive_fail = 0
    for g in range(gates):
        base, cand, ids = _clustered_null(rng)
        cluster_fail += _verdict(base, cand, ids, g, 400) == "fail"
        naive_fail += _verdict(base, cand, None, g, 400) == "fail"
    cluster_rate, naive_rate = cluster_fail / gates, naive_fail / gates
    print(
        f"\nfalse-failure rate over {gates} null gates (100 clusters of 10, margin 0, "
        f"alpha {ALPHA}): cluster bootstrap {cluster_rate:.3f}, naive bootstrap {naive_rate:.3f}"
    )
    assert cluster_rate <= 0.07
    # The naive bootstrap ignores that items of a cluster move together: it fails far more.
    assert naive_rate > 2 * cluster_rate


def test_power_to_fail_a_candidate_three_points_worse() -> None:
    # n = 1,000 independent items, 10 % discordant pairs: 65 the baseline gets right and the
    # candidate wrong, 35 the other way: the candidate is 3 points worse.
    rng = np.random.default_rng(7)
    gates = 500
    cells = np.array([0.70, 0.065, 0.035, 0.20])  # both right, base only, cand only, both wrong
    fails = 0
    for g in range(gates):
        kind = rng.choice(4, size=1000, p=cells)
        base = np.isin(kind, (0, 1)).astype(float)
        cand = np.isin(kind, (0, 2)).astype(float)
        fails += _verdict(base, cand, None, g, 400) == "fail"
    power = fails / gates
    print(f"\npower to fail a candidate 3 points worse (n 1000, 10 % discordant): {power:.3f}")
    assert power >= 0.8


def test_verdicts_follow_the_interval_and_the_margin() -> None:
    rng = np.random.default_rng(0)
    base = (rng.random(2000) < 0.8).astype(float)
    same = base.copy()
    worse = np.where(rng.random(2000) < 0.15, 0.0, base)  # about 12 points worse
    d_same = paired_difference(base, same, margin=0.01, n_boot=500)
    assert (d_same.diff, d_same.low, d_same.high) == (0.0, 0.0, 0.0)
    assert verdict(d_same.p_pass(), d_same.p_fail(), ALPHA) == "pass"
    # Identical at margin 0: the CI touches -0 and the data cannot show non-inferiority.
    d_zero = paired_difference(base, same, margin=0.0, n_boot=500)
    assert verdict(d_zero.p_pass(), d_zero.p_fail(), ALPHA) == "inconclusive"
    d_worse = paired_difference(base, worse, margin=0.02, n_boot=500)
    assert d_worse.high < -0.02
    assert verdict(d_worse.p_pass(), d_worse.p_fail(), ALPHA) == "fail"
    # p < alpha exactly when the matching CI bound clears -margin.
    for d, margin in ((d_same, 0.01), (d_worse, 0.02)):
        assert (d.p_pass() < ALPHA) == (d.low > -margin)
        assert (d.p_fail() < ALPHA) == (d.high < -margin)


def test_seeds_widen_the_interval() -> None:
    rng = np.random.default_rng(1)
    n = 800
    truth = rng.random(n)
    one = lambda shift: (truth < 0.75 + shift).astype(float)  # noqa: E731
    base_seeds = np.stack([one(s) for s in (-0.04, 0.0, 0.04)])
    cand_seeds = np.stack([one(s) for s in (-0.03, 0.01, 0.05)])
    single = paired_difference(base_seeds[1], cand_seeds[1], n_boot=1000)
    several = paired_difference(base_seeds, cand_seeds, n_boot=1000)
    assert several.high - several.low > 1.5 * (single.high - single.low)


def test_holm_and_bh_against_statsmodels_formulas() -> None:
    p = [0.01, 0.04, 0.03, 0.005, 0.2]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04, 0.2 times 5, 4, 3, 2, 1, running max.
    assert adjust(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.2])
    # BH: sorted p_(i) * m / i, running min from the top.
    assert adjust(p, "bh") == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.2])
    assert adjust(p, "none") == p
    scipy_stats = pytest.importorskip("scipy.stats")
    if hasattr(scipy_stats, "false_discovery_control"):
        assert adjust(p, "bh") == pytest.approx(list(scipy_stats.false_discovery_control(p)))


def test_what_would_decide_an_inconclusive_check() -> None:
    rng = np.random.default_rng(3)
    base = (rng.random(200) < 0.8).astype(float)
    cand = np.where(rng.random(200) < 0.03, 0.0, base)
    d = paired_difference(base, cand, margin=0.05, n_boot=1000)
    mde, n = decide_n(d, 0.05, ALPHA)
    assert mde > 0 and (n is None or n > 0)
    if verdict(d.p_pass(), d.p_fail(), ALPHA) == "inconclusive":
        assert n is not None and n > 200


def _difference(diff: float, low: float, high: float, n: int) -> Difference:
    return Difference(baseline=0.8, candidate=0.8 + diff, diff=diff, low=low, high=high,
                      se=(high - low) / 3.92, n=n, n_clusters=n, n_boot=2000, below=0.0,
                      above=0.0)  # fmt: skip


def test_examples_to_decide_by_hand() -> None:
    # 80 % CI [-0.0625, -0.0125] wholly below margin 0, but Holm over 4 checks asks each for
    # p < 0.2 / 4: the half-width toward the margin, 0.025, grows by z(0.975) / z(0.9) =
    # 1.95996 / 1.28155 to 0.038234, and 80 * (0.038234 / 0.0375)^2 = 83.16 examples do not
    # quite decide it.
    d = _difference(-0.0375, -0.0625, -0.0125, n=80)
    level = corrected_level(0.2, 4, "holm")
    assert level == pytest.approx(0.05)
    assert decide_n(d, 0.0, 0.2, level)[1] == 84
    # Unadjusted this CI has decided already; whatever the formula, more than n.
    assert decide_n(d, 0.0, 0.2)[1] == 81
    # A bound exactly on the margin does not decide: 60 examples are not enough, 61 may be.
    assert decide_n(_difference(0.0, -0.05, 0.05, n=60), 0.05, 0.05)[1] == 61
    # Heading for a pass, the lower half counts: 60 * (0.05 / 0.03)^2 = 166.7.
    assert decide_n(_difference(0.0, -0.05, 0.08, n=60), 0.03, 0.05)[1] == 167
    assert decide_n(_difference(-0.03, -0.08, 0.02, n=60), 0.03, 0.05)[1] is None


def test_corrected_level_is_enough_whatever_the_other_checks() -> None:
    rng = np.random.default_rng(4)
    for _ in range(500):
        k = int(rng.integers(1, 8))
        p = rng.random(k) ** 3
        for method in ("holm", "bh", "none"):
            level = corrected_level(0.05, k, method)  # type: ignore[arg-type]
            adjusted = adjust(list(p), method)  # type: ignore[arg-type]
            assert all(a < 0.05 for a, raw in zip(adjusted, p, strict=True) if raw < level)
    assert corrected_level(0.05, 4, "bh") == corrected_level(0.05, 4, "holm") == 0.0125
    assert corrected_level(0.05, 4, "none") == 0.05


def test_examples_to_decide_against_the_bootstrap() -> None:
    # 100 examples, 10 the baseline alone gets right and 4 the candidate alone: 6 points worse,
    # margin 0.02, inconclusive. The same examples repeated t times keep the point estimate;
    # the bootstrap decides them near the predicted size, at the corrected level and without.
    base = np.array([1.0] * 10 + [0.0] * 4 + [1.0] * 70 + [0.0] * 16)
    cand = np.array([0.0] * 10 + [1.0] * 4 + [1.0] * 70 + [0.0] * 16)
    margin = 0.02
    d = paired_difference(base, cand, margin=margin, n_boot=4000, alpha=ALPHA)
    assert verdict(d.p_pass(), d.p_fail(), ALPHA) == "inconclusive"
    for level in (ALPHA, corrected_level(ALPHA, 4, "holm")):
        needed = decide_n(d, margin, ALPHA, level)[1]
        assert needed is not None
        decided = {}
        for t in (int(0.7 * needed / 100), -(-int(1.3 * needed) // 100)):
            assert t >= 2
            dt = paired_difference(np.tile(base, t), np.tile(cand, t), margin=margin,
                                   n_boot=4000, seed=t, alpha=ALPHA)  # fmt: skip
            decided[t * 100] = verdict(dt.p_pass(), dt.p_fail(), level)
        print(f"\nlevel {level:g}: ~{needed} would decide; verdicts by size {decided}")
        assert list(decided.values()) == ["inconclusive", "fail"]
