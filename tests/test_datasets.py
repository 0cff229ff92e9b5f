"""Feature datasets: clip sampling (§3), batch reads against plain numpy indexing, loader settings."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from tests.synthetic import random_store
from videolt.data.store import FeatureStore
from videolt.train.cache import open_sources
from videolt.train.datasets import BatchLoader, TestClips, TrainClips, chunks, clip_indices, rank_share

N, FRAMES, DIM, C = 40, 150, 16, 5


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[FeatureStore, np.ndarray]:
    data = np.random.default_rng(0).standard_normal((N, FRAMES, DIM)).astype(np.float16)
    return random_store(tmp_path_factory.mktemp("feats") / "f.zarr", data), data


def _targets(n: int) -> np.ndarray:
    return np.eye(C, dtype=np.float32)[np.arange(n) % C]


def test_clip_indices_sorted_in_range_with_replacement():
    clips = np.stack([clip_indices(2021, 3, k) for k in range(2000)])
    assert clips.shape == (2000, 60)
    assert (np.diff(clips, axis=1) >= 0).all()
    assert clips.min() >= 0 and clips.max() < 150
    # With replacement: 60 draws from 150 repeat an index with probability 1 - 150!/(90! 150^60) ≈ 1.
    assert np.mean([len(np.unique(c)) < 60 for c in clips]) > 0.99
    # Uniform over [0, 150): every frame is drawn, each about 2000*60/150 = 800 times.
    counts = np.bincount(clips.ravel(), minlength=150)
    assert counts.min() > 650 and counts.max() < 950


def test_clip_indices_depend_on_seed_epoch_position_only():
    a = clip_indices(1, 2, 3)
    np.testing.assert_array_equal(a, clip_indices(1, 2, 3))
    for other in (clip_indices(0, 2, 3), clip_indices(1, 0, 3), clip_indices(1, 2, 0)):
        assert not np.array_equal(a, other)


def test_train_batch_matches_numpy_gather(store):
    st, data = store
    rows = np.array([5, 3, 3, 39, 0])  # a repeated video, as resampling gives
    ds = TrainClips(st, rows, _targets(5), clip_len=60, seed=7, epoch=2)
    x, y, pos = ds.__getitems__([4, 1, 2])
    assert x.shape == (3, 60, DIM) and x.dtype == torch.float16
    for j, k in enumerate([4, 1, 2]):
        expected = data[rows[k]][clip_indices(7, 2, k)]
        np.testing.assert_array_equal(x[j].numpy(), expected)
        np.testing.assert_array_equal(y[j].numpy(), _targets(5)[k])
    assert pos.tolist() == [4, 1, 2]
    # The same video at two positions gets two different clips.
    assert not torch.equal(ds[1][0], ds[2][0])
    torch.testing.assert_close(ds[4][0], x[0])


def test_test_clips_are_whole_videos(store):
    st, data = store
    ds = TestClips(st, [7, 2], _targets(2))
    x, y, _ = ds.__getitems__([0, 1])
    np.testing.assert_array_equal(x.numpy(), data[[7, 2]])
    assert x.shape == (2, FRAMES, DIM)


def test_chunks_keep_last_partial_batch():
    assert [len(b) for b in chunks(10, 4)] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(chunks(10, 4)), np.arange(10))


def _epoch(source, workers: int, world: int = 1) -> torch.Tensor:
    """One epoch's clips and targets in epoch order, read by `world` ranks that split every batch."""
    order = np.random.default_rng(0).permutation(N)
    ds = TrainClips(source, np.arange(N), _targets(N), seed=3, epoch=1, order=order)
    parts = []
    for rank in range(world):
        shares = [rank_share(b, rank, world) for b in chunks(N, 8)]
        parts += [(pos, torch.cat([x.reshape(len(x), -1).float(), y], 1))
                  for x, y, pos in BatchLoader(ds, shares, workers=workers)]
    out = torch.empty(N, ds.clip_len * DIM + C)
    for pos, rows in parts:
        out[pos] = rows
    return out


def test_same_clips_with_any_workers_world_size_and_cache(store):
    st, data = store
    plain = _epoch(st, 0)
    order = np.random.default_rng(0).permutation(N)
    expected = np.stack([data[order[k]][clip_indices(3, 1, k)] for k in range(N)])  # hand-gathered from numpy
    np.testing.assert_array_equal(plain[:, :-C].reshape(N, 60, DIM).numpy(), expected.astype(np.float32))
    fp16 = open_sources(st, {"train": np.arange(N)}, "fp16", torch.device("cpu"))["train"]
    for got in (_epoch(st, 2), _epoch(st, 0, world=2), _epoch(st, 2, world=3), _epoch(fp16, 0), _epoch(fp16, 2, world=2)):
        torch.testing.assert_close(got, plain, rtol=0, atol=0)


class _Slow(TrainClips):
    """Reads that finish out of order, and one that fails."""

    def __getitems__(self, positions):
        if positions[0] == 24:
            raise OSError("disk gone")
        time.sleep(0.02 * (positions[0] % 16 == 0))
        return super().__getitems__(positions)


def test_read_ahead_keeps_order_propagates_errors_and_stops_early(store):
    st, _ = store
    ds = _Slow(st, np.arange(N), _targets(N), seed=3, epoch=1)
    loader = BatchLoader(ds, chunks(24, 8), workers=3)
    assert len(loader) == 3
    assert [pos.tolist() for _, _, pos in loader] == [list(range(k, k + 8)) for k in (0, 8, 16)]
    with pytest.raises(OSError, match="disk gone"):
        list(BatchLoader(ds, chunks(N, 8), workers=2))
    for _ in BatchLoader(ds, chunks(N, 8), workers=2):
        break                                    # an abandoned loader leaves no thread behind
    assert not [t for t in threading.enumerate() if t.name.startswith("videolt-loader")]
