"""The counter-based clip generator: Random123's known answers, no int64 overflow, uniform and
independent draws, a clip a function of (seed, epoch, position) only, the same integers on CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from videolt.train.philox import clip_frames, philox4x32, uniform_ints

# Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter (4 words), key (2), expected (4).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_known_answers(counter, key, expected):
    got = philox4x32(torch.tensor([counter], dtype=torch.int64), key)[0]
    assert got.tolist() == list(expected)  # the all-ones case passes 32-bit maxima through every product


def test_words_are_uniform_and_bits_balanced():
    counter = torch.zeros(50_000, 4, dtype=torch.int64)
    counter[:, 0] = torch.arange(50_000)
    words = philox4x32(counter, (2021, 0)).reshape(-1)  # consecutive counters: the hardest case for a weak mix
    assert words.min() >= 0 and words.max() < 2**32
    assert stats.kstest(words.double().numpy() / 2**32, "uniform").pvalue > 1e-3
    bits = ((words[:, None] >> torch.arange(32)) & 1).double().mean(dim=0)  # each bit's share of ones
    assert (bits - 0.5).abs().max() < 4 * 0.5 / np.sqrt(len(words))


def test_clip_frames_are_uniform_sorted_and_with_replacement():
    clips = clip_frames(7, 3, np.arange(4000), 150, 60).numpy()
    assert clips.shape == (4000, 60) and (np.diff(clips, axis=1) >= 0).all()
    assert clips.min() == 0 and clips.max() == 149
    assert stats.chisquare(np.bincount(clips.ravel(), minlength=150)).pvalue > 1e-3
    # Neighbouring positions are independent: the first draws of clips k and k + 1 do not correlate.
    first = clip_frames(7, 3, np.arange(4000), 2**20, 1).numpy()[:, 0]
    assert abs(stats.pearsonr(first[:-1], first[1:]).statistic) < 4 / np.sqrt(len(first))


def test_a_clip_depends_on_seed_epoch_and_position_only():
    batch = clip_frames(1, 2, np.array([5, 3, 9]), 150, 60)
    for j, k in enumerate([5, 3, 9]):
        assert torch.equal(batch[j], clip_frames(1, 2, np.array([k]), 150, 60)[0])  # any batching
    for other in (clip_frames(0, 2, np.array([3]), 150, 60), clip_frames(1, 0, np.array([3]), 150, 60),
                  clip_frames(1, 2, np.array([4]), 150, 60), clip_frames(1 + 2**32, 2, np.array([3]), 150, 60)):
        assert not torch.equal(other[0], batch[1])  # the high seed word counts too
    assert clip_frames(1, 2, np.zeros(0, dtype=np.int64), 150, 60).shape == (0, 60)  # an empty DDP share
    with pytest.raises(ValueError):
        clip_frames(1, 2, np.array([2**32]), 150, 60)


def test_uniform_ints_range():
    words = torch.tensor([0, 2**31, 2**32 - 1])
    assert uniform_ints(words, 150).tolist() == [0, 75, 149]
    with pytest.raises(ValueError):
        uniform_ints(words, 2**31)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_same_integers_on_cuda():
    positions = np.arange(0, 10_000, 7)
    cpu = clip_frames(2021, 99, positions, 150, 60)
    assert torch.equal(clip_frames(2021, 99, positions, 150, 60, device="cuda").cpu(), cpu)
