"""What integrity costs (issue 23): the check of every done row, the zarr path's per-read check, the backup.

- `damaged_rows` (one `stat` per done row, as `extract` does at its start and `videolt check` per set)
  against reading those rows (`read_rows`), on a raw (N, 150, 2048) float16 set;
- on a zstd set, a row read through the store's zarr path (with its check of a row read as all
  zeros) against zarr's bare read of it, row by row, alternating which goes first;
- `Manifest.backup` (SQLite backup API + `quick_check`, at the end of every stage) of a manifest of
  `--videos` rows with a state per video for download, decode and one feature set, against a plain
  file copy of it.

    .venv/bin/python benchmarks/integrity.py --rows 2000 --videos 256000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from videolt.data.integrity import damaged_rows
from videolt.data.manifest import Manifest
from videolt.data.store import FeatureStore


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return min(times)


def _store(path: Path, rows: int, compression: str) -> FeatureStore:
    store = FeatureStore.create(path, [f"v{i:010d}" for i in range(rows)], compression=compression, attrs={})
    rng = np.random.default_rng(0)
    row = rng.standard_normal((150, 2048)).astype(np.float16)
    for i in range(rows):
        store.write_row(i, row, 150)
    return FeatureStore.open(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2000, help="rows of the raw feature set")
    p.add_argument("--zstd-rows", type=int, default=200, help="rows of the zstd feature set")
    p.add_argument("--videos", type=int, default=256000, help="videos in the manifest")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raw = _store(tmp / "raw.zarr", args.rows, "none")
        every = np.arange(raw.n)
        check = _best(lambda: damaged_rows(raw))
        read = _best(lambda: raw.read_rows(every), repeat=2)
        print(f"raw set, {raw.n} done rows: damaged_rows {check * 1e6 / raw.n:.1f} us/row, read_rows "
              f"{read * 1e6 / raw.n:.0f} us/row: the check costs {check / read:.2%} of one read of the rows")
        shutil.rmtree(tmp / "raw.zarr")

        zstd = _store(tmp / "zstd.zarr", args.zstd_rows, "zstd")
        checked_s = bare_s = 0.0
        for k, r in enumerate(np.random.default_rng(1).permutation(np.repeat(np.arange(zstd.n), 3))):
            ways = [("checked", lambda: zstd._row_frames(int(r), 0, 150)), ("bare", lambda: zstd._feats[int(r), 0:150])]
            for name, fn in ways if k % 2 else ways[::-1]:  # row by row, alternating who goes first
                tic = time.perf_counter()
                fn()
                took = time.perf_counter() - tic
                checked_s, bare_s = (checked_s + took, bare_s) if name == "checked" else (checked_s, bare_s + took)
        n = 3 * zstd.n
        print(f"zstd set, {n} row reads: with the zarr path's check {checked_s * 1e6 / n:.0f} us/row, bare zarr "
              f"{bare_s * 1e6 / n:.0f} us/row: {checked_s / bare_s:.3f}x")

        path = tmp / "manifest.sqlite"
        ids = [f"{i:011d}" for i in range(args.videos)]
        with Manifest.create(path, ((v, "train", (i % 1000,), True) for i, v in enumerate(ids))) as m:
            for stage in ("download", "decode", "features:r50"):
                m.record_many(stage, ((i, "done", None, None, {"path": f"videos/{v[:2]}/{v}.mp4", "n_frames": 150})
                                      for i, v in enumerate(ids)))
            backup = _best(lambda: m.backup(tmp / "copy.sqlite"), repeat=2)
        size = path.stat().st_size
        copy = _best(lambda: shutil.copyfile(path, tmp / "plain.sqlite"), repeat=2)
        print(f"manifest of {args.videos} videos ({size / 2**20:.0f} MiB): backup + quick_check {backup:.2f} s, "
              f"plain copy {copy:.2f} s ({backup / copy:.1f}x)")


if __name__ == "__main__":
    main()
