"""Feature datasets: training clips (60 sorted frames drawn with replacement) and full test videos.

The fast path reads a whole batch with one `read_frames` call (`__getitems__`, which `BatchLoader`
calls once per batch), instead of loading each video's whole [150, D] array per item as the
reference does. A training item's frames are a pure function of (seed, epoch, position in the
epoch), drawn for a whole batch by a counter-based generator (`philox.clip_frames`) on the device
the source reads to, so the clips are the same whatever the number of loader workers or DDP ranks,
a resumed run sees exactly the clips of an uninterrupted one, and streaming from the store and
reading from a cache (`cache.py`) see the same clips.
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
from videolt.data.protocol import FRAMES
from videolt.data.store import STATUS_DONE, FeatureStore
from videolt.errors import UsageError
from videolt.train.philox import clip_frames

__all__ = ["BatchLoader", "FrameSource", "TestClips", "TrainClips", "chunks", "clip_indices", "rank_share",
           "source_device", "split_rows"]

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x [B, T, D], y [B, C], positions [B]


class FrameSource(Protocol):
    """What the datasets read from: a `FeatureStore` (numpy) or a `FeatureCache` (torch, on its `device`)."""

    frames: int
    dim: int

    def read_frames(self, indices: np.ndarray, frame_idx: np.ndarray) -> np.ndarray | torch.Tensor: ...

    def read_rows(self, indices: np.ndarray) -> np.ndarray | torch.Tensor: ...


def source_device(source: FrameSource) -> torch.device | None:
    """Where a cache is held (its indices go there), or None for a store (numpy reads on the host)."""
    return getattr(source, "device", None)


def clip_indices(seed: int, epoch: int, position: int, frames: int = FRAMES, clip_len: int = 60) -> np.ndarray:
    """One clip's `clip_len` sorted frame indices (docs/semantics.md §3); `philox.clip_frames` draws whole batches."""
    return clip_frames(seed, epoch, np.array([position]), frames, clip_len)[0].numpy()


def _tensor(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))


class TrainClips(Dataset):
    """Item k = a clip of the video at store row `indices[order[k]]`, with multi-hot `targets[order[k]]`.

    `order` is this epoch's order of the train list (it may repeat videos, e.g. under class-balanced
    sampling; default: the list as given). Item k's frames depend only on (seed, epoch, k), drawn by
    the counter-based generator on the device the source reads to: per batch from a store, for the
    whole epoch at once from a cache (one call, so a GPU launches the generator's ~200 small kernels
    once per epoch, not per step). Both give the same integers.
    """

    def __init__(self, store: FrameSource, indices: Sequence[int], targets: np.ndarray, *, clip_len: int = 60,
                 seed: int, epoch: int, order: Sequence[int] | None = None):
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.float32)
        if len(self.targets) != len(self.indices):
            raise ValueError(f"{len(self.indices)} indices but {len(self.targets)} targets")
        self.order = np.arange(len(self.indices)) if order is None else np.asarray(order, dtype=np.int64)
        self.clip_len, self.seed, self.epoch = clip_len, seed, epoch
        device = source_device(store)
        self._epoch_frames = None if device is None else clip_frames(
            seed, epoch, np.arange(len(self.order)), store.frames, clip_len, device)  # [len, clip_len]

    def __len__(self) -> int:
        return len(self.order)

    def frame_idx(self, positions: Sequence[int]) -> torch.Tensor:
        """[B, clip_len] on the source's device (B = 0 for an empty DDP share)."""
        if self._epoch_frames is not None:
            pos = torch.as_tensor(np.asarray(positions, dtype=np.int64)).to(self._epoch_frames.device, non_blocking=True)
            return self._epoch_frames.index_select(0, pos)
        return clip_frames(self.seed, self.epoch, np.asarray(positions, dtype=np.int64), self.store.frames,
                           self.clip_len, device=source_device(self.store) or "cpu")

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, _ = self.__getitems__([k])
        return x[0], y[0]

    def __getitems__(self, positions: Sequence[int]) -> Batch:
        pos = np.asarray(positions, dtype=np.int64)
        item = self.order[pos]
        frame_idx = self.frame_idx(pos)
        if source_device(self.store) is None:
            frame_idx = frame_idx.numpy()
        x = self.store.read_frames(self.indices[item], frame_idx)  # [B, T, D], one read
        return _tensor(x), torch.from_numpy(self.targets[item]), torch.from_numpy(pos)


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
    rather than in DataLoader worker processes: handing a batch over from a worker process costs
    several times its raw read (benchmarks/RESULTS.md "## train"), while the reads (positioned file reads,
    zstd decoding, numpy gathers) release the GIL. A cache on a GPU is gathered on demand there.
    """

    def __init__(self, dataset: TrainClips | TestClips, batches: Sequence[Sequence[int]], *, workers: int = 0,
                 pin_memory: bool = False):
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.dataset = dataset
        self.batches = [np.asarray(b, dtype=np.int64) for b in batches]
        held = source_device(dataset.store)
        lands = getattr(dataset.store, "out_device", held)  # where a cache's reads land
        self.workers = 0 if held is not None and held.type != "cpu" else workers
        self.pin_memory = pin_memory and (lands is None or lands.type == "cpu")

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


def split_rows(manifest_rows: Sequence[VideoRow], store: FeatureStore, *, split: str | None = None
               ) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Store rows and labels of a split's videos whose features are done (the rest are skipped, logged);
    `split` names the split in the error when there are none."""
    done = store.status() == STATUS_DONE
    kept = [r for r in manifest_rows if done[r.index]]
    if len(kept) < len(manifest_rows):
        log.info("%d of %d videos have no features; skipped", len(manifest_rows) - len(kept), len(manifest_rows))
    if not kept:
        name = f"split {split or manifest_rows[0].split}" if split or manifest_rows else "this split"
        what = "lists no videos" if not manifest_rows else f"has no video with features in {store.path}"
        raise UsageError(f"{name} {what}")
    return np.array([r.index for r in kept], dtype=np.int64), [r.labels for r in kept]
