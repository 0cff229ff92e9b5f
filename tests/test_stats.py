"""videolt.evaluate.stats: the weighted bootstrap equals real resampling, and its intervals cover."""

from __future__ import annotations

import numpy as np
import pytest

from videolt.evaluate.metrics import average_precision, group_map
from videolt.evaluate.stats import (
    bootstrap_difference,
    bootstrap_map,
    paired_seed_comparison,
    resample_counts,
    resampled_average_precision,
)

GROUPS = {"head": np.array([0, 1]), "medium": np.array([2, 3]), "tail": np.array([4, 5])}


def naive_resampled_ap(scores: np.ndarray, targets: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Build every resampled test set for real (rows in their original order) and compute AP."""
    rows = [np.repeat(np.arange(scores.shape[0]), r) for r in counts]
    return np.stack([average_precision(scores[idx], targets[idx]) for idx in rows], axis=1)


def long_tailed(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Six classes from common to rare (the last has 2 positives) plus one without positives."""
    rng = np.random.default_rng(seed)
    targets = rng.random((n, 7)) < np.array([0.5, 0.3, 0.1, 0.05, 0.02, 0.0, 0.0])
    targets[[3, n - 5], 5] = True
    scores = rng.random((n, 7)) + 0.6 * targets
    return scores, targets


def test_resample_counts_are_seeded_draws_of_n_rows() -> None:
    counts = resample_counts(50, 20, seed=3)
    assert counts.shape == (20, 50)
    assert (counts.sum(axis=1) == 50).all()
    np.testing.assert_array_equal(counts, resample_counts(50, 20, seed=3))
    assert not np.array_equal(counts, resample_counts(50, 20, seed=4))


@pytest.mark.parametrize("ties", ["none", "float64", "float32"])
def test_weighted_ap_equals_real_resampling(ties: str) -> None:
    scores, targets = long_tailed(700, seed=0)
    if ties == "float64":
        scores = np.round(scores * 8) / 8 + 0.01     # ties, not float32-exact: the argsort path
    elif ties == "float32":
        scores = (np.round(scores * 8) / 8).astype(np.float32)
    counts = resample_counts(700, 30, seed=1)
    np.testing.assert_allclose(resampled_average_precision(scores, targets, counts),
                               naive_resampled_ap(scores, targets, counts), rtol=0, atol=1e-12)


def test_weighted_ap_with_large_and_arbitrary_weights() -> None:
    scores, targets = long_tailed(150, seed=2)
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 4, size=(5, 150))
    counts[0, 10] = 300                                  # beyond uint8: wider weight dtype
    counts[1] = 1                                        # the test set itself
    result = resampled_average_precision(scores, targets, counts)
    np.testing.assert_allclose(result, naive_resampled_ap(scores, targets, counts), rtol=0, atol=1e-12)
    np.testing.assert_allclose(result[:, 1], average_precision(scores, targets), rtol=0, atol=1e-12)


def test_bootstrap_map_estimate_and_interval() -> None:
    scores, targets = long_tailed(300, seed=6)
    result = bootstrap_map(scores[:, :6], targets[:, :6], GROUPS, n_resamples=200, seed=0)
    point = group_map(average_precision(scores[:, :6], targets[:, :6]), GROUPS)
    assert set(result) == {"overall", "head", "medium", "tail"}
    assert result["overall"]["estimate"] == pytest.approx(average_precision(scores[:, :6], targets[:, :6]).mean())
    for name in GROUPS:
        assert result[name]["estimate"] == pytest.approx(point[name])
    for row in result.values():
        assert 0.0 <= row["low"] < row["high"] <= 1.0
        assert row["low"] <= row["estimate"] + 0.05 and row["estimate"] - 0.05 <= row["high"]
    assert result == bootstrap_map(scores[:, :6], targets[:, :6], GROUPS, n_resamples=200, seed=0)


