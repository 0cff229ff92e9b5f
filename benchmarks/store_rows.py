"""Per-row read cost of one (150, 2048) float16 row plus a gather of 60 sorted frames: zarr (zstd and
raw chunks), `np.load` of a float32 `.npy` (the reference's layout), and raw chunk files read whole,
into a buffer, or by `preadv` (the span of the frames, or each distinct frame). Single thread, warm
page cache; every way is checked to return the same frames first. Recorded in benchmarks/RESULTS.md
("## train", the per-row table):

    .venv/bin/python benchmarks/store_rows.py --rows 256 --dir /tmp/m/sets
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import zarr

F, D = 150, 2048


def _make(root: Path, n: int, rng: np.random.Generator) -> None:
    """The same random rows as a zstd zarr array, a raw (uncompressed) one, and float32 .npy files."""
    g = zarr.open_group(str(root / "s.zarr"), mode="w")
    z = g.create_array("zstd", shape=(n, F, D), chunks=(1, F, D), dtype="float16", fill_value=0)
    u = g.create_array("none", shape=(n, F, D), chunks=(1, F, D), dtype="float16", fill_value=0, compressors=None)
    (root / "npy").mkdir()
    for i in range(n):
        row = rng.standard_normal((F, D)).astype(np.float16)
        z[i] = row
        u[i] = row
        np.save(root / "npy" / f"{i}.npy", row.astype(np.float32))


def _ways(root: Path, frames: list[np.ndarray]) -> dict[str, Callable[[int], np.ndarray]]:
    g = zarr.open_group(str(root / "s.zarr"), mode="r")
    z, u = g["zstd"], g["none"]

    def chunk(i: int) -> str:
        return str(root / "s.zarr" / "none" / "c" / str(i) / "0" / "0")

    def raw_whole(i: int) -> np.ndarray:
        return np.fromfile(chunk(i), dtype="<f2").reshape(F, D)[frames[i]]

    buf = np.empty((F, D), "<f2")

    def raw_readinto(i: int) -> np.ndarray:
        with open(chunk(i), "rb", buffering=0) as f:
            f.readinto(memoryview(buf).cast("B"))
        return buf[frames[i]]

    def raw_pread_frames(i: int) -> np.ndarray:
        uniq, inv = np.unique(frames[i], return_inverse=True)
        out = np.empty((len(uniq), D), "<f2")
        mv = memoryview(out).cast("B")
        fd = os.open(chunk(i), os.O_RDONLY)
        try:
            for k, t in enumerate(uniq):
                os.preadv(fd, [mv[k * D * 2:(k + 1) * D * 2]], int(t) * D * 2)
        finally:
            os.close(fd)
        return out[inv]

    def raw_pread_span(i: int) -> np.ndarray:
        fr = frames[i]
        lo, hi = int(fr[0]), int(fr[-1]) + 1
        out = np.empty((hi - lo, D), "<f2")
        fd = os.open(chunk(i), os.O_RDONLY)
        try:
            os.preadv(fd, [memoryview(out).cast("B")], lo * D * 2)
        finally:
            os.close(fd)
        return out[fr - lo]

    return {
        "zarr zstd arr[i] + gather": lambda i: z[i][frames[i]],
        "zarr none arr[i] + gather": lambda i: u[i][frames[i]],
        "np.load float32 .npy + gather": lambda i: np.load(root / "npy" / f"{i}.npy")[frames[i]],
        "raw chunk np.fromfile + gather": raw_whole,
        "raw chunk readinto + gather": raw_readinto,
        "raw chunk pread span + gather": raw_pread_span,
        "raw chunk pread unique frames": raw_pread_frames,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=256, help="rows written and read")
    p.add_argument("--passes", type=int, default=5, help="timed passes over all rows (median reported)")
    p.add_argument("--dir", default=None, help="the sets, written on the first run and reused (default: a temp folder)")
    args = p.parse_args()

    root = Path(args.dir or tempfile.mkdtemp(prefix="videolt-bench-rows-"))
    if not (root / "s.zarr").exists():
        root.mkdir(parents=True, exist_ok=True)
        _make(root, args.rows, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    frames = [np.sort(rng.integers(0, F, 60)) for _ in range(args.rows)]
    ways = _ways(root, frames)
    for i in range(args.rows):  # warm the page cache, check agreement
        ref = ways["zarr zstd arr[i] + gather"](i)
        for name, fn in ways.items():
            assert np.array_equal(np.asarray(fn(i), dtype=np.float16), ref), name
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.passes):
        for name, fn in ways.items():
            t = time.perf_counter()
            for i in range(args.rows):
                fn(i)
            times[name].append((time.perf_counter() - t) / args.rows)
    for name, ts in times.items():
        print(f"{name:34s} {np.median(ts) * 1e6:8.0f} us/row  ({1 / np.median(ts):7.0f} rows/s)")


if __name__ == "__main__":
    main()
