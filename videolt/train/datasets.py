"""Feature datasets: training clips (60 sorted frames drawn with replacement) and full test videos.

The fast path reads a whole batch with one `read_frames` call (`__getitems__`, which `BatchLoader`
calls once per batch), instead of loading each video's whole [150, D] array per item as the
reference does. Every training item draws its frames from its own generator, seeded by (seed,
epoch, position in the epoch), so the clips are the same whatever the number of loader workers and
a resumed run sees exactly the clips of an uninterrupted one.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from videolt.data.manifest import VideoRow
from videolt.data.store import STATUS_DONE, FeatureStore
from videolt.errors import UsageError

__all__ = ["BatchLoader", "FrameSource", "InMemoryFrames", "TestClips", "TrainClips", "chunks", "clip_indices",
           "preload", "rank_share", "split_rows"]

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x [B, T, D], y [B, C], positions [B]


class FrameSource(Protocol):
    """What the datasets read from: a `FeatureStore` or an `InMemoryFrames`."""

    frames: int
    dim: int

    def read_frames(self, indices: np.ndarray, frame_idx: np.ndarray) -> np.ndarray: ...

    def read_rows(self, indices: np.ndarray) -> np.ndarray: ...


class InMemoryFrames:
    """Some store rows held in RAM (float16 numpy) or on a device (torch tensor), read like a store."""

    def __init__(self, rows: np.ndarray, data: np.ndarray | torch.Tensor):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.data = data  # [len(rows), frames, dim]
        self.frames, self.dim = int(data.shape[1]), int(data.shape[2])
        self._order = np.argsort(self.rows)

    def _positions(self, indices: np.ndarray) -> np.ndarray:
        pos = self._order[np.searchsorted(self.rows, indices, sorter=self._order)]
        if not np.array_equal(self.rows[pos], indices):
            raise KeyError(f"rows {np.setdiff1d(indices, self.rows)[:5].tolist()} were not preloaded")
        return pos

    def read_frames(self, indices: np.ndarray, frame_idx: np.ndarray) -> np.ndarray | torch.Tensor:
        pos = self._positions(np.asarray(indices, dtype=np.int64))
        if isinstance(self.data, torch.Tensor):
            p = torch.as_tensor(pos, device=self.data.device)[:, None]
            return self.data[p, torch.as_tensor(frame_idx, device=self.data.device)]
        return self.data[pos[:, None], frame_idx]

    def read_rows(self, indices: np.ndarray) -> np.ndarray | torch.Tensor:
        pos = self._positions(np.asarray(indices, dtype=np.int64))
        if isinstance(self.data, torch.Tensor):
            return self.data[torch.as_tensor(pos, device=self.data.device)]
        return self.data[pos]


def preload(store: FrameSource, rows: Sequence[int], device: torch.device | None = None,
            max_device_fraction: float = 0.5) -> InMemoryFrames:
    """Load `rows` into RAM as float16 once; onto `device` (CUDA) too when it takes < half its free memory."""
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    data = np.asarray(store.read_rows(rows), dtype=np.float16)
    if device is not None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if data.nbytes < max_device_fraction * free:
            return InMemoryFrames(rows, torch.from_numpy(data).to(device))
        log.info("preload: %.1f GB does not fit on %s; keeping it in RAM", data.nbytes / 1e9, device)
    return InMemoryFrames(rows, data)


def clip_indices(seed: int, epoch: int, position: int, frames: int = 150, clip_len: int = 60) -> np.ndarray:
    """`clip_len` frame indices drawn uniformly with replacement from [0, frames), sorted (docs/semantics.md §3)."""
    rng = np.random.default_rng([seed, epoch, position])
    return np.sort(rng.integers(0, frames, size=clip_len))


def _tensor(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))


class TrainClips(Dataset):
    """Item k = a clip of the video at store row `indices[k]`, with multi-hot `targets[k]`.

    `indices` is this epoch's order (it may repeat videos, e.g. under class-balanced sampling);
    item k's frames depend only on (seed, epoch, k).
    """

    def __init__(self, store: FrameSource, indices: Sequence[int], targets: np.ndarray, *, clip_len: int = 60,
                 seed: int, epoch: int):
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.float32)
        if len(self.targets) != len(self.indices):
            raise ValueError(f"{len(self.indices)} indices but {len(self.targets)} targets")
        self.clip_len, self.seed, self.epoch = clip_len, seed, epoch

    def __len__(self) -> int:
        return len(self.indices)

    def frame_idx(self, positions: Sequence[int]) -> np.ndarray:
        idx = [clip_indices(self.seed, self.epoch, int(k), self.store.frames, self.clip_len) for k in positions]
        return np.array(idx, dtype=np.int64).reshape(len(idx), self.clip_len)  # [B, T]; B = 0 for an empty DDP share

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, _ = self.__getitems__([k])
        return x[0], y[0]

    def __getitems__(self, positions: Sequence[int]) -> Batch:
        pos = np.asarray(positions, dtype=np.int64)
        x = self.store.read_frames(self.indices[pos], self.frame_idx(pos))  # [B, T, D], one read
        return _tensor(x), torch.from_numpy(self.targets[pos]), torch.from_numpy(pos)


class TestClips(Dataset):
    """Item k = all frames of the video at store row `indices[k]` (docs/semantics.md §3: test on all 150)."""

    __test__ = False  # not a pytest class, despite the name

    def __init__(self, store: FrameSource, indices: Sequence[int], targets: np.ndarray):
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, _ = self.__getitems__([k])
        return x[0], y[0]

    def __getitems__(self, positions: Sequence[int]) -> Batch:
        pos = np.asarray(positions, dtype=np.int64)
        return _tensor(self.store.read_rows(self.indices[pos])), torch.from_numpy(self.targets[pos]), \
            torch.from_numpy(pos)


class BatchLoader:
    """Yields `(x, y, positions)` per batch of dataset positions, in order, one read per batch.

    With `workers` > 0, up to 2 x `workers` batches are read ahead on threads of this process
    rather than in DataLoader worker processes: handing a ~30 MB batch from a worker process costs
    3-4x its raw read (benchmarks/RESULTS.md "## train"), while the reads (positioned file reads,
    zstd decoding, numpy gathers) release the GIL. A preloaded source is gathered on demand.
    """

    def __init__(self, dataset: TrainClips | TestClips, batches: Sequence[Sequence[int]], *, workers: int = 0,
                 pin_memory: bool = False):
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.dataset = dataset
        self.batches = [np.asarray(b, dtype=np.int64) for b in batches]
        in_memory = isinstance(dataset.store, InMemoryFrames)
        self.workers = 0 if in_memory else workers
        self.pin_memory = pin_memory and not (in_memory and isinstance(dataset.store.data, torch.Tensor))

    def __len__(self) -> int:
        return len(self.batches)

    def _read(self, positions: np.ndarray) -> Batch:
        x, y, pos = self.dataset.__getitems__(positions)
        if self.pin_memory:
            x, y = x.pin_memory(), y.pin_memory()
        return x, y, pos

    def __iter__(self) -> Iterator[Batch]:
        if self.workers == 0:
            yield from map(self._read, self.batches)
            return
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="videolt-loader")
        try:
            ahead: deque[Future[Batch]] = deque()
            todo = iter(self.batches)
            for positions in itertools.islice(todo, 2 * self.workers):
                ahead.append(pool.submit(self._read, positions))
            while ahead:
                batch = ahead.popleft().result()
                for positions in itertools.islice(todo, 1):
                    ahead.append(pool.submit(self._read, positions))
                yield batch
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def chunks(n: int, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches of positions 0..n-1; the last partial batch is kept."""
    return [np.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def rank_share(batch: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank `rank`'s part of a global batch under DDP: the batch cut into `world` consecutive pieces.

    The pieces keep the batch's order and differ in size by at most one (the first `len % world`
    ranks get one more), so the ranks together read exactly a single process's batch; a piece is
    empty when the batch has fewer items than ranks (a short last batch).
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank must lie in [0, {world}), got {rank}")
    return np.array_split(np.asarray(batch), world)[rank]


def split_rows(manifest_rows: Sequence[VideoRow], store: FeatureStore) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Store rows and labels of a split's videos whose features are done (the rest are skipped, logged)."""
    done = store.status() == STATUS_DONE
    kept = [r for r in manifest_rows if done[r.index]]
    if len(kept) < len(manifest_rows):
        log.info("%d of %d videos have no features; skipped", len(manifest_rows) - len(kept), len(manifest_rows))
    if not kept:
        raise UsageError(f"{store.path}: no video of this split has features")
    return np.array([r.index for r in kept], dtype=np.int64), [r.labels for r in kept]
