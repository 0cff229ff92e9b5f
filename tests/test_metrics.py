"""videolt.evaluate.metrics against scikit-learn, a direct loop over the formula, and hand values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from videolt.evaluate.metrics import average_precision, descending_order, group_map, summarize, topk_accuracy


def direct_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The AP formula written out: Python's stable sort by descending score, then sum TP(r)/r."""
    n, c = scores.shape
    out = np.zeros(c)
    for j in range(c):
        order = sorted(range(n), key=lambda i: -float(scores[i, j]))
        tp, total = 0, 0.0
        for r, i in enumerate(order, start=1):
            if targets[i, j]:
                tp += 1
                total += tp / r
        out[j] = total / max(int(targets[:, j].sum()), 1)
    return out


def random_case(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = rng.random((n, c)) < np.linspace(0.02, 0.4, c)
    scores = rng.random((n, c)) + 0.5 * targets
    return scores, targets


@pytest.mark.parametrize("dtype, shift", [(np.float64, 0.0), (np.float32, 0.0), (np.float32, -0.7)])
def test_matches_sklearn_without_ties(dtype: type, shift: float) -> None:
    scores, targets = random_case(3000, 12, seed=0)
    ranks = scores.argsort(axis=0).argsort(axis=0)      # distinct per column, same ranking
    scores = ((ranks + shift * len(ranks)) * 0.01).astype(dtype)   # negative shift: logit-like signs
    assert all(len(np.unique(scores[:, j])) == len(scores) for j in range(12))
    expected = [average_precision_score(targets[:, j], scores[:, j]) for j in range(12)]
    np.testing.assert_allclose(average_precision(scores, targets), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_matches_direct_loop_with_ties(dtype: type) -> None:
    scores, targets = random_case(300, 9, seed=1)
    scores = (np.round(scores * 6) / 6).astype(dtype)   # a handful of values: ties everywhere
    assert len(np.unique(scores[:, 0])) < 12
    np.testing.assert_allclose(average_precision(scores, targets), direct_ap(scores, targets), rtol=0, atol=1e-12)


def test_tied_rows_keep_row_order() -> None:
    scores = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    targets = np.array([[0, 1, 1], [1, 0, 1]])
    # class 0: the negative row 0 ranks first -> AP 1/2; class 1: positive first -> 1; class 2: both -> 1
    np.testing.assert_allclose(average_precision(scores, targets), [0.5, 1.0, 1.0])
    signed_zero = np.array([[-0.0], [0.0]], dtype=np.float32)
    np.testing.assert_allclose(average_precision(signed_zero, np.array([[0], [1]])), [0.5])


def test_hand_computed_ap_and_class_without_positives() -> None:
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    targets = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    np.testing.assert_allclose(average_precision(scores, targets), [(1 / 1 + 2 / 3) / 2, 0.0])


def test_many_classes_across_kernel_blocks_match_direct_loop() -> None:
    scores, targets = random_case(40, 150, seed=2)      # 150 classes: three blocks of the kernel
    scores = np.round(scores * 4) / 4                    # ties in every column
    targets[:, 7] = True                                 # a class of positives only: AP 1
    targets[:, 8] = False                                # a class without positives: AP 0
    ap = average_precision(scores, targets)
    np.testing.assert_allclose(ap, direct_ap(scores, targets), rtol=0, atol=1e-12)
    assert ap[7] == 1.0 and ap[8] == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_sharing_a_bin_are_placed_exactly(dtype: type) -> None:
    """Scores that differ only in low mantissa bits fall in one bin of the kernel's table and
    take its exact (value, row) comparison; mixed signs, signed zeros and far-apart values too."""
    rng = np.random.default_rng(5)
    eps = np.finfo(dtype).eps
    near = 1 + eps * rng.integers(0, 6, size=(400, 6))   # one bin, a handful of distinct values
    far = rng.choice([-3.0, -1e-30, -0.0, 0.0, 2.5, 1e30], size=(400, 6))
    scores = np.where(rng.random((400, 6)) < 0.5, near, far).astype(dtype)
    scores[:, 0] *= -1                                    # negative scores in one bin
    targets = rng.random((400, 6)) < np.array([0.01, 0.05, 0.2, 0.5, 0.9, 0.3])
    np.testing.assert_allclose(average_precision(scores, targets), direct_ap(scores, targets), rtol=0, atol=1e-12)


def test_empty_inputs() -> None:
    assert average_precision(np.zeros((0, 3), np.float32), np.zeros((0, 3), bool)).tolist() == [0.0, 0.0, 0.0]
    assert average_precision(np.zeros((5, 0)), np.zeros((5, 0), bool)).shape == (0,)


def test_descending_order_is_a_stable_sort_on_both_paths() -> None:
    rng = np.random.default_rng(3)
    exact = rng.integers(0, 5, size=(4, 50)).astype(np.float64)           # float32-exact: packed keys
    inexact = exact + 0.1                                                  # not float32-exact: argsort
    for columns in (exact, inexact, exact.astype(np.float32)):
        expected = np.stack([np.argsort(-row, kind="stable") for row in columns])
        np.testing.assert_array_equal(descending_order(columns), expected)


def test_topk_any_positive_rule() -> None:
    logits = np.array([[3.0, 2.0, 1.0],
                       [1.0, 3.0, 2.0],
                       [0.0, 1.0, 2.0],
                       [5.0, 0.0, 0.0]])
    targets = np.array([[0, 1, 0],
                        [1, 0, 1],
                        [0, 0, 0],
                        [1, 1, 0]])
    assert topk_accuracy(logits, targets, 1) == pytest.approx(1 / 4)    # only row 3
    assert topk_accuracy(logits, targets, 2) == pytest.approx(3 / 4)    # rows 0, 1 (its 2nd label), 3
    assert topk_accuracy(logits, targets, 5) == pytest.approx(3 / 4)    # k > C: any positive at all
    with pytest.raises(ValueError):
        topk_accuracy(logits, targets, 0)


def test_group_map_hand_case() -> None:
    ap = np.array([0.1, 0.2, 0.3, 0.6])
    groups = {"head": np.array([0]), "medium": np.array([1, 2]), "tail": np.array([3]), "none": np.array([], int)}
    result = group_map(ap, groups)
    assert result["head"] == pytest.approx(0.1)
    assert result["medium"] == pytest.approx(0.25)
    assert result["tail"] == pytest.approx(0.6)
    assert np.isnan(result["none"])


def test_summarize_same_for_logits_and_sigmoid_scores() -> None:
    rng = np.random.default_rng(4)
    targets = rng.random((120, 8)) < 0.2
    logits = rng.normal(size=(120, 8)) + 2 * targets
    groups = {"head": np.array([0, 1]), "medium": np.array([2, 3, 4]), "tail": np.array([5, 6, 7])}
    from_logits = summarize(logits, targets, groups)
    from_scores = summarize(1 / (1 + np.exp(-logits)), targets, groups)
    assert set(from_logits) == {"overall_map", "head_map", "medium_map", "tail_map", "acc1", "acc5"}
    for key, value in from_logits.items():
        assert value == pytest.approx(from_scores[key], abs=1e-12)
        assert 0.0 <= value <= 1.0
    ap = average_precision(logits, targets)
    assert from_logits["overall_map"] == pytest.approx(ap.mean())
    assert from_logits["medium_map"] == pytest.approx(ap[2:5].mean())
    assert from_logits["acc5"] == pytest.approx(topk_accuracy(logits, targets, 5))


@pytest.mark.parametrize("scores, targets", [
    (np.zeros((3, 2)), np.zeros((3, 3))),
    (np.array([[np.nan], [0.0]]), np.array([[1], [0]])),
    (np.zeros((2, 1)), np.array([[2], [0]])),
])
def test_rejects_bad_input(scores: np.ndarray, targets: np.ndarray) -> None:
    with pytest.raises(ValueError):
        average_precision(scores, targets)
