"""Feature caches: a split's rows held compactly in memory (on the GPU, else in host RAM), read like a store.

Streaming reads nearly all of every train row from disk each epoch (a clip's 60 sorted frames span
most of the 150); at VideoLT's size that is 107 GB per epoch. A cache reads the rows once and
serves every batch from memory. The train config's `cache` key picks it:

- `stream`: no cache; every batch is read from the store.
- `fp16`: the rows as stored (float16), bit for bit, so a run gives exactly the streaming results.
- `int8`: one byte per value with a scale and zero point per row and channel (`quantise.py`): half the
  memory of fp16 plus 8 bytes per row and channel; reads back within half a quantisation step.
  Opt-in only: it changes the numbers a run sees.
- `auto` (default): fp16 where it fits, else stream; never int8.

Placement, per split in order (train, then the evaluation splits): on the training GPU when it fits
beside the model, its optimizer state and one step's activations (`memory.device_reserve` measures them
with a probe step), else in pinned host RAM when it fits there, else the split streams and one log
line says why.

The int8 cache is written once next to its feature set, `features/.<name>.zarr.cache/<split>-int8-<key>/`,
and later runs, the other runs of a benchmark and `videolt evaluate` map it instead of re-reading
the set. Its key hashes the set's integrity facts (status, and size, mtime and inode of each row's
chunk file: `FeatureStore.chunk_stats`), the set's creation time and the split's rows, never the
data: a rewritten set gets a new key, hence a new cache, and the old one is removed. Every row is
checked once when a cache is built (done, chunk present and of the right size, finite values, and
unchanged by the end of the build). An fp16 cache is the store's own bytes, so it is only held in
memory (a copy on disk would double 110 GB); inside `shared()` (the benchmark grid) every cache
stays in memory for the next run that asks for the same rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np
import torch

from videolt.data.integrity import chunk_damage
from videolt.data.store import STATUS_DONE, FeatureStore
from videolt.errors import VideoltError
from videolt.train import memory
from videolt.train.quantise import dequantise, quantise

__all__ = ["CACHE_KINDS", "FeatureCache", "cache_bytes", "cache_root", "open_sources", "shared"]

log = logging.getLogger(__name__)

CACHE_KINDS = ("auto", "stream", "fp16", "int8")
_FORMAT = 2  # bump when the on-disk layout or the quantisation changes
_BLOCK_BYTES = 256 * 2**20  # feature bytes read per block while building or loading


def cache_bytes(kind: str, rows: int, frames: int, dim: int) -> int:
    """Memory of a cache of `rows` rows: 2 bytes per value for fp16; 1 plus 8 per row and channel for int8."""
    if kind == "fp16":
        return rows * frames * dim * 2
    return rows * frames * dim + rows * dim * 8


# -- the cache ------------------------------------------------------------------------------------

class FeatureCache:
    """Store rows `rows` (ascending) held as fp16 values or int8 codes on one device; reads like a store.

    `read_frames` and `read_rows` take store rows and return torch tensors on `out_device` (the
    training device; by default where the cache is held): float16 (exactly the stored values) for
    fp16, float32 (dequantised) for int8. A cache held in host RAM for a GPU run gathers on the host
    and sends the gathered codes (int8: 1 byte a value) to the GPU, where they are dequantised.
    """

    def __init__(self, kind: str, rows: np.ndarray, codes: torch.Tensor, scale: torch.Tensor | None = None,
                 zero: torch.Tensor | None = None, key: str = "", out_device: torch.device | None = None):
        self.kind, self.rows, self.key = kind, np.asarray(rows, dtype=np.int64), key
        self.codes, self.scale, self.zero = codes, scale, zero  # [N, T, D]; [N, D], [N, D] for int8
        self.frames, self.dim = int(codes.shape[1]), int(codes.shape[2])
        self.out_device = codes.device if out_device is None else torch.device(out_device)

    @property
    def device(self) -> torch.device:
        """Where the cache is held, hence where its row and frame indices go."""
        return self.codes.device

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.codes, self.scale, self.zero) if t is not None)

    def positions(self, indices: np.ndarray) -> np.ndarray:
        """Places of store rows `indices` in the cache (KeyError for a row it does not hold)."""
        indices = np.asarray(indices, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.rows, indices), max(len(self.rows) - 1, 0))
        if len(indices) and (not len(self.rows) or not np.array_equal(self.rows[pos], indices)):
            raise KeyError(f"rows {np.setdiff1d(indices, self.rows)[:5].tolist()} are not in this cache")
        return pos

    def _decode(self, pos: np.ndarray, frame_idx: torch.Tensor | np.ndarray | None) -> torch.Tensor:
        if self.device.type == "cpu":
            return self._decode_host(pos, frame_idx)
        p = torch.as_tensor(pos).to(self.device, non_blocking=True)
        if frame_idx is None:
            codes = self.codes.index_select(0, p)  # [B, T, D]
        else:  # one gather of whole frames (`index_select`: on the CPU much faster than advanced indexing)
            frame_idx = torch.as_tensor(frame_idx).to(self.device, non_blocking=True)
            flat = (p[:, None] * self.frames + frame_idx).reshape(-1)
            codes = self.codes.view(-1, self.dim).index_select(0, flat).view(*frame_idx.shape, self.dim)
        return codes if self.kind == "fp16" else dequantise(codes, self.scale[p], self.zero[p])

    def _decode_host(self, pos: np.ndarray, frame_idx: torch.Tensor | np.ndarray | None) -> torch.Tensor:
        """The same values as the torch path, by numpy: its `take` and conversions are the faster on the CPU
        (benchmarks/RESULTS.md "## cache (issue 22)")."""
        codes = self.codes.numpy()
        if frame_idx is None:
            got = codes.take(pos, axis=0)
        else:
            frame_idx = frame_idx.numpy() if isinstance(frame_idx, torch.Tensor) else np.asarray(frame_idx)
            flat = (pos[:, None] * self.frames + frame_idx).reshape(-1)
            got = codes.reshape(-1, self.dim).take(flat, axis=0).reshape(*frame_idx.shape, self.dim)
        if self.kind == "fp16":
            return self._land(got)
        scale, zero = self.scale.numpy()[pos], self.zero.numpy()[pos]
        if self.out_device.type != "cpu":
            return dequantise(self._land(got), self._land(scale), self._land(zero))
        out = got.astype(np.float32)  # (q − z)·s as `dequantise`: the difference, then one product
        out -= zero[:, None]
        out *= scale[:, None]
        return torch.from_numpy(out)

    def _land(self, a: np.ndarray) -> torch.Tensor:
        """A host array as a tensor on `out_device` (through pinned memory, without waiting for the copy)."""
        t = torch.from_numpy(a)
        return t if self.out_device.type == "cpu" else t.pin_memory().to(self.out_device, non_blocking=True)

    def read_frames(self, indices: np.ndarray, frame_idx: torch.Tensor | np.ndarray) -> torch.Tensor:
        """out[k, t] = row indices[k], frame frame_idx[k, t]: [len, T, D]."""
        return self._decode(self.positions(indices), frame_idx)

    def read_rows(self, indices: np.ndarray) -> torch.Tensor:
        """Whole rows [len, frames, D]."""
        return self._decode(self.positions(indices), None)


def _empty(kind: str, n: int, frames: int, dim: int, device: torch.device, pin: bool) -> list[torch.Tensor]:
    """Uninitialised codes (and scale, zero point for int8) for `n` rows."""
    pin = pin and device.type == "cpu"
    dtype = torch.float16 if kind == "fp16" else torch.uint8
    out = [torch.empty((n, frames, dim), dtype=dtype, device=device, pin_memory=pin)]
    if kind == "int8":
        out += [torch.empty((n, dim), dtype=torch.float32, device=device, pin_memory=pin) for _ in range(2)]
    return out


# -- building: keys, row checks, blocks -----------------------------------------------------------

def _facts(store: FeatureStore, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The integrity facts of `rows`: status [n] and chunk-file (size, mtime_ns, inode) [n, 3]."""
    return store.status()[rows], store.chunk_stats(rows)