def test_bootstrap_difference_is_paired() -> None:
    scores, targets = long_tailed(300, seed=7)
    scores, targets = scores[:, :6], targets[:, :6]
    same = bootstrap_difference(scores, scores, targets, GROUPS, n_resamples=50)
    for row in same.values():
        assert row["estimate"] == row["low"] == row["high"] == 0.0
        assert row["includes_zero"] is True
    worse = scores + np.random.default_rng(8).normal(scale=0.3, size=scores.shape)
    ab = bootstrap_difference(scores, worse, targets, GROUPS, n_resamples=100)
    ba = bootstrap_difference(worse, scores, targets, GROUPS, n_resamples=100)
    assert ab["overall"]["estimate"] > 0
    assert ab["overall"]["includes_zero"] is False
    assert ab["overall"]["low"] == pytest.approx(-ba["overall"]["high"])


def test_difference_interval_covers_the_true_difference() -> None:
    """Simulated test sets from two fixed score models; the 95% interval should cover ~95% of the time."""
    rng = np.random.default_rng(11)
    n, c = 300, 5
    prevalence = np.array([0.3, 0.2, 0.1, 0.08, 0.05])

    def draw() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        targets = rng.random((n, c)) < prevalence
        shared = rng.normal(size=(n, c))                    # video difficulty, common to both models
        a = shared + rng.normal(scale=0.5, size=(n, c)) + 1.6 * targets
        b = shared + rng.normal(scale=0.5, size=(n, c)) + 1.2 * targets
        return a, b, targets

    def map_difference(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> float:
        return float(average_precision(a, t).mean() - average_precision(b, t).mean())

    truth = np.mean([map_difference(*draw()) for _ in range(1000)])
    groups = {"head": np.array([0, 1]), "tail": np.array([2, 3, 4])}
    covered = [
        (lambda r: r["low"] <= truth <= r["high"])(
            bootstrap_difference(*draw(), groups, n_resamples=200, seed=s)["overall"])
        for s in range(60)
    ]
    assert 0.85 <= np.mean(covered) <= 1.0
    assert truth > 0.01


def test_paired_seed_comparison_hand_numbers() -> None:
    a = {0: 0.500, 1: 0.520, 2: 0.510}
    b = {0: 0.490, 1: 0.500, 2: 0.515}
    result = paired_seed_comparison(a, b)                   # differences 0.01, 0.02, -0.005
    assert result["mean_difference"] == pytest.approx(0.025 / 3)
    assert result["std_difference"] == pytest.approx(np.sqrt((0.01 ** 2 + 0.02 ** 2 + 0.005 ** 2
                                                              - 3 * (0.025 / 3) ** 2) / 2))
    assert result["n_seeds"] == 3 and result["n_positive"] == 2
    assert np.isnan(paired_seed_comparison({1: 0.5}, {1: 0.4})["std_difference"])
    with pytest.raises(ValueError, match="only in A"):
        paired_seed_comparison({0: 0.5, 1: 0.5}, {0: 0.5})


def test_map_interval_sits_around_its_estimate_and_covers() -> None:
    """Over 200 simulated test sets of 1,000 videos, the 95% interval of a run's mAP covers the mean mAP
    of such test sets (Monte Carlo) 88-99% of the time, and each estimate lies in the middle 70% of its
    own interval. The regime is where resampling shifts mAP most: 120 classes with 3-15 test positives
    and weak, saturated scores rounded to float16 (many ties). A plain percentile interval fails both."""
    n, c = 1000, 120
    prevalence = np.geomspace(0.015, 0.003, c)
    signal = np.random.default_rng(0).uniform(0.3, 1.5, c)

    def test_set(seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        targets = rng.random((n, c)) < prevalence
        logits = targets * signal + rng.normal(size=(n, c)) - 6.0
        return (1 / (1 + np.exp(-logits))).astype(np.float16).astype(np.float32), targets

    truth = np.mean([average_precision(*test_set(10_000 + i)).mean() for i in range(600)])
    covered, central = [], []
    for seed in range(200):
        row = bootstrap_map(*test_set(seed), {}, n_resamples=100, seed=seed)["overall"]
        covered.append(row["low"] <= truth <= row["high"])
        central.append(0.15 < (row["estimate"] - row["low"]) / (row["high"] - row["low"]) < 0.85)
    print(f"coverage {np.mean(covered):.3f}, estimates in the middle 70%: {np.mean(central):.3f}")
    assert 0.88 <= np.mean(covered) <= 0.99
    assert all(central)
