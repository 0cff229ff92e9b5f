"""Feature store reads: 128 random rows × 60 sorted random frames from an (N, 150, 2048) float16 set.

Compares a serial `arr[i]` per row, one orthogonal selection over the rows, and `read_frames` with
thread pools of 2–16, interleaved batch by batch so that load drift on a shared machine hits every
way alike; also times `write_row` and `status()`. The recorded figures (benchmarks/RESULTS.md,
"## store") are for a zstd set, the default here:

    .venv/bin/python benchmarks/store.py --rows 512
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

import videolt.data.store as st
from videolt.data.store import FeatureStore

BATCH, FRAMES_PER_CLIP = 128, 60


def _threads(path: Path, n: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """`read_frames` of its own store, whose read pool (created on first use) has `n` threads."""
    store = FeatureStore.open(path)

    def read(idx: np.ndarray, frames: np.ndarray) -> np.ndarray:
        st._READ_THREADS = n  # read per call: how many parts a batch is split into
        return store.read_frames(idx, frames)

    return read


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=512, help="videos in the set (N)")
    p.add_argument("--batches", type=int, default=9, help="timed batches per way (median reported)")
    p.add_argument("--compression", choices=("zstd", "none"), default="zstd", help="the set's chunk codec")
    p.add_argument("--dir", default=None, help="where to write the set (default: a fresh temp folder)")
    args = p.parse_args()
    if args.rows < BATCH:
        p.error(f"--rows must be at least {BATCH}: a batch takes {BATCH} distinct rows")

    n = args.rows
    root = Path(args.dir or tempfile.mkdtemp(prefix="videolt-bench-store-"))
    rng = np.random.default_rng(0)
    store = FeatureStore.create(root / "f.zarr", [f"v{i:010d}" for i in range(n)], compression=args.compression,
                                attrs={})
    t = time.perf_counter()
    for i in range(n):
        store.write_row(i, rng.standard_normal((150, 2048), dtype=np.float32), 150)
    print(f"write_row: {(time.perf_counter() - t) / n * 1e3:.1f} ms/row ({args.compression})")
    batches = [(rng.choice(n, BATCH, replace=False), np.sort(rng.integers(0, 150, (BATCH, FRAMES_PER_CLIP)), axis=1))
               for _ in range(args.batches)]

    arr = store._feats  # the zarr array itself, for the ways read_frames replaced
    ways: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
        "serial arr[i] + gather": lambda idx, fr: np.stack([arr[int(i)][f] for i, f in zip(idx, fr)]),
        "orthogonal selection of rows + gather": lambda idx, fr: arr.get_orthogonal_selection(
            (np.sort(idx),))[np.argsort(np.argsort(idx))][np.arange(len(idx))[:, None], fr],
    }
    for threads in (2, 4, 8, 16):
        ways[f"read_frames, thread pool {threads}"] = _threads(root / "f.zarr", threads)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for idx, fr in batches:  # interleaved, so load drift on a shared machine hits every way alike
        for name, fn in ways.items():
            t = time.perf_counter()
            fn(idx, fr)
            times[name].append(time.perf_counter() - t)
    for name, ts in times.items():
        print(f"{name:40s} median {np.median(ts) * 1e3:6.0f} ms  ({BATCH / np.median(ts):5.0f} rows/s)")
    t = time.perf_counter()
    store.status()
    print(f"status() of {n} rows: {(time.perf_counter() - t) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
