"""Evaluation metrics for multi-label video recognition: per-class AP, group mAP, Acc@k.

A leaf module (it imports only its compiled AP kernel, `videolt.evaluate._ap_kernel`), so
training, reports and the bootstrap in `videolt.evaluate.stats` all compute the very same numbers.

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

from videolt.data.protocol import GROUPS

__all__ = ["METRIC_KEYS", "average_precision", "check_pair", "descending_order", "group_map", "summarize",
           "topk_accuracy"]

# What every result reports (`summarize`), in this order: in metrics.json, train_log.csv, tables, the CLI.
METRIC_KEYS = ("overall_map", "head_map", "medium_map", "tail_map", "acc1", "acc5")

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


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-class AP [C] (float64) of scores [N, C] against {0, 1} targets [N, C].

    Only the positives' ranks are computed, in one compiled pass over the scores without
    sorting any column (`videolt.evaluate._ap_kernel`); TP(r) of the k-th positive is k.
    """
    from videolt.evaluate._ap_kernel import positive_rank_ap    # numba: compiled on first use

    scores, targets = check_pair(scores, targets)
    scores, targets = np.ascontiguousarray(scores), np.ascontiguousarray(targets)
    width = scores.dtype.itemsize * 8
    return positive_rank_ap(scores, scores.view(f"uint{width}"), targets, np.flatnonzero(targets), width)


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
    by_group = group_map(ap, {name: groups[name] for name in GROUPS})
    return {
        "overall_map": float(ap.mean()) if ap.size else float("nan"),
        "head_map": by_group["head"],
        "medium_map": by_group["medium"],
        "tail_map": by_group["tail"],
        "acc1": topk_accuracy(scores, targets, 1),
        "acc5": topk_accuracy(scores, targets, 5),
    }
