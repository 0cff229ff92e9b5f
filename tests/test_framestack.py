"""FrameStack: β rule, frame counts and positions, partner-first order, labels, η; RunningAP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from tests.lists import official_labels
from videolt.errors import ConfigError
from videolt.train.mixes.framestack import (
    RunningAP,
    class_scores_for,
    framestack_active,
    framestack_mix,
)


def clips(b: int, t: int) -> torch.Tensor:
    """x[n, f, 0] = 100·n + f: every output frame tells which clip and frame it came from."""
    return (100 * torch.arange(b)[:, None] + torch.arange(t)[None, :]).float()[:, :, None]


def swap_generator() -> torch.Generator:
    """A generator whose first randperm(2) is [1, 0], i.e. clips 0 and 1 are each other's partner."""
    for seed in range(100):
        if torch.randperm(2, generator=torch.Generator().manual_seed(seed)).tolist() == [1, 0]:
            return torch.Generator().manual_seed(seed)
    raise AssertionError("no seed in 0..99 swaps two clips")


def frames(x: torch.Tensor, n: int) -> list[int]:
    return x[n, :, 0].long().tolist()


def test_beta_ratio_branch_counts_positions_partner_first_labels() -> None:
    x = clips(2, 8)
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    ap = torch.tensor([0.6, 0.2, 0.0])
    # s0 = 0.6/3, s1 = 0.2/3 -> β0 = 0.75, β1 = 0.25; F_p = ⌊β·8⌋ = 6 and 2
    mx, my = framestack_mix(x, y, ap, eta=1.0, generator=swap_generator())
    # clip 0: 6 partner frames at trunc(linspace(0, 7, 6)) = 0,1,2,4,5,7, then own frames at trunc(linspace(0, 7, 2))
    assert frames(mx, 0) == [100, 101, 102, 104, 105, 107, 0, 7]
    assert frames(mx, 1) == [0, 7, 100, 101, 102, 104, 105, 107]
    # ỹ0 = 0.25·y0 + 0.75·y1, ỹ1 = 0.75·y1 + 0.25·y0
    assert my.tolist() == [[0.25, 0.75, 0.0], [0.25, 0.75, 0.0]]


def test_beta_half_when_scores_vanish() -> None:
    x = clips(2, 8)
    y = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    ap = torch.tensor([0.9, 0.0, 0.0])  # both clips score 0 -> β = 0.5, F_p = 4 at trunc(linspace(0, 7, 4))
    mx, my = framestack_mix(x, y, ap, eta=1.0, generator=swap_generator())
    assert frames(mx, 0) == [100, 102, 104, 107, 0, 2, 4, 7]
    assert frames(mx, 1) == [0, 2, 4, 7, 100, 102, 104, 107]
    assert my.tolist() == [[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]]


def test_threshold_applies_to_the_class_mean_as_in_reference() -> None:
    # Σ-scores 1e-5 and 2e-6 sum to 1.2e-5 ≥ 1e-5, but their means over C = 3 do not: β = 0.5
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    ap = torch.tensor([1e-5, 2e-6, 0.0])
    _, my = framestack_mix(clips(2, 8), y, ap, eta=1.0, generator=swap_generator())
    assert my.tolist() == [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]


def test_one_and_zero_frames() -> None:
    x = clips(2, 4)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # s0 = 0.125, s1 = 0.375 -> β0 = 0.25 (F_p = 1 -> frame [0]), β1 = 0.75 (F_o = 1 -> frame [0])
    mx, my = framestack_mix(x, y, torch.tensor([0.25, 0.75]), eta=1.0, generator=swap_generator())
    assert frames(mx, 0) == [100, 0, 1, 3]
    assert frames(mx, 1) == [0, 1, 3, 100]
    assert my.tolist() == [[0.75, 0.25], [0.75, 0.25]]
    # s0 = 0 -> β0 = 0: no partner frame; β1 = 1: no own frame
    mx, my = framestack_mix(x, y, torch.tensor([0.0, 0.5]), eta=1.0, generator=swap_generator())
    assert frames(mx, 0) == [0, 1, 2, 3]
    assert frames(mx, 1) == [0, 1, 2, 3]
    assert my.tolist() == [[1.0, 0.0], [1.0, 0.0]]


def test_fixed_rule_ignores_scores() -> None:
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    score = torch.tensor([0.9, 0.1])
    mx, my = framestack_mix(clips(2, 6), y, score, eta=1.0, beta_rule="fixed", generator=swap_generator())
    assert frames(mx, 0) == [100, 102, 105, 0, 2, 5]
    assert my.tolist() == [[0.5, 0.5], [0.5, 0.5]]


