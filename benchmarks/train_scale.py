"""Training data at VideoLT's row shape: streaming from a cold store against the fp16 and int8 caches.

    python benchmarks/train_scale.py --rows 8000 --dir DIR [--workers 0] [--steps 3] [--delete]

On a raw feature set of `--rows` rows of 150 × 2048 float16 (written once into DIR, random values),
all in one process:
1. cold streaming: the set's pages dropped from the page cache (`posix_fadvise(DONTNEED)` on every
   chunk file), then one epoch of the training loader (TrainClips + BatchLoader, batches of 128 clips
   × 60 frames, `--workers` read-ahead threads): clips/s, and bytes read from the disk
   (/proc/self/io) against the bytes the clips' frame spans ask for;
2. the fp16 cache: built from the cold set (every row read and checked), its memory; one epoch of the
   same loader over it (gathers only);
3. the int8 cache: built from the cold set (read, checked, quantised, written beside the set), its
   size on disk and in memory; mapped again from its cold files as a later run would; one epoch of
   the loader over it (gather + dequantise);
4. the whole training step (the trainer's `_train_epoch`: NonLinear + FrameStack, 1,004 classes) on
   each source, `--steps` steps;
5. every figure extrapolated linearly to VideoLT's 179,334 train rows.
The caches live in host RAM here (no GPU): gathers on the CPU, dequantisation on the CPU.
`--delete` removes the set and its caches at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpu import bench_run, long_tail_counts, timed_epoch  # noqa: E402  (benchmarks/gpu.py)
from train import build_store  # noqa: E402  (benchmarks/train.py)

from videolt.data.store import FeatureStore  # noqa: E402
from videolt.train import cache  # noqa: E402
from videolt.train.datasets import BatchLoader, TrainClips, chunks  # noqa: E402

VIDEOLT_TRAIN = 179_334
CLASSES = 1004


def drop_pages(folder: Path) -> None:
    """Evict every file under `folder` from the page cache (flushed first: dirty pages cannot be dropped)."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def disk_read_bytes() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("read_bytes"))


def loader_epoch(source, rows: np.ndarray, targets: np.ndarray, workers: int, batch: int) -> tuple[float, int]:
    """(clips/s, disk bytes read) of one epoch of the training loader, clock from the first batch request."""
    order = np.random.default_rng(1).permutation(len(rows))
    loader = BatchLoader(TrainClips(source, rows, targets, seed=0, epoch=0, order=order), chunks(len(rows), batch),
                         workers=workers)
    before, tic, seen = disk_read_bytes(), time.perf_counter(), 0
    for x, _, _ in loader:
        seen += len(x)
    return seen / (time.perf_counter() - tic), disk_read_bytes() - before


def span_bytes(rows: int, frames: int, dim: int, clip: int) -> float:
    """Bytes the clips of one epoch ask for: each row read from its first to its last drawn frame."""
    from videolt.train.philox import clip_frames

    idx = clip_frames(0, 0, np.arange(min(rows, 20000)), frames, clip).numpy()
    return float((idx[:, -1] - idx[:, 0] + 1).mean()) * dim * 2 * rows


