"""Losses against hand formulas on Python floats, plus the registry contract."""

from __future__ import annotations

import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.lists import official_labels
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
    assert {"drop_prob", "freq_threshold", "tail_threshold"} <= set(LOSSES.options("eql"))
    assert "lambda_" not in LOSSES.options("eql") and "train_videos" not in LOSSES.options("eql")


LABELS_DIR = official_labels()


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


# ---- losses made for multi-label long tails: db, asl, logit_adjusted --------------------------------
N_TRAIN = 1050  # train videos behind COUNTS = (1000, 100, 10) (multi-label: a video may count twice)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def softplus(z: float) -> float:
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def log_odds(n: float) -> float:
    p = n / N_TRAIN
    return math.log(p / (1 - p))


def test_logit_adjusted_bce_by_hand() -> None:
    """Menon et al.'s adjustment, sigmoid form: BCE(z_c + τ·log(p_c/(1 − p_c)), y), p_c = n_c / N."""
    for tau in (1.0, 0.5):
        want = elems(lambda i, c: bce(Z[i][c] + tau * log_odds(COUNTS[c]), Y[i][c]))
        assert run("logit_adjusted", tau=tau, train_videos=N_TRAIN) == pytest.approx(mean6(want), rel=1e-6)
    with pytest.raises(ConfigError, match="train videos"):
        create_loss("logit_adjusted", COUNTS)


def test_logit_adjusted_plain_logits_learn_the_prior_free_part() -> None:
    """A class whose positives occur at its prior rate p_c is fitted by the plain logit 0: the gradient of the
    adjusted loss vanishes at z = 0 (plain BCE's optimum there would be log(p_c / (1 − p_c)))."""
    counts, n = np.array([210, 21]), 1050  # p = 0.2, 0.02
    y = torch.zeros(50, 2)
    y[:10, 0], y[:1, 1] = 1.0, 1.0  # positives at rates 0.2 and 0.02
    z = torch.zeros(50, 2, requires_grad=True)
    create_loss("logit_adjusted", counts, train_videos=n)(z, y).backward()
    assert z.grad.sum(dim=0).abs().max().item() < 1e-7


def test_asl_by_hand() -> None:
    """Ridnik et al.: L+ = (1 − p)^γ+ log p, L− = p_m^γ− log(1 − p_m), p_m = max(p − m, 0);
    loss −(y L+ + (1 − y) L−)."""
    def asl(z: float, y: float, gp: float, gn: float, m: float) -> float:
        p = sigmoid(z)
        pm = max(p - m, 0.0)
        return -(y * (1 - p) ** gp * math.log(p) + (1 - y) * pm**gn * math.log(1 - pm))

    assert run("asl") == pytest.approx(mean6(elems(lambda i, c: asl(Z[i][c], Y[i][c], 0, 4, 0.05))), rel=1e-6)
    want = mean6(elems(lambda i, c: asl(Z[i][c], Y[i][c], 1, 2, 0.0)))
    assert run("asl", gamma_pos=1.0, gamma_neg=2.0, clip=0.0) == pytest.approx(want, rel=1e-6)
    # γ± = 0 and m = 0 is BCE
    assert run("asl", gamma_pos=0.0, gamma_neg=0.0, clip=0.0) == pytest.approx(run("bce"), rel=1e-6)
    # a negative with p ≤ m costs nothing (the probability margin)
    zero = create_loss("asl", COUNTS)(torch.tensor([[math.log(0.04 / 0.96)]]), torch.tensor([[0.0]]))
    assert zero.item() == 0.0


def _asl_grad(z: float, y: float, gp: float, gn: float, m: float, full: bool) -> float:
    """d/dz of one ASL element by hand; `full` differentiates the focusing weights too."""
    p = sigmoid(z)
    if y:  # −(1 − p)^γ+ · log p
        return (1 - p) ** gp * ((gp * p * math.log(p) if full else 0.0) - (1 - p))
    pm = max(p - m, 0.0)
    if pm == 0.0:
        return 0.0  # within the margin: no loss, no gradient
    dpm = p * (1 - p)  # d p_m / dz above the margin
    return pm**gn * dpm / (1 - pm) - (gn * pm ** (gn - 1) * dpm * math.log(1 - pm) if full else 0.0)


