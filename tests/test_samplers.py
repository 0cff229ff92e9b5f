"""CBS / SRS resampling: target class frequencies, determinism, the loss mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videolt.errors import UnknownNameError
from videolt.train.samplers import SAMPLERS, create_sampler, sample_mask

# 4 classes with 64, 16, 4 and 1 videos (class 3 has none), plus multi-label videos.
LABELS: list[tuple[int, ...]] = [(0,)] * 60 + [(0, 1)] * 4 + [(1,)] * 12 + [(2,)] * 3 + [(1, 2)] + [(4,)]
SIZES = np.array([64, 17, 4, 0, 1])


@pytest.mark.parametrize(
    ("name", "target"),
    [("cbs", np.array([1, 1, 1, 0, 1]) / 4), ("srs", np.sqrt(SIZES) / np.sqrt(SIZES).sum())],
)
def test_class_frequencies_match_target(name: str, target: np.ndarray) -> None:
    sampler = create_sampler(name, LABELS, 5, seed=3)
    drawn = np.concatenate([sampler.epoch(e)[1] for e in range(60)])  # 60 epochs × 81 draws
    freq = np.bincount(drawn, minlength=5) / len(drawn)
    assert freq == pytest.approx(target, abs=0.02)
    assert freq[3] == 0


def test_epoch_shape_and_membership() -> None:
    sampler = create_sampler("cbs", LABELS, 5, seed=0)
    indices, drawn = sampler.epoch(0)
    assert indices.shape == drawn.shape == (len(LABELS),)
    assert all(c in LABELS[i] for i, c in zip(indices, drawn))  # each draw is a video of its class


def test_video_uniform_within_class() -> None:
    sampler = create_sampler("cbs", LABELS, 5, seed=1)
    picks = np.concatenate([idx[c == 2] for idx, c in (sampler.epoch(e) for e in range(100))])
    videos_of_2 = [i for i, labs in enumerate(LABELS) if 2 in labs]
    share = np.array([(picks == v).mean() for v in videos_of_2])
    assert share == pytest.approx(np.full(4, 0.25), abs=0.05)


def test_determinism() -> None:
    a = create_sampler("srs", LABELS, 5, seed=11)
    b = create_sampler("srs", LABELS, 5, seed=11)
    assert all(np.array_equal(x, y) for x, y in zip(a.epoch(4), b.epoch(4)))
    assert not np.array_equal(a.epoch(4)[0], a.epoch(5)[0])
    assert not np.array_equal(a.epoch(4)[0], create_sampler("srs", LABELS, 5, seed=12).epoch(4)[0])


def test_none_and_unknown() -> None:
    assert create_sampler("none", LABELS, 5, seed=0) is None
    assert set(SAMPLERS.names()) == {"none", "cbs", "srs"}
    with pytest.raises(UnknownNameError):
        create_sampler("cb", LABELS, 5, seed=0)


def test_sample_mask_by_hand() -> None:
    targets = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    drawn = torch.tensor([1, 1])
    expected = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    assert torch.equal(sample_mask(targets, drawn), expected)
