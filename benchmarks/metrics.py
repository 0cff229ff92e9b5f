"""Time videolt's AP against scikit-learn's per-class loop, and the mAP bootstrap, at VideoLT scale.

Synthetic but shaped like the VideoLT test split: 51,239 videos, 1,004 classes whose prevalence
falls off as a power law (a few thousand positives for the biggest class, a handful for the
smallest, ~1.3 labels per video), and float32 sigmoid scores from a classifier of mAP ~0.5.

    .venv/bin/python benchmarks/metrics.py --n 51239 --c 1004
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from sklearn.metrics import average_precision_score

from videolt.evaluate.metrics import average_precision
from videolt.evaluate.stats import bootstrap_map


def synthetic(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Long-tailed targets [n, c], float32 sigmoid scores [n, c], and head/medium/tail groups."""
    rng = np.random.default_rng(seed)
    prevalence = (np.arange(c) + 1.0) ** -0.8
    prevalence *= 1.3 / prevalence.sum()
    targets = rng.random((n, c), dtype=np.float32) < prevalence.astype(np.float32)
    logits = rng.standard_normal((n, c), dtype=np.float32) - 2.0
    logits += targets * np.float32(3.4)
    scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    ids = np.arange(c)
    groups = {"head": ids[: c // 5], "medium": ids[c // 5: c // 2], "tail": ids[c // 2:]}
    return scores, targets, groups


class Timer:
    """Wall and CPU seconds of a block: the CPU figure stays honest on a machine shared with other jobs."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:.2f} s wall, {self.cpu:.2f} s CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=51239, help="test videos")
    parser.add_argument("--c", type=int, default=1004, help="classes")
    parser.add_argument("--sklearn-classes", type=int, default=None,
                        help="time scikit-learn on the first K classes only and extrapolate linearly")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of videolt's AP (median reported)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (0 skips)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    scores, targets, groups = synthetic(args.n, args.c, args.seed)
    print(f"python {platform.python_version()}, numpy {np.__version__}; N={args.n} C={args.c}, "
          f"{int(targets.sum())} positives, {int((targets.sum(0) == 0).sum())} classes without one")

    with Timer() as t_compile:                          # numba: compiles, or loads its on-disk cache
        average_precision(scores[:2], targets[:2])
    print(f"videolt kernel compile or cache load (once per process, not timed below): {t_compile}")
    runs = []
    for _ in range(args.repeats):
        with Timer() as t_ours:
            ours = average_precision(scores, targets)
        runs.append(t_ours)
    t_ours.wall = float(np.median([t.wall for t in runs]))
    t_ours.cpu = float(np.median([t.cpu for t in runs]))
    print(f"videolt average_precision, median of {args.repeats}: {t_ours}; mAP {ours.mean():.4f}")

    k = args.c if args.sklearn_classes is None else min(args.sklearn_classes, args.c)
    with Timer() as t_ref:
        ref = np.array([average_precision_score(targets[:, j], scores[:, j]) if targets[:, j].any() else 0.0
                        for j in range(k)])
    t_ref.wall, t_ref.cpu = t_ref.wall * args.c / k, t_ref.cpu * args.c / k
    note = "" if k == args.c else f" (timed on {k} classes, extrapolated linearly to {args.c})"
    print(f"scikit-learn per-class loop: {t_ref}{note}; max |AP difference| {np.abs(ours[:k] - ref).max():.2e}"
          " (float32 scores have ties, where the tie orders may differ)")
    print(f"speed-up: {t_ref.wall / t_ours.wall:.1f}x wall, {t_ref.cpu / t_ours.cpu:.1f}x CPU")

    if args.resamples:
        with Timer() as t_boot:
            result = bootstrap_map(scores, targets, groups, n_resamples=args.resamples, seed=args.seed)
        print(f"bootstrap_map, {args.resamples} resamples: {t_boot}")
        for name, row in result.items():
            print(f"  {name:7s} {row['estimate']:.4f}  [{row['low']:.4f}, {row['high']:.4f}]")


if __name__ == "__main__":
    main()