@pytest.mark.parametrize(("b", "eta", "m"), [(5, 0.5, 2), (10, 0.3, 3), (7, 0.9, 6), (4, 0.0, 0)])
def test_only_first_eta_b_rows_are_mixed(b: int, eta: float, m: int) -> None:
    x = clips(b, 6)
    y = torch.eye(b)
    g = torch.Generator().manual_seed(0)
    mx, my = framestack_mix(x, y, torch.rand(b, generator=g), eta=eta, generator=torch.Generator().manual_seed(1))
    assert mx.shape == x.shape and my.shape == y.shape
    assert torch.equal(mx[m:], x[m:]) and torch.equal(my[m:], y[m:])
    sources = {v // 100 for v in mx[:m, :, 0].long().flatten().tolist()}
    assert sources <= set(range(m))  # partners come from the first m clips only
    assert torch.allclose(my[:m].sum(dim=1), torch.ones(m))
    assert torch.equal(my[:m, m:], torch.zeros(m, b - m))


def test_reproducible_with_generator() -> None:
    x, y, a = clips(8, 6), torch.eye(8), torch.linspace(0.1, 0.8, 8)
    one = framestack_mix(x, y, a, generator=torch.Generator().manual_seed(5))
    two = framestack_mix(x, y, a, generator=torch.Generator().manual_seed(5))
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_class_scores_and_rules() -> None:
    ap = np.array([0.5, 0.25])
    assert class_scores_for("ap", ap, np.array([10, 4])).tolist() == [0.5, 0.25]
    assert class_scores_for("cf", ap, np.array([10, 4])).tolist() == pytest.approx([1.0, 0.4])  # n_c / max n
    assert class_scores_for("inverse_cf", ap, np.array([10, 4])).tolist() == pytest.approx([0.1, 0.25])  # 1 / n_c
    with pytest.raises(ConfigError):
        class_scores_for("apx", ap, np.array([10, 4]))
    with pytest.raises(ConfigError):
        framestack_mix(clips(2, 4), torch.eye(2), torch.ones(2), beta_rule="bogus", generator=torch.Generator())


def test_framestack_active() -> None:
    assert not framestack_active(0) and framestack_active(1) and framestack_active(40)
    assert not framestack_active(2, warmup_epochs=3)


def test_running_ap_matches_sklearn_and_checkpoints() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((50, 4)).astype(np.float32)
    targets = (rng.random((50, 4)) < 0.3).astype(np.float32)
    targets[0] = 1.0  # every class has a positive
    meter = RunningAP(4)
    assert meter.value.tolist() == [0.0] * 4  # a = 0 before the first epoch
    meter.update(torch.from_numpy(scores[:20]), torch.from_numpy(targets[:20]))
    state = meter.state_dict()
    meter.update(scores[20:], targets[20:])
    expected = [average_precision_score(targets[:, c], scores[:, c]) for c in range(4)]
    assert meter.compute() == pytest.approx(expected, abs=1e-9)
    resumed = RunningAP(4)
    resumed.load_state_dict(state)
    resumed.update(scores[20:], targets[20:])
    assert resumed.compute() == pytest.approx(expected, abs=1e-9)
    assert meter.end_epoch() == pytest.approx(expected, abs=1e-9)
    assert meter.value == pytest.approx(expected, abs=1e-9)
    assert meter.compute().tolist() == [0.0] * 4  # a new epoch starts empty
    restored = RunningAP(4)
    restored.load_state_dict(meter.state_dict())
    assert restored.value == pytest.approx(expected, abs=1e-9)


LABELS_DIR = official_labels()


def _official_pairs(rule: str, n_clips: int = 20000) -> dict[str, float]:
    """FrameStack's β on random pairs of official train clips: own frames kept by head and tail clips."""
    from videolt.data.labels import load_labels, multi_hot

    labels = load_labels(LABELS_DIR)
    counts = labels.counts
    rng = np.random.default_rng(0)
    train = labels.splits["train"].labels
    picked = [train[i] for i in rng.choice(len(train), n_clips, replace=False)]
    y = torch.from_numpy(multi_hot(picked, labels.num_classes))
    perm = torch.from_numpy(rng.permutation(n_clips))
    score = class_scores_for(rule, np.zeros(labels.num_classes), counts)
    s = (y * score).mean(dim=1)
    beta = torch.where(s + s[perm] < 1e-5, torch.full_like(s, 0.5), s / (s + s[perm]).clamp_min(1e-5))
    own = 60 - torch.floor(beta * 60)
    group = {g: set(ids.tolist()) for g, ids in labels.groups().items()}
    is_head = torch.tensor([all(c in group["head"] for c in lab) for lab in picked])
    is_tail = torch.tensor([all(c in group["tail"] for c in lab) for lab in picked])
    return {"head_own": own[is_head].mean().item(), "tail_own": own[is_tail].mean().item(),
            "fallback_share": ((s + s[perm]) < 1e-5).float().mean().item()}


@pytest.mark.skipif(not LABELS_DIR.is_dir(), reason="the official label lists are not here")
def test_class_frequency_rule_on_official_counts() -> None:
    """Table 3's "w/ CF": tail clips keep more of their own frames than head clips, as with running AP,
    and the 1e-5 fallback to β = 0.5 almost never applies; the literal 1 / n_c substitution does the opposite."""
    cf = _official_pairs("cf")
    print(f"cf: head clips keep {cf['head_own']:.1f}, tail clips {cf['tail_own']:.1f} of 60 frames; "
          f"β = 0.5 fallback on {cf['fallback_share']:.2%} of pairs")
    assert cf["tail_own"] > cf["head_own"] + 10
    assert cf["fallback_share"] < 0.001
    literal = _official_pairs("inverse_cf")
    print(f"inverse_cf: head {literal['head_own']:.1f}, tail {literal['tail_own']:.1f}; "
          f"fallback on {literal['fallback_share']:.2%} of pairs")
    assert literal["fallback_share"] > 0.5  # most pairs fall under the threshold: β = 0.5
