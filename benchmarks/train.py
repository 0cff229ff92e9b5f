"""Training-data throughput and training speed at VideoLT's feature shape (150 × 2048 float16).

Builds a synthetic Zarr feature set of `--videos` rows (20,000 by default: ~12 GB; pass a smaller
number for a quick run) with `--compression` none (the default: raw chunks, read without zarr
by the store's fast path) or zstd, then times, in the same process and on the same warm files:

- `ours (stream)`: videolt's batch loader streaming from the feature set (one `read_frames` call per
  batch of 128 clips, `--workers` threads reading ahead);
- `ours (fp16 cache)`: the same loader on the timed rows held in RAM as float16 (`cache: fp16`;
  only the rows the timed clips use, so that the rest of the set stays in the page cache);
- `per-item (store)`: the reference code's pattern, each item reading its video's whole [150, 2048]
  array (`read_rows`) and taking 60 frames, batches assembled by the default collate;
- `per-item (np.load)`: the reference code itself: one float32 `<id>.npy` loaded per item
  (`--npy` of the videos are also written as .npy files for this, and read in turn: a subset that
  stays in the page cache, which flatters the reference);
- training steps/s of the NonLinear aggregator (batch 128, 1,004 classes) on clips in memory.

benchmarks/train_scale.py measures the caches against a cold store at VideoLT's scale.

Each loader's clock starts when its first batch arrives, so worker start-up is not counted; the
loaders are timed `--repeats` times, interleaved, and the median is reported.

    .venv/bin/python benchmarks/train.py --videos 4000 --workers 2 --compression none
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from videolt.data.store import FeatureStore
from videolt.train.aggregators import create_aggregator
from videolt.train.cache import open_sources
from videolt.train.datasets import BatchLoader, TrainClips, chunks, clip_indices


def build_store(path: Path, videos: int, frames: int, dim: int, compression: str, seed: int) -> FeatureStore:
    """A feature set of random float16 rows (written once; reused when it already exists)."""
    ids = [f"b{i:010d}" for i in range(videos)]
    store = FeatureStore.create(path, ids, frames=frames, dim=dim, compression=compression,
                                attrs={"backbone": "benchmark"})
    todo = np.flatnonzero(store.status() != 1)
    rng = np.random.default_rng(seed)
    row = rng.standard_normal((frames, dim)).astype(np.float16)
    for i in todo:
        store.write_row(int(i), np.roll(row, int(i), axis=0), frames)
    return FeatureStore.open(path)


def write_npy(store: FeatureStore, folder: Path, count: int) -> list[Path]:
    """The first `count` rows as official-release files: float32 `<id>.npy` [150, D]."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{vid}.npy" for vid in store.video_ids[:count]]
    for i, path in enumerate(paths):
        if not path.is_file():
            np.save(path, store.read_rows([i])[0].astype(np.float32))
    return paths


class PerItemClips(Dataset):
    """The reference pattern: one whole-video load per item (Zarr row or .npy file), then 60 frames."""

    def __init__(self, store: FeatureStore, rows: np.ndarray, seed: int, npy: list[Path] | None = None):
        self.store, self.rows, self.seed, self.npy = store, rows, seed, npy

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        row = int(self.rows[k])
        video = np.load(self.npy[row]) if self.npy else self.store.read_rows([row])[0]  # [150, D]
        return torch.from_numpy(video[clip_indices(self.seed, 0, k, video.shape[0])]), k


def clips_per_s(loader, limit: int) -> tuple[float, int]:
    """Clips per second after the first batch (worker start-up excluded), and how many were timed."""
    seen, start = 0, None
    for batch in loader:
        if start is None:
            start = time.perf_counter()
        else:
            seen += len(batch[0])
        if seen >= limit:
            break
    return seen / (time.perf_counter() - start), seen


def steps_per_s(dim: int, classes: int, batch: int, clip_len: int, steps: int) -> float:
    model = create_aggregator("nonlinear", dim, classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(batch, clip_len, dim)
    y = (torch.rand(batch, classes) < 0.002).float()
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()  # the first step warms up the allocator
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
        opt.step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=20000, help="rows of the synthetic feature set")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--compression", choices=("none", "zstd"), default="none", help="of the feature set")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clips", type=int, default=4096, help="clips timed per loader and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timings per loader, interleaved; the median counts")
    parser.add_argument("--npy", type=int, default=1000, help="videos also written as float32 .npy (0 skips)")
    parser.add_argument("--steps", type=int, default=20, help="training steps timed")
    parser.add_argument("--dir", type=Path, default=None, help="where to keep the feature set (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    root = args.dir or Path(tempfile.mkdtemp(prefix="videolt-bench-"))
    start = time.perf_counter()
    store = build_store(root / f"bench-{args.compression}.zarr", args.videos, args.frames, args.dim,
                        args.compression, args.seed)
    size = args.videos * args.frames * args.dim * 2 / 1e9
    print(f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"feature set {args.videos} × {args.frames} × {args.dim} float16, compression {store.compression} "
          f"({size:.1f} GB) ready in {time.perf_counter() - start:.0f} s")

    rng = np.random.default_rng(args.seed)
    rows = rng.permutation(args.videos)
    targets = np.zeros((args.videos, 1), dtype=np.float32)
    start = time.perf_counter()
    ram = open_sources(store, {"timed": rows[:args.clips + args.batch_size]}, "fp16", torch.device("cpu"))["timed"]
    print(f"fp16 cache of {len(ram.rows)} rows (the timed batches'): {time.perf_counter() - start:.1f} s")

    def ours(source) -> BatchLoader:
        return BatchLoader(TrainClips(source, rows, targets, seed=args.seed, epoch=0),
                            chunks(len(rows), args.batch_size), workers=args.workers)

    loaders = {
        "per-item (store)": DataLoader(PerItemClips(store, rows, args.seed), batch_size=args.batch_size,
                                      num_workers=args.workers),
        "ours (stream)": ours(store),
        "ours (fp16 cache)": ours(ram),
    }
    if args.npy:
        npy = write_npy(store, root / "npy", min(args.npy, args.videos))
        npy_rows = np.resize(rng.permutation(len(npy)), len(rows))  # cycles over the files, all kept warm
        loaders["per-item (np.load)"] = DataLoader(PerItemClips(store, npy_rows, args.seed, npy),
                                                   batch_size=args.batch_size, num_workers=args.workers)
    runs: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits every loader alike
        for name, loader in loaders.items():
            runs[name].append(clips_per_s(loader, args.clips)[0])
    results = {name: float(np.median(r)) for name, r in runs.items()}
    for name, r in runs.items():
        print(f"{name:>18}: {results[name]:8.0f} clips/s (median of {len(r)}: {min(r):.0f}–{max(r):.0f}), "
              f"{args.clips} clips each, {args.workers} workers")
    for ours_name in ("ours (stream)", "ours (fp16 cache)"):
        for ref in (k for k in results if k.startswith("per-item")):
            print(f"{ours_name} vs {ref}: {results[ours_name] / results[ref]:.1f}x")
    torch.manual_seed(args.seed)
    print(f"training (nonlinear, batch {args.batch_size}, 60 × {args.dim} → 1004 classes): "
          f"{steps_per_s(args.dim, 1004, args.batch_size, 60, args.steps):.2f} steps/s")


if __name__ == "__main__":
    main()
