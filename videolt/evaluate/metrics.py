"""Evaluation metrics for multi-label video recognition: per-class AP, group mAP, Acc@k.

Pure numpy and a leaf module (nothing else in videolt is imported), so training, reports and
the bootstrap in `videolt.evaluate.stats` all compute the very same numbers.

AP follows the VideoLT reference (non-interpolated): sort a class's scores in descending order,
and with TP(r) the positives among the top r,

    AP = sum over positive ranks r of TP(r) / r, divided by max(P, 1).

Ties are ordered as a *stable* descending sort (`np.argsort(-s, kind="stable")`): tied videos
keep their row order. Without ties this equals scikit-learn's `average_precision_score`; a class
with no positive gets 0 (the reference's convention, which keeps mAP a mean over all classes).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["average_precision", "check_pair", "descending_order", "group_map", "summarize", "topk_accuracy"]

# Elements per column block: bounds the temporary [block, N] arrays to ~50 MB at float64.
_BLOCK_ELEMENTS = 1 << 22


def check_pair(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate [N, C] scores and {0, 1} targets; return float32 (for float16/32 input) or float64
    scores, and bool targets."""
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(f"scores and targets must be [N, C] of the same shape, got {scores.shape} and {targets.shape}")
    narrow = scores.dtype in (np.float16, np.float32)
    scores = scores.astype(np.float32 if narrow else np.float64, copy=False)
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    if targets.dtype != np.bool_:
        if not ((targets == 0) | (targets == 1)).all():
            raise ValueError("targets must contain only 0 and 1")
        targets = targets.astype(bool)
    return scores, targets


def _descending_keys(columns: np.ndarray) -> np.ndarray | None:
    """uint32 keys [B, N], ascending as the values descend (equal values, equal keys).

    None when float32 does not hold the values exactly (then only a float64 sort will do).
    """
    narrow = columns.astype(np.float32, copy=False)
    if columns.shape[1] >= 2**32 or (narrow is not columns and not np.array_equal(narrow, columns)):
        return None
    bits = (narrow + np.float32(0)).view(np.uint32)                      # + 0 makes -0.0 tie with +0.0
    ascending = np.where(bits >> 31 == 1, ~bits, bits | np.uint32(1 << 31))
    return ~ascending


def _packed(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Unique uint64 keys: value key, then row index, so that plain sorting is a stable sort."""
    return (keys.astype(np.uint64) << np.uint64(32)) | rows.astype(np.uint64)


def descending_order(columns: np.ndarray) -> np.ndarray:
    """Row order of each row of `columns` [B, N] by descending value, ties in index order.

    Values that float32 holds exactly (all float16/float32 scores) are packed with their index
    into unique uint64 keys, so one plain sort gives the stable order. Other values take an
    unstable argsort, and only rows that turn out to have ties are sorted again, stably.
    """
    keys = _descending_keys(columns)
    if keys is not None:
        packed = _packed(keys, np.arange(columns.shape[1]))
        packed.sort(axis=1)
        return (packed & np.uint64(0xFFFFFFFF)).astype(np.intp)
    order = np.argsort(-columns, axis=1)
    ranked = np.take_along_axis(columns, order, axis=1)
    tied = (ranked[:, 1:] == ranked[:, :-1]).any(axis=1)
    if tied.any():
        order[tied] = np.argsort(-columns[tied], axis=1, kind="stable")
    return order


def _stable_ranks(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Sorted 0-based ranks of `rows` in the stable order of `keys` [N], without sorting all N.

    A histogram of the keys' top 16 bits counts everything in lower bins; only the elements
    sharing a bin with one of `rows` are sorted, to place the rows exactly within their bins.
    """
    bins = keys >> np.uint32(16)
    hist = np.bincount(bins, minlength=1 << 16)
    lower = np.cumsum(hist) - hist
    wanted = np.zeros(1 << 16, dtype=bool)
    wanted[bins[rows]] = True
    near = np.flatnonzero(wanted[bins])
    packed = np.sort(_packed(keys[near], near))
    bin_start = np.searchsorted(packed, bins[rows].astype(np.uint64) << np.uint64(48))
    return np.sort(lower[bins[rows]] + np.searchsorted(packed, _packed(keys[rows], rows)) - bin_start)


def _positive_ranks(columns: np.ndarray, hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class, rank) of every positive, by class then rank; columns and hits are [B, N]."""
    keys = _descending_keys(columns)
    if keys is None:
        order = descending_order(columns)
        return np.nonzero(np.take_along_axis(hits, order, axis=1))
    ranks = [_stable_ranks(keys[b], np.flatnonzero(hits[b])) for b in range(columns.shape[0])]
    cls = np.repeat(np.arange(len(ranks)), [r.size for r in ranks])
    return cls, np.concatenate(ranks)


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-class AP [C] (float64) of scores [N, C] against {0, 1} targets [N, C].

    Vectorised over classes, and only the positives' ranks are computed (TP(r) of the k-th
    positive is k). float32-exact scores (all float16/float32 scores) skip the full sort: see
    `_stable_ranks`.
    """
    scores, targets = check_pair(scores, targets)
    n, c = scores.shape
    ap = np.zeros(c, dtype=np.float64)
    block = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for c0 in range(0, c, block):
        cols = slice(c0, min(c0 + block, c))
        cls, rank0 = _positive_ranks(np.ascontiguousarray(scores[:, cols].T),
                                     np.ascontiguousarray(targets[:, cols].T))
        if cls.size == 0:
            continue
        width = cols.stop - cols.start
        npos = np.bincount(cls, minlength=width)
        first = np.concatenate(([0], np.cumsum(npos)[:-1]))
        k = np.arange(cls.size) - first[cls] + 1                           # TP at the k-th positive
        ap[cols] = np.bincount(cls, weights=k / (rank0 + 1), minlength=width) / np.maximum(npos, 1)
    return ap


def group_map(ap: np.ndarray, groups: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean AP over each group's class ids; NaN for an empty group (its mean is undefined)."""
    ap = np.asarray(ap, dtype=np.float64)
    out = {}
    for name, ids in groups.items():
        ids = np.asarray(ids, dtype=np.int64)
        out[name] = float(ap[ids].mean()) if ids.size else float("nan")
    return out


def topk_accuracy(logits: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Fraction of videos with at least one positive label among their k highest scores.

    Works on logits or any increasing transform of them (sigmoid scores). Ties at the k-th
    place are broken arbitrarily, as by any top-k.
    """
    logits, targets = check_pair(logits, targets)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n, c = logits.shape
    if n == 0:
        return float("nan")
    k = min(k, c)
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]                   # [N, k]
    return float(np.take_along_axis(targets, top, axis=1).any(axis=1).mean())


def summarize(scores: np.ndarray, targets: np.ndarray, groups: Mapping[str, np.ndarray]) -> dict[str, float]:
    """overall/head/medium/tail mAP and Acc@1/Acc@5, as fractions in [0, 1].

    `scores` may be sigmoid scores or logits: every metric here depends only on each column's or
    row's ranking, which sigmoid preserves (up to float saturation ties). `groups` maps
    "head"/"medium"/"tail" to class ids, as `LabelSet.groups()` returns.
    """
    ap = average_precision(scores, targets)
    by_group = group_map(ap, {name: groups[name] for name in ("head", "medium", "tail")})
    return {
        "overall_map": float(ap.mean()) if ap.size else float("nan"),
        "head_map": by_group["head"],
        "medium_map": by_group["medium"],
        "tail_map": by_group["tail"],
        "acc1": topk_accuracy(scores, targets, 1),
        "acc5": topk_accuracy(scores, targets, 5),
    }