def timed(fn):
    tic = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - tic


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=8000)
    p.add_argument("--dir", type=Path, required=True, help="where the feature set (and its int8 cache) is written")
    p.add_argument("--workers", type=int, default=0, help="loader read-ahead threads")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=3, help="whole training steps timed per source")
    p.add_argument("--delete", action="store_true", help="remove the set and its caches at the end")
    args = p.parse_args()
    frames, dim, clip, cpu = 150, 2048, 60, torch.device("cpu")
    _, written = timed(lambda: build_store(args.dir / "scale.zarr", args.rows, frames, dim, "none", 0))
    store = FeatureStore.open(args.dir / "scale.zarr")
    shutil.rmtree(cache.cache_root(store), ignore_errors=True)  # every build below is timed from scratch
    rows = np.arange(args.rows)
    counts = long_tail_counts(CLASSES)
    rng = np.random.default_rng(0)
    targets = np.eye(CLASSES, dtype=np.float32)[rng.choice(CLASSES, args.rows, p=counts / counts.sum())]
    scale = VIDEOLT_TRAIN / args.rows
    print(f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M %Z')}; {args.rows} rows of {frames} × {dim} "
          f"float16 ({args.rows * frames * dim * 2 / 1e9:.1f} GB) ready in {written:.0f} s; {args.workers} workers",
          flush=True)
    res: dict[str, dict] = {}

    drop_pages(store.path)
    rate, read = loader_epoch(store, rows, targets, args.workers, args.batch_size)
    res["stream (cold)"] = {"clips_s": rate, "disk_read": read, "asked": span_bytes(args.rows, frames, dim, clip)}
    print(f"stream (cold): {rate:.0f} clips/s, {read / 1e9:.2f} GB read from disk", flush=True)

    for kind in ("fp16", "int8"):
        drop_pages(store.path)
        before = disk_read_bytes()
        src, built = timed(lambda: cache.open_sources(store, {"train": rows}, kind, cpu)["train"])
        entry = [*cache.cache_root(store).glob(f"train-{kind}-*")]
        on_disk = sum(f.stat().st_size for f in entry[0].iterdir()) if entry else 0
        res[kind] = {"build_s": built, "build_read": disk_read_bytes() - before, "memory": src.nbytes, "disk": on_disk}
        if entry:
            del src
            drop_pages(entry[0])
            src, mapped = timed(lambda: cache.open_sources(store, {"train": rows}, kind, cpu)["train"])
            res[kind]["map_s"] = mapped
        res[kind]["clips_s"], _ = loader_epoch(src, rows, targets, 0, args.batch_size)
        print(f"{kind} cache: built in {built:.1f} s, {src.nbytes / 1e9:.2f} GB in memory, {on_disk / 1e9:.2f} GB on "
              f"disk, {res[kind]['clips_s']:.0f} clips/s", flush=True)
        run = bench_run(src, counts, batch=args.batch_size, clip=clip, dim=dim, device=cpu)
        pick = rows[:args.steps * args.batch_size]
        timed_epoch(run, pick[:args.batch_size], targets[pick[:args.batch_size]], 1)  # warm-up
        res[kind]["steps_s"] = args.steps / timed_epoch(run, pick, targets[pick], 1)
        del src, run
    drop_pages(store.path)
    run = bench_run(store, counts, batch=args.batch_size, clip=clip, dim=dim, device=cpu)
    pick = rows[-args.steps * args.batch_size:]
    res["stream (cold)"]["steps_s"] = args.steps / timed_epoch(run, pick, targets[pick], 1)

    print(f"\n| source | loader clips/s | × cold stream | whole steps/s | disk read per epoch ({args.rows:,} rows) | "
          f"build | memory | on disk | VideoLT epoch, loader only | VideoLT build / memory |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = res["stream (cold)"]["clips_s"]
    for name, r in res.items():
        epoch_min = VIDEOLT_TRAIN / r["clips_s"] / 60
        if name.startswith("stream"):
            print(f"| {name} | {r['clips_s']:.0f} | 1.0 | {r['steps_s']:.2f} | {r['disk_read'] / 1e9:.2f} GB (frame "
                  f"spans: {r['asked'] / 1e9:.2f} GB) | – | – | – | {epoch_min:.1f} min, "
                  f"{r['disk_read'] * scale / 1e9:.0f} GB read | – |")
            continue
        mapped = f"; mapped again in {r['map_s']:.1f} s" if "map_s" in r else ""
        print(f"| {name} cache | {r['clips_s']:.0f} | {r['clips_s'] / base:.1f} | {r['steps_s']:.2f} | 0 | "
              f"{r['build_s']:.1f} s ({r['build_read'] / 1e9:.2f} GB read){mapped} | {r['memory'] / 1e9:.2f} GB | "
              f"{r['disk'] / 1e9:.2f} GB | {epoch_min:.2f} min | {r['build_s'] * scale / 60:.0f} min / "
              f"{cache.cache_bytes(name, VIDEOLT_TRAIN, frames, dim) / 1e9:.0f} GB |")
    if args.delete:
        shutil.rmtree(store.path)
        shutil.rmtree(cache.cache_root(store), ignore_errors=True)


if __name__ == "__main__":
    main()
