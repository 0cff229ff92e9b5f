"""Losses against hand formulas on Python floats, plus the registry contract."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from videolt.errors import ConfigError
from videolt.train.losses import LOSSES, class_balanced_weights, create_loss

Z = [[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]]
Y = [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
COUNTS = np.array([1000, 100, 10])


def bce(z: float, y: float) -> float:
    """−[y·log σ(z) + (1 − y)·log(1 − σ(z))], as max(z, 0) − z·y + log(1 + e^−|z|) to stay finite."""
    return max(z, 0.0) - z * y + math.log1p(math.exp(-abs(z)))


def elems(fn) -> list[list[float]]:  # type: ignore[no-untyped-def]
    return [[fn(i, c) for c in range(3)] for i in range(2)]


def run(name: str, mask: list[list[float]] | None = None, **opts) -> float:  # type: ignore[no-untyped-def]
    loss = create_loss(name, COUNTS, **opts)
    m = None if mask is None else torch.tensor(mask)
    return loss(torch.tensor(Z), torch.tensor(Y), m).item()


def mean6(e: list[list[float]]) -> float:
    return sum(map(sum, e)) / 6


def test_bce_reductions_and_mask() -> None:
    e = elems(lambda i, c: bce(Z[i][c], Y[i][c]))
    assert run("bce") == pytest.approx(mean6(e), rel=1e-6)
    assert run("bce", reduction="sum_classes") == pytest.approx(sum(map(sum, e)) / 2, rel=1e-6)
    mask = [[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    masked = sum(e[i][c] * mask[i][c] for i in range(2) for c in range(3))
    assert run("bce", mask=mask) == pytest.approx(masked / 6, rel=1e-6)
    assert run("bce", mask=mask, reduction="sum_classes") == pytest.approx(masked / 2, rel=1e-6)


@pytest.mark.parametrize(("gamma", "alpha"), [(1.0, 1.0), (2.0, 0.25)])
def test_focal(gamma: float, alpha: float) -> None:
    def fl(i: int, c: int) -> float:
        b = bce(Z[i][c], Y[i][c])
        return alpha * (1.0 - math.exp(-b)) ** gamma * b

    assert run("focal", gamma=gamma, alpha=alpha) == pytest.approx(mean6(elems(fl)), rel=1e-6)


def test_focal_default_gamma_is_one() -> None:
    assert create_loss("focal", COUNTS).gamma == 1.0


def test_cb_weights_per_column() -> None:
    beta = 0.9999
    raw = [(1 - beta) / (1 - beta**n) for n in (1000, 100, 10)]
    w = [3 * r / sum(raw) for r in raw]
    assert class_balanced_weights(COUNTS, beta) == pytest.approx(w)
    assert run("cb") == pytest.approx(mean6(elems(lambda i, c: w[c] * bce(Z[i][c], Y[i][c]))), rel=1e-6)


def _ldam_expected(weights: list[float]) -> float:
    m = [0.5 * n**-0.25 / 10**-0.25 for n in (1000, 100, 10)]  # max margin 0.5 at the rarest class
    batch_m = [sum(m[c] for c in range(3) if Y[i][c] == 1) for i in range(2)]  # row 1: m1 + m2
    z = [[Z[i][c] - batch_m[i] if Y[i][c] == 1 else Z[i][c] for c in range(3)] for i in range(2)]
    return mean6(elems(lambda i, c: weights[c] * bce(30 * z[i][c], Y[i][c])))


def test_ldam_drw() -> None:
    loss = create_loss("ldam", COUNTS)
    z, y = torch.tensor(Z), torch.tensor(Y)
    assert loss(z, y).item() == pytest.approx(_ldam_expected([1.0, 1.0, 1.0]), rel=1e-5)
    loss.set_epoch(49)
    assert loss(z, y).item() == pytest.approx(_ldam_expected([1.0, 1.0, 1.0]), rel=1e-5)
    loss.set_epoch(50)
    cb = list(class_balanced_weights(COUNTS, 0.9999))
    assert loss(z, y).item() == pytest.approx(_ldam_expected(cb), rel=1e-5)
    loss.set_epoch(99)
    assert loss(z, y).item() == pytest.approx(_ldam_expected(cb), rel=1e-5)


def test_ldam_margins_under_soft_targets() -> None:
    """Pinned decision (as the reference): margins only where the target is exactly 1; a sample's margin
    is the target-weighted sum of the class margins."""
    loss = create_loss("ldam", COUNTS)
    m = [0.5 * n**-0.25 / 10**-0.25 for n in (1000, 100, 10)]
    y = [[0.6, 0.4, 0.0], [1.0, 0.3, 0.0]]  # row 0: mixed, no exact 1; row 1: class 0 shared by both clips
    batch_m = [sum(y[i][c] * m[c] for c in range(3)) for i in range(2)]
    z = [[Z[i][c] - batch_m[i] if y[i][c] == 1.0 else Z[i][c] for c in range(3)] for i in range(2)]
    expected = mean6([[bce(30 * z[i][c], y[i][c]) for c in range(3)] for i in range(2)])
    assert loss(torch.tensor(Z), torch.tensor(y)).item() == pytest.approx(expected, rel=1e-5)


def test_eql_reference_extremes() -> None:
    e = elems(lambda i, c: bce(Z[i][c], Y[i][c]))
    # tail = classes 1 and 2 (n ≤ 100); λ = 1 drops every negative of a tail class: (0, 1) and (0, 2)
    kept = e[0][0] + e[1][0] + e[1][1] + e[1][2]
    assert run("eql", drop_prob=1.0) == pytest.approx(kept / 6, rel=1e-6)
    assert run("eql", drop_prob=0.0) == pytest.approx(mean6(e), rel=1e-6)


def test_eql_reference_drop_rate_and_reproducibility() -> None:
    counts = np.array([1000, 50])
    z = torch.zeros(4000, 2)  # every element loss is log 2
    y = torch.zeros(4000, 2)
    loss = create_loss("eql", counts, drop_prob=0.3, reduction="sum_classes", seed=7)
    first = loss(z, y).item()
    dropped = 2 - first / math.log(2)  # per-row expected: 2 − 0.3 dropped of class 1
    assert dropped == pytest.approx(0.3, abs=0.03)
    state = loss.state_dict()
    second = loss(z, y).item()
    assert second != first
    again = create_loss("eql", counts, drop_prob=0.3, reduction="sum_classes", seed=7)
    assert again(z, y).item() == first  # same seed, same draws
    again.load_state_dict(state)
    assert again(z, y).item() == second  # the generator state travels in the state_dict


def test_eql_threshold_variant() -> None:
    # 1110 train videos: frequencies 1000/1110, 100/1110, 10/1110; only class 2 is below 0.05: (0, 2) is ignored
    e = elems(lambda i, c: bce(Z[i][c], Y[i][c]))
    expected = (mean6(e) * 6 - e[0][2]) / 6
    assert run("eql", variant="threshold", freq_threshold=0.05, train_videos=1110) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ConfigError, match="train videos"):
        create_loss("eql", COUNTS, variant="threshold")


def test_eql_threshold_frequency_is_per_train_video() -> None:
    """n_c / N with N the train videos (as the EQL paper), not n_c / Σn (label instances, more when multi-label)."""
    counts = np.array([1000, 100, 10])  # 1110 labels on 1000 multi-label videos
    loss = create_loss("eql", counts, variant="threshold", freq_threshold=0.0095, train_videos=1000)
    assert loss.rare.tolist() == [0.0, 0.0, 0.0]  # 10 / 1000 = 0.01 is not below 0.0095 (10 / 1110 would be)
    loss = create_loss("eql", counts, variant="threshold", freq_threshold=0.0105, train_videos=1000)
    assert loss.rare.tolist() == [0.0, 0.0, 1.0]


def test_eql_options_have_one_meaning_each() -> None:
    from videolt.train.losses import loss_options

    assert {"drop_prob", "freq_threshold", "tail_threshold"} <= set(loss_options("eql"))
    assert "lambda_" not in loss_options("eql") and "train_videos" not in loss_options("eql")


LABELS_DIR = Path(__file__).resolve().parents[2] / "shared" / "videolt-labels"


@pytest.mark.skipif(not LABELS_DIR.is_dir(), reason="the official label lists are not here")
def test_eql_threshold_marks_most_videolt_classes_rare() -> None:
    """λ = 1.76e-3 was tuned on LVIS; on VideoLT's official train counts it marks 842 of 1004 classes rare."""
    from videolt.data.labels import load_labels

    labels = load_labels(LABELS_DIR)
    loss = create_loss("eql", labels.counts, variant="threshold", train_videos=len(labels.splits["train"]))
    rare = int(loss.rare.sum())
    print(f"EQL threshold 1.76e-3 marks {rare} of {labels.num_classes} VideoLT classes rare")
    assert (rare, labels.num_classes, len(labels.splits["train"])) == (842, 1004, 179334)
    assert int((labels.counts <= 100).sum()) == 340  # the reference variant's tail classes


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="no option"):
        create_loss("focal", COUNTS, gama=2.0)
    with pytest.raises(ConfigError, match="reduction"):
        create_loss("bce", COUNTS, reduction="sum")
    with pytest.raises(ConfigError, match="variant"):
        create_loss("eql", COUNTS, variant="paper")


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("reduction", ["mean", "sum_classes"])
def test_contract(name: str, reduction: str) -> None:
    counts = np.array([500, 60, 5, 0])  # includes a class absent from train
    torch.manual_seed(0)
    z = torch.randn(6, 4, requires_grad=True)
    y = (torch.rand(6, 4) < 0.4).float()
    a, b = (create_loss(name, counts, train_videos=600, reduction=reduction) for _ in range(2))
    a.set_epoch(0)
    out = a(z, y)
    assert out.shape == () and torch.isfinite(out)
    assert out.item() == pytest.approx(b(z, y, torch.ones(6, 4)).item(), rel=1e-6)  # an all-ones mask changes nothing
    out.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    soft = a(z, y * 0.7 + 0.1)  # soft targets (mixup, FrameStack) are accepted
    assert torch.isfinite(soft)
