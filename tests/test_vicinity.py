"""MOVE's vicinity expansion: the rule of its code (ops/Augment.py:70-89, MOVE.py:76-84, 222-223) on a
small fixed batch by hand, its mixing statistics over many batches, its draws, options and state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videolt.errors import ConfigError
from videolt.train.mixes import create_batch_mix
from videolt.train.mixes.vicinity import VicinityDraws, calibration_factors, vicinity_expand

COUNTS = np.array([100, 50, 10, 1])  # z = (n − 1)/99: s = 1 − z + 0.5 = [0.5, 1.005, 1.409, 1.5]
S = [1.5 - 99 / 99, 1.5 - 49 / 99, 1.5 - 9 / 99, 1.5]
Y = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]]  # head clip, medium+tail clip, tail clip


def test_calibration_factors() -> None:
    assert calibration_factors(COUNTS, 0.5).tolist() == pytest.approx(S)
    assert calibration_factors(COUNTS, 0.0).tolist() == pytest.approx([s - 0.5 for s in S])


def test_expansion_by_hand_on_a_fixed_batch() -> None:
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]])  # view 1 of each clip [B, E]
    z2 = torch.tensor([[1.0, 0.5], [1.0, 2.0], [0.0, 1.0]])  # view 2
    lam, gamma, perm = 1.25, 0.75, [2, 0, 1]
    e, y = vicinity_expand(torch.stack([z1, z2], 1), torch.tensor(Y), calibration_factors(COUNTS, 0.5),
                           VicinityDraws(lam, gamma, torch.tensor(perm)))
    ext = [[lam * a + (1 - lam) * b for a, b in zip(r1, r2)] for r1, r2 in zip(z1.tolist(), z2.tolist())]
    want_e = [[gamma * ext[i][k] + (1 - gamma) * ext[perm[i]][k] for k in range(2)] for i in range(3)]
    want_y = [[min(1.0, max(0.0, (gamma * Y[i][c] + (1 - gamma) * Y[perm[i]][c]) * S[c])) for c in range(4)]
              for i in range(3)]
    assert e.shape == (3, 1, 2) and e[:, 0].tolist() == [pytest.approx(r) for r in want_e]
    assert y.tolist() == [pytest.approx(r) for r in want_y]
    # clip 0 (head class, mixed with the tail clip 2): its own label 0.75 · 0.5, the partner's 0.25 · 1.41
    assert y[0].tolist() == pytest.approx([0.375, 0.0, 0.25 * S[2], 0.0])
    # the medium+tail clip keeps its tail label whole (0.75 · 1.5 clipped to 1), its medium label ×1.005
    assert y[1].tolist() == pytest.approx([0.25 * 0.5, 0.75 * S[1], 0.0, 1.0])


def test_one_view_extrapolates_to_itself_and_frame_views_are_refused() -> None:
    e = torch.randn(3, 1, 4)
    y = torch.tensor(Y)
    out, _ = vicinity_expand(e, y, None, VicinityDraws(1.7, 1.0, torch.arange(3)))  # γ = 1, π = id: only step 1
    torch.testing.assert_close(out, e)
    with pytest.raises(ConfigError, match="two views"):
        vicinity_expand(torch.randn(3, 60, 4), y, None, VicinityDraws(1.5, 0.5, torch.arange(3)))
    frames, _ = vicinity_expand(torch.randn(3, 60, 4), y, None, VicinityDraws(1.5, 0.5, torch.arange(3)),
                                extrapolate=False)
    assert frames.shape == (3, 60, 4)


def test_mixing_statistics_over_many_batches() -> None:
    """Which clips are expanded, how often, with what labels: all of them, every batch, by the rule."""
    mix = create_batch_mix("vicinity", COUNTS, seed=0)
    y = torch.tensor(Y)
    e = torch.randn(3, 2, 5)
    lams, gammas, self_pairs, head_labels = [], [], 0, []
    for _ in range(2000):
        draws = mix.draw(3)
        out_e, out_y = vicinity_expand(e, y, mix.factors, draws)
        lams.append(draws.lam)
        gammas.append(draws.gamma)
        perm = draws.perm.tolist()
        self_pairs += sum(p == i for i, p in enumerate(perm))
        ext = draws.lam * e[:, 0] + (1 - draws.lam) * e[:, 1]
        torch.testing.assert_close(out_e[:, 0], draws.gamma * ext + (1 - draws.gamma) * ext[perm])  # every clip
        expected = torch.clamp((draws.gamma * y + (1 - draws.gamma) * y[perm]) * torch.tensor(S), 0, 1)
        torch.testing.assert_close(out_y, expected)
        head_labels.append(out_y[0, 0].item())
    lams, gammas = np.array(lams), np.array(gammas)
    assert lams.min() > 1 and lams.max() < 2
    assert lams.mean() == pytest.approx(1.5, abs=0.01) and lams.var() == pytest.approx(0.05, abs=0.004)  # 1 + B(2,2)
    assert gammas.mean() == pytest.approx(0.5, abs=0.015) and gammas.var() == pytest.approx(1 / 12, abs=0.005)
    assert self_pairs / 6000 == pytest.approx(1 / 3, abs=0.02)  # a uniform permutation
    assert max(head_labels) <= 0.5  # a head positive never counts more than s = 0.5


def test_mix_hooks_state_and_options() -> None:
    mix = create_batch_mix("vicinity", COUNTS, seed=3)
    assert mix.mixes_embeddings and not mix.observes
    state = mix.state_dict()
    e, y = torch.randn(4, 2, 5), torch.zeros(4, 4)
    first = mix.mix_embeddings(e, y)
    mix.load_state_dict(state)  # resume: the same draws again
    again = mix.mix_embeddings(e, y)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    uncalibrated = create_batch_mix("vicinity", COUNTS, seed=3, calibrate=False)
    _, plain_y = uncalibrated.mix_embeddings(e, torch.ones(4, 4))
    assert torch.equal(plain_y, torch.ones(4, 4))  # no calibration: mixed labels as they are
    with pytest.raises(ConfigError, match="extrapolation_a"):
        create_batch_mix("vicinity", COUNTS, seed=0, extrapolation_a=0.0)