@pytest.mark.parametrize("gp", [0.0, 1.0])
def test_asl_gradient_by_hand(gp: float) -> None:
    """Default: the authors' gradient (Alibaba-MIIL/ASL losses.py computes the focusing weights under no_grad);
    `focusing_grad: true`: the formula's full gradient, on negatives 1 + γ−·(1 − p_m)·(−log(1 − p_m))/p_m times
    larger. One element (p = 0.04) sits within the margin m = 0.05."""
    z_rows = [*Z, [math.log(0.04 / 0.96), 3.0, -2.5]]
    y_rows = [*Y, [0.0, 0.0, 1.0]]
    grads = {}
    for full in (False, True):
        z = torch.tensor(z_rows, dtype=torch.float64, requires_grad=True)
        opts = {"focusing_grad": True} if full else {}
        create_loss("asl", COUNTS, gamma_pos=gp, **opts)(z, torch.tensor(y_rows, dtype=torch.float64)).backward()
        want = [[_asl_grad(zz, yy, gp, 4.0, 0.05, full) / 9 for zz, yy in zip(zr, yr)] for zr, yr in zip(z_rows, y_rows)]
        np.testing.assert_allclose(z.grad.numpy(), want, rtol=1e-9, atol=1e-15)
        grads[full] = z.grad
    for (i, c), y in np.ndenumerate(np.array(y_rows)):
        pm = sigmoid(z_rows[i][c]) - 0.05
        if y == 0 and pm > 0:
            ratio = (grads[True][i, c] / grads[False][i, c]).item()
            assert ratio == pytest.approx(1 + 4 * (1 - pm) * -math.log(1 - pm) / pm, rel=1e-9)
    assert grads[True][2, 0] == grads[False][2, 0] == 0.0


def _db_weights() -> list[list[float]]:
    """w = α + σ(β·(r − μ)), r_c = (1/n_c) / Σ_j y_j / n_j, with α, β, μ = 0.1, 10, 0.2."""
    out = []
    for i in range(2):
        repeat = sum(Y[i][j] / COUNTS[j] for j in range(3))
        out.append([0.1 + sigmoid(10.0 * ((1 / COUNTS[c]) / repeat - 0.2)) for c in range(3)])
    return out


def test_db_by_hand() -> None:
    """Wu et al., as their code computes it: re-balanced weights, logits shifted by (κ/λ)·log(p/(1 − p)),
    positives w·log(1 + e^−z'), negatives (w/λ)·log(1 + e^{λz'}); κ = 0.05, λ = 2."""
    w = _db_weights()
    b = [0.05 / 2 * log_odds(n) for n in COUNTS]

    def db(i: int, c: int) -> float:
        z = Z[i][c] + b[c]
        return w[i][c] * (softplus(-z) if Y[i][c] else softplus(2 * z) / 2)

    assert run("db", train_videos=N_TRAIN, focal_gamma=0.0) == pytest.approx(mean6(elems(db)), rel=1e-6)

    def db_focal(i: int, c: int) -> float:  # DB-Focal: × 2·(1 − p_t)^2, p_t of the (scaled) logit
        z = Z[i][c] + b[c]
        if Y[i][c]:
            return w[i][c] * softplus(-z) * 2 * (1 - sigmoid(z)) ** 2
        return w[i][c] * softplus(2 * z) / 2 * 2 * sigmoid(2 * z) ** 2

    assert run("db", train_videos=N_TRAIN) == pytest.approx(mean6(elems(db_focal)), rel=1e-6)  # the default


@pytest.mark.parametrize("focal", [True, False], ids=["db_focal", "db"])
def test_db_follows_the_authors_code_path(focal: bool) -> None:
    """The same number as `ResampleLoss.forward` (rebalance weights, logit_reg with neg_scale and init_bias,
    binary_cross_entropy with weights; with `focal`, as the authors' config ships it, × balance·(1 − pt)^γ with
    pt = exp(−BCE) of the unweighted logits), mean, written out with torch as that code writes it."""
    counts = torch.tensor([300.0, 40.0, 5.0, 1.0])
    n = 320.0
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 4), (torch.rand(8, 4) < 0.3).float()
    labels[:, 0] = torch.where(labels.sum(1) == 0, 1.0, labels[:, 0])  # every clip has a label
    freq_inv = 1.0 / counts
    repeat_rate = torch.sum(labels * freq_inv, dim=1, keepdim=True)
    weight = torch.sigmoid(10.0 * (freq_inv[None] / repeat_rate - 0.2)) + 0.1
    init_bias = -torch.log(n / counts - 1) * 0.05 / 2.0
    z = logits + init_bias
    z = z * (1 - labels) * 2.0 + z * labels
    weight = weight / 2.0 * (1 - labels) + weight * labels
    loss = F.binary_cross_entropy_with_logits(z, labels, weight=weight, reduction="none")
    if focal:
        pt = torch.exp(-F.binary_cross_entropy_with_logits(z, labels, reduction="none"))
        loss = 2.0 * (1 - pt) ** 2 * loss
    want = loss.mean()
    got = create_loss("db", counts.numpy(), train_videos=int(n), **({} if focal else {"focal_gamma": 0.0}))(logits, labels)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_db_weights_rebalance_co_occurring_labels() -> None:
    """A clip of a head and a tail class: the tail class's ratio r is near 1 (weight → α + 1), the head's near 0
    (weight → α + σ(−βμ)); a single-label clip has r = 1 for its class."""
    loss = create_loss("db", np.array([1000, 10]), train_videos=1005)
    w = loss.weights(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    head, tail = 0.001 / 0.101, 0.1 / 0.101
    assert w[0].tolist() == pytest.approx([0.1 + sigmoid(10 * (head - 0.2)), 0.1 + sigmoid(10 * (tail - 0.2))])
    assert w[1, 1].item() == pytest.approx(0.1 + sigmoid(10 * 0.8))