def _key(store: FeatureStore, rows: np.ndarray, kind: str, facts: tuple[np.ndarray, np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps({"format": _FORMAT, "kind": kind, "path": str(Path(store.path).resolve()),
                                   "shape": [store.n, store.frames, store.dim], "dtype": str(store.dtype),
                                   "compression": store.compression, "created": store.attrs.get("created")},
                                  sort_keys=True).encode())
    for a in (rows, *facts):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:20]


def _check_rows(store: FeatureStore, rows: np.ndarray, facts: tuple[np.ndarray, np.ndarray]) -> None:
    """Every row done with its whole chunk file (the integrity rule, on the facts the key was made of)."""
    status, stats = facts
    if (status != STATUS_DONE).any():
        row = int(rows[np.flatnonzero(status != STATUS_DONE)[0]])
        raise VideoltError(f"{store.path}: row {row} ({store.video_ids[row]}) has no features: status "
                           f"{int(store.status()[row])}; it cannot be cached")
    damaged = chunk_damage(stats[:, 0], store.row_bytes) if store.row_chunks else {}
    if damaged:
        k, what = next(iter(damaged.items()))
        raise store.damage(int(rows[k]), what)


def _blocks(store: FeatureStore, rows: np.ndarray) -> Iterator[tuple[int, torch.Tensor]]:
    """(start, float16 rows [b, T, D]) over `rows`, each block checked for non-finite values."""
    step = max(1, _BLOCK_BYTES // (store.frames * store.dim * 2))
    for start in range(0, len(rows), step):
        block = torch.from_numpy(store.read_rows(rows[start:start + step]).astype(np.float16, copy=False))
        special = (block.view(torch.int16) & 0x7C00) == 0x7C00  # float16 NaN/Inf: all exponent bits set
        bad = special.flatten(1).any(dim=1)
        if bool(bad.any()):
            row = int(rows[start + int(torch.nonzero(bad)[0])])
            raise VideoltError(f"{store.path}: row {row} ({store.video_ids[row]}) holds NaN/Inf; cannot cache it")
        yield start, block


def _encoded(kind: str, blocks: Iterator[tuple[int, torch.Tensor]]) -> Iterator[tuple[int, list[torch.Tensor]]]:
    for start, block in blocks:
        yield start, [block] if kind == "fp16" else list(quantise(block))


def _fill(dest: list[torch.Tensor], parts: Iterator[tuple[int, list[torch.Tensor]]]) -> None:
    for start, arrays in parts:
        for d, a in zip(dest, arrays):
            d[start:start + len(a)].copy_(a, non_blocking=False)


def _check_unchanged(store: FeatureStore, rows: np.ndarray, before: tuple[np.ndarray, np.ndarray]) -> None:
    after = _facts(store, rows)
    if not all(np.array_equal(a, b) for a, b in zip(before, after)):
        raise VideoltError(f"{store.path}: rows were rewritten while their cache was built; run again")


# -- the int8 cache on disk -------------------------------------------------------------------------

_FILES = ("codes", "scale", "zero")


def cache_root(store: FeatureStore) -> Path:
    """`features/.<name>.zarr.cache/`, beside the set (zarr warns about foreign entries inside it)."""
    return store.path.with_name(f".{store.path.name}.cache")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _int8_on_disk(store: FeatureStore, rows: np.ndarray, tag: str, key: str,
                  facts: tuple[np.ndarray, np.ndarray]) -> Path | None:
    """The folder of this int8 cache, written first if needed; None when the disk has no room (logged)."""
    root = cache_root(store)
    entry = root / f"{tag}-int8-{key}"
    if (entry / "meta.json").is_file():
        return entry
    root.mkdir(exist_ok=True)
    with _locked(root / f"{tag}-int8.lock"):  # one builder; DDP ranks and parallel jobs wait, then map it
        if (entry / "meta.json").is_file():
            return entry
        need = cache_bytes("int8", len(rows), store.frames, store.dim)
        free = shutil.disk_usage(root).free
        if free < need * 1.05:
            log.warning("cache int8 of %s: %.1f GB needed on disk, %.1f GB free; keeping it in memory only",
                        tag, need / 1e9, free / 1e9)
            return None
        tmp = root / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            tic = time.perf_counter()
            shapes = {"codes": (len(rows), store.frames, store.dim), "scale": (len(rows), store.dim),
                      "zero": (len(rows), store.dim)}
            dtypes = {"codes": np.uint8, "scale": np.float32, "zero": np.float32}
            files = [np.lib.format.open_memmap(tmp / f"{n}.npy", mode="w+", dtype=dtypes[n], shape=shapes[n])
                     for n in _FILES]
            _fill([torch.from_numpy(f) for f in files], _encoded("int8", _blocks(store, rows)))
            for f in files:
                f.flush()
            del files
            _check_unchanged(store, rows, facts)
            np.save(tmp / "rows.npy", rows)
            meta = {"format": _FORMAT, "kind": "int8", "split": tag, "key": key, "rows": int(len(rows)),
                    "frames": store.frames, "dim": store.dim, "bytes": need, "feature_set": str(store.path),
                    "build_seconds": round(time.perf_counter() - tic, 1)}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            os.rename(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("cache int8 of %s: %d rows written to %s in %.0f s", tag, len(rows), entry, meta["build_seconds"])
        for stale in root.glob(f"{tag}-int8-*"):  # caches of an older state of the set
            if stale != entry:
                shutil.rmtree(stale, ignore_errors=True)
    return entry


def _mapped(entry: Path) -> Iterator[tuple[int, list[torch.Tensor]]]:
    """Blocks of a written int8 cache, read from its files."""
    arrays = [np.load(entry / f"{n}.npy", mmap_mode="r") for n in _FILES]
    n, frames, dim = arrays[0].shape
    step = max(1, _BLOCK_BYTES // (frames * dim))
    for start in range(0, n, step):
        yield start, [torch.from_numpy(np.array(a[start:start + step])) for a in arrays]


# -- sharing within a process (the benchmark grid) ------------------------------------------------

_shared: dict[tuple, FeatureCache] | None = None


@contextlib.contextmanager
def shared() -> Iterator[None]:
    """Keep every cache built inside this block for later runs of the same rows (one process)."""
    global _shared
    outer = _shared
    if outer is None:
        _shared = {}
    try:
        yield
    finally:
        if outer is None:
            _shared = None


def _remember(store: FeatureStore, tag: str, cache: FeatureCache) -> None:
    if _shared is None:
        return
    path = str(store.path)
    for k in [k for k in _shared if k[0] != path or k[1] == tag]:  # another set's, or a stale one of this split
        del _shared[k]
    _shared[(path, tag, cache.kind, cache.key)] = cache


# -- the entry point ------------------------------------------------------------------------------

def open_sources(store: FeatureStore, splits: Mapping[str, np.ndarray], request: str, device: torch.device,
                 reserve: int = 0, agree: Callable[[bool], bool] | None = None) -> dict[str, FeatureStore | FeatureCache]:
    """What each split is read from: its cache, or the store where `request` is stream or it does not fit.

    `splits` maps a split name to its store rows, in the order they claim memory (train first).
    `reserve`: GPU bytes the run needs beside its caches (`memory.device_reserve`). `agree` (DDP) turns this
    rank's "the train split is cached" into the ranks' common answer, so that no rank trains on int8
    while another streams.
    """
    if request not in CACHE_KINDS:
        raise ValueError(f"cache must be one of {', '.join(CACHE_KINDS)}, got {request!r}")
    if request == "stream":
        return {split: store for split in splits}
    kind = "int8" if request == "int8" else "fp16"
    room = memory.Room(device, memory.device_available(device, reserve), memory.host_available())
    keyed = {}
    for split, rows in splits.items():
        rows = np.unique(np.asarray(rows, dtype=np.int64))  # ascending, as `FeatureCache` looks rows up
        facts = _facts(store, rows)
        keyed[split] = (rows, facts, _key(store, rows, kind, facts))
    held = {split: c for split, (_, _, key) in keyed.items() for k, c in (_shared or {}).items()
            if k == (str(store.path), split, kind, key)}
    places = {split: (held[split].device if split in held else
                      room.place(cache_bytes(kind, len(rows), store.frames, store.dim)))
              for split, (rows, _, _) in keyed.items()}
    if agree is not None and "train" in places and not agree(places["train"] is not None):
        places["train"] = None
    out: dict[str, FeatureStore | FeatureCache] = {}
    for split, (rows, facts, key) in keyed.items():
        if split in held:
            out[split] = held[split]
            log.info("cache %s of %s: reused (%.1f GB on %s)", kind, split, held[split].nbytes / 1e9, held[split].device)
            continue
        where = places[split]
        if where is None:
            need = cache_bytes(kind, len(rows), store.frames, store.dim)
            (log.info if request == "auto" else log.warning)(
                "cache %s of %s (%.1f GB) does not fit (%s); streaming it from the store", kind, split, need / 1e9,
                room.describe())
            out[split] = store
            continue
        out[split] = _build(store, split, rows, facts, key, kind, where, out_device=device)
        _remember(store, split, out[split])
    return out


def _build(store: FeatureStore, tag: str, rows: np.ndarray, facts: tuple[np.ndarray, np.ndarray], key: str,
           kind: str, device: torch.device, out_device: torch.device) -> FeatureCache:
    """The cache of `rows` held on `device`, read on `out_device`: read (and checked) from the store, or
    mapped from disk for int8. Host RAM is pinned when the reads land on a GPU."""
    tic = time.perf_counter()
    pin = out_device.type == "cuda"
    _check_rows(store, rows, facts)
    dest = _empty(kind, len(rows), store.frames, store.dim, device, pin)
    entry = _int8_on_disk(store, rows, tag, key, facts) if kind == "int8" else None
    if entry is not None:
        _fill(dest, _mapped(entry))
    else:
        _fill(dest, _encoded(kind, _blocks(store, rows)))
        _check_unchanged(store, rows, facts)
    cache = FeatureCache(kind, rows, *dest, key=key, out_device=out_device)
    log.info("cache %s of %s: %d rows, %.1f GB on %s%s in %.1f s", kind, tag, len(rows), cache.nbytes / 1e9, device,
             " (pinned)" if pin and device.type == "cpu" else "", time.perf_counter() - tic)
    return cache
