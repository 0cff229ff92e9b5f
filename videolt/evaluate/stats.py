"""How sure are we? Bootstrap intervals for mAP and paired comparisons between runs.

The bootstrap resamples *test videos* (rows) with replacement. Drawing N rows with replacement is
the same as giving each row an integer weight, the number of times it was drawn, so a resampled
test set never has to be materialised: a class's AP on it depends only on the class's ranking of
the original rows (one sort, shared by every resample) and, for each positive, on

- the total weight ranked above it, and the weight of the positives among those, and
- its own weight w: its w copies hold consecutive ranks, adding sum_{t=1..w} (TP + t) / (R + t).

The weight ranked above each positive is a prefix sum of the weights along the class's order. It
is computed for a block of resamples at once: the rows' weights are gathered in rank order,
summed in chunks of 64 ranks, and only the chunks holding positives are walked rank by rank.
Rows ranked below a class's last positive never matter and are never read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from videolt.evaluate.metrics import average_precision, check_pair, descending_order, group_map

__all__ = [
    "bootstrap_difference",
    "bootstrap_map",
    "paired_seed_comparison",
    "resample_counts",
    "resampled_average_precision",
]

_CHUNK = 64             # ranks summed together before the rank-by-rank walk
_RESAMPLE_BLOCK = 256   # resamples handled together: gather buffers are N x 256 bytes


def resample_counts(n_rows: int, n_resamples: int, seed: int) -> np.ndarray:
    """[n_resamples, n_rows] how often each row is drawn when n_rows rows are drawn with replacement.

    Seeded and independent of how resamples are later processed, so two runs compared with the
    same seed see exactly the same resampled test sets.
    """
    rng = np.random.default_rng(seed)
    counts = np.empty((n_resamples, n_rows), dtype=np.min_scalar_type(n_rows))
    for r in range(n_resamples):
        counts[r] = np.bincount(rng.integers(0, n_rows, size=n_rows), minlength=n_rows)
    if counts.size:
        counts = counts.astype(np.min_scalar_type(int(counts.max())), copy=False)
    return counts


def resampled_average_precision(scores: np.ndarray, targets: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[C, R] AP of every class on every resampled test set; `counts` [R, N] as `resample_counts`.

    Equal to `average_precision(scores[rows], targets[rows])` with
    `rows = np.repeat(np.arange(N), counts[r])`, ties included, without building those sets.
    """
    scores, targets = check_pair(scores, targets)
    counts = np.asarray(counts)
    n, c = scores.shape
    if counts.ndim != 2 or counts.shape[1] != n or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"counts must be integers [R, {n}], got {counts.dtype} {counts.shape}")
    if counts.size and counts.min() < 0:
        raise ValueError("counts must be non-negative")
    n_res = counts.shape[0]
    most = int(counts.max()) if counts.size else 0
    weight_dtype = np.min_scalar_type(most)
    chunk_dtype = np.promote_types(np.min_scalar_type(_CHUNK * most), np.uint16)
    blocks = [(r0, np.ascontiguousarray(counts[r0:r0 + _RESAMPLE_BLOCK].T, dtype=weight_dtype))
              for r0 in range(0, n_res, _RESAMPLE_BLOCK)]                 # each [N, Rb]
    padded = -(-n // _CHUNK) * _CHUNK
    buffer = np.empty(padded * min(n_res, _RESAMPLE_BLOCK), dtype=weight_dtype)
    ap = np.zeros((c, n_res), dtype=np.float64)
    for j in range(c):
        if not targets[:, j].any():
            continue
        order = descending_order(scores[None, :, j])[0]
        pos = np.flatnonzero(targets[order, j])                              # positives' ranks (0-based)
        length = int(pos[-1]) + 1
        walk = _Walk.plan(pos, -(-length // _CHUNK))
        for r0, weights in blocks:
            rb = weights.shape[1]
            ranked = buffer[: walk.chunks * _CHUNK * rb].reshape(-1, rb)
            np.take(weights, order[:length], axis=0, out=ranked[:length])
            ranked[length:] = 0
            above = walk.weight_above(ranked.reshape(-1, _CHUNK, rb), chunk_dtype)
            ap[j, r0:r0 + rb] = _weighted_ap(above, ranked[pos].astype(np.int64))
    return ap


@dataclass(frozen=True)
class _Walk:
    """Where a class's positives sit among chunks of 64 ranks; shared by all resample blocks."""

    chunks: int                  # K: chunks up to the last positive
    chunk: np.ndarray            # [P] chunk of each positive
    walked: np.ndarray | None    # chunks to walk rank by rank (None: all of them)
    row: np.ndarray              # [P] row of each positive among the walked chunks
    at_offset: list[np.ndarray]  # positives at rank offset o within their chunk, o = 0..63

    @classmethod
    def plan(cls, pos: np.ndarray, chunks: int) -> _Walk:
        chunk, offset = np.divmod(pos, _CHUNK)
        used, row = np.unique(chunk, return_inverse=True)
        walked: np.ndarray | None = used
        if 2 * used.size > chunks:   # most chunks hold a positive: walk them all in place
            walked, row = None, chunk
        at_offset = [np.flatnonzero(offset == o) for o in range(int(offset.max()) + 1)]
        return cls(chunks, chunk, walked, row, at_offset)

    def weight_above(self, weights: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """[P, Rb] total weight ranked above each positive; `weights` [K, 64, Rb] in rank order."""
        sums = weights.sum(axis=1, dtype=dtype)                                  # [K, Rb]
        before_chunk = np.cumsum(sums, axis=0, dtype=np.int64) - sums            # exclusive prefix
        walked = weights if self.walked is None else weights[self.walked]
        running = np.zeros((walked.shape[0], weights.shape[2]), dtype=dtype)
        within = np.empty((self.chunk.size, weights.shape[2]), dtype=dtype)
        for o, here in enumerate(self.at_offset):
            within[here] = running[self.row[here]]
            if o + 1 < len(self.at_offset):
                np.add(running, walked[:, o], out=running)
        return before_chunk[self.chunk] + within


def _weighted_ap(above: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """[Rb] AP from positives in rank order: weight above each [P, Rb] and own weight [P, Rb]."""
    rb = weight.shape[1]
    tp_above = np.cumsum(weight, axis=0) - weight                             # positive weight above
    drawn = weight > 0
    total = np.where(drawn, (tp_above + 1) / (above + 1), 0.0).sum(axis=0)  # first copies
    rows, cols = np.nonzero(weight > 1)
    t = 2
    while rows.size:   # the t-th copy of each positive drawn at least t times
        terms = (tp_above[rows, cols] + t) / (above[rows, cols] + t)
        total += np.bincount(cols, weights=terms, minlength=rb)
        t += 1
        keep = weight[rows, cols] >= t
        rows, cols = rows[keep], cols[keep]
    return total / np.maximum(weight.sum(axis=0), 1)


def _with_overall(groups: Mapping[str, np.ndarray], num_classes: int) -> dict[str, np.ndarray]:
    return {"overall": np.arange(num_classes)} | {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}


def _interval(estimate: float, samples: np.ndarray, alpha: float) -> dict[str, float]:
    """The percentile interval of the resampled values, re-centred on the estimate.

    Resampling test videos is not neutral for AP: a drawn-twice positive ranks right behind itself
    and lifts its class's AP, a class whose few positives are all left out scores 0, and tied scores
    move with their duplicates. The resampled mAPs therefore sit off the estimate, up or down by up
    to the interval's own half-width, and a plain percentile interval can lie beside the estimate
    rather than around it. Removing that shift (median of the resamples minus the estimate) keeps
    the spread the resampling measures and centres it where it belongs; on simulated test sets it
    covers the mean mAP of such sets at the nominal rate where the percentile, basic and
    bias-corrected intervals do not (benchmarks/RESULTS.md "## bootstrap intervals").
    """
    if samples.size == 0 or np.isnan(estimate):
        return {"estimate": float("nan"), "low": float("nan"), "high": float("nan")}
    shift = float(np.median(samples)) - estimate
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2]) - shift
    return {"estimate": float(estimate), "low": float(low), "high": float(high)}


def bootstrap_map(scores: np.ndarray, targets: np.ndarray, groups: Mapping[str, np.ndarray], *,
                  n_resamples: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict[str, dict[str, float]]:
    """mAP with bootstrap intervals over resampled test videos, for "overall" and each group.

    Returns {group: {"estimate", "low", "high"}}; the estimate is the mAP of the test set itself and
    the interval is the resamples' percentile interval re-centred on it (see `_interval`).
    Differences between two runs (`bootstrap_difference`) share most of the resampling's shift and
    are the better basis for comparisons.
    """
    scores, targets = check_pair(scores, targets)
    counts = resample_counts(scores.shape[0], n_resamples, seed)
    all_groups = _with_overall(groups, scores.shape[1])
    point = group_map(average_precision(scores, targets), all_groups)
    boot = resampled_average_precision(scores, targets, counts)
    return {name: _interval(point[name], _resampled_means(boot, ids), alpha) for name, ids in all_groups.items()}


def bootstrap_difference(scores_a: np.ndarray, scores_b: np.ndarray, targets: np.ndarray,
                         groups: Mapping[str, np.ndarray], *, n_resamples: int = 1000, seed: int = 0,
                         alpha: float = 0.05) -> dict[str, dict[str, float | bool]]:
    """mAP(A) - mAP(B) with paired bootstrap intervals (re-centred, as `bootstrap_map`), per group.

    Both runs are scored on the very same resampled test sets, so video difficulty (shared by
    the runs) cancels out of the difference. `includes_zero` says the interval does not rule out
    "no difference".
    """
    scores_a, targets = check_pair(scores_a, targets)
    scores_b, _ = check_pair(scores_b, targets)
    counts = resample_counts(targets.shape[0], n_resamples, seed)
    all_groups = _with_overall(groups, targets.shape[1])
    point = group_map(average_precision(scores_a, targets) - average_precision(scores_b, targets), all_groups)
    boot = (resampled_average_precision(scores_a, targets, counts)
            - resampled_average_precision(scores_b, targets, counts))
    out: dict[str, dict[str, float | bool]] = {}
    for name, ids in all_groups.items():
        row: dict[str, float | bool] = dict(_interval(point[name], _resampled_means(boot, ids), alpha))
        row["includes_zero"] = bool(row["low"] <= 0.0 <= row["high"])
        out[name] = row
    return out


def _resampled_means(boot: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """[R] group mean per resample; empty when the group has no classes."""
    return boot[ids].mean(axis=0) if ids.size else np.empty(0)


def paired_seed_comparison(a: Mapping[int, float], b: Mapping[int, float]) -> dict[str, float | int]:
    """Compare two methods trained with the same seeds: statistics of the per-seed differences A - B.

    Returns mean_difference, std_difference (ddof=1; NaN for one seed), n_seeds and n_positive
    (seeds where A beat B).
    """
    if set(a) != set(b):
        raise ValueError(f"the two runs must share their seeds: only in A {sorted(set(a) - set(b))}, "
                         f"only in B {sorted(set(b) - set(a))}")
    if not a:
        raise ValueError("no seeds to compare")
    diff = np.array([a[s] - b[s] for s in sorted(a)], dtype=np.float64)
    return {
        "mean_difference": float(diff.mean()),
        "std_difference": float(diff.std(ddof=1)) if diff.size > 1 else float("nan"),
        "n_seeds": int(diff.size),
        "n_positive": int((diff > 0).sum()),
    }
