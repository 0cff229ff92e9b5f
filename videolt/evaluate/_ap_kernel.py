"""The compiled core of `average_precision`: every positive's rank without sorting any column.

numba, because numpy's whole-column passes stay far slower than one fused pass over the scores
(benchmarks/RESULTS.md "## metrics").

Per class, the positives are sorted (they are few) by descending score, ties by row. Every
other element only needs its *bucket*: how many positives precede it in that stable order. A
negative in bucket b precedes positives b, b+1, ..., so the k-th positive's 0-based rank is k
plus the negatives in buckets 0..k. Elements below a class's lowest positive precede nothing and
are dropped by a branch-free first pass over each row. The rest are placed with a table over
bins of an order-preserving integer key of the score, about 2 bins per positive: an element
whose bin holds no positive gets its bucket from the table, and only elements sharing a bin
with positives are compared exactly (value, then row).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["positive_rank_ap"]

_BINS_PER_POSITIVE = 2  # table resolution: the fastest tried, its tables stay in L2 (RESULTS.md "## metrics")


@numba.njit(cache=True, nogil=True, inline="always")
def _key(bits: np.uint64, sign: np.uint64) -> np.uint64:
    """Ascending integer key of an IEEE float given as unsigned bits (-0.0 and +0.0 equal)."""
    if bits == sign:
        return sign
    if bits & sign:
        return ~bits & (sign | (sign - np.uint64(1)))
    return bits | sign


@numba.njit(cache=True, nogil=True, inline="always")
def _precedes(pv: float, prow: int, x: float, row: int) -> bool:
    """Whether a positive (value pv, row prow) comes before element (x, row) in the stable order."""
    return pv > x or (pv == x and prow < row)


@numba.njit(cache=True, nogil=True)
def _sorted_positives(scores: np.ndarray, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start [C+1], rows, values): each class's positives by descending value, ties by row.

    `flat` holds the positives' flat indices into [N, C] in ascending order (`np.flatnonzero`).
    """
    c = scores.shape[1]
    start = np.zeros(c + 1, np.int64)
    for f in flat:
        start[f % c + 1] += 1
    for j in range(c):
        start[j + 1] += start[j]
    fill = start[:-1].copy()
    rows = np.empty(flat.size, np.int64)
    for f in flat:                                         # ascending flat index: rows in order per class
        rows[fill[f % c]] = f // c
        fill[f % c] += 1
    values = np.empty(flat.size, scores.dtype)
    for j in range(c):
        mine = rows[start[j]:start[j + 1]]
        negated = np.empty(mine.size, scores.dtype)
        for k in range(mine.size):
            negated[k] = -scores[mine[k], j]
        mine[:] = mine[np.argsort(negated, kind="mergesort")]   # stable: tied rows stay in order
        for k in range(mine.size):
            values[start[j] + k] = scores[mine[k], j]
    return start, rows, values


@numba.njit(cache=True, nogil=True)
def positive_rank_ap(scores: np.ndarray, bits: np.ndarray, targets: np.ndarray, flat: np.ndarray,
                     width: int) -> np.ndarray:
    """Per-class AP [C] of scores [N, C] (float32/64, C order) against bool targets [N, C].

    `bits` is `scores` viewed as unsigned integers of `width` bits (32 or 64); `flat` is
    `np.flatnonzero(targets)` (numpy's vectorised scan is several times faster than a loop here).
    """
    n, c = scores.shape
    sign = np.uint64(1) << np.uint64(width - 1)
    start, prow, pval = _sorted_positives(scores, flat)
    npos = start[1:] - start[:-1]

    low = np.full(c, np.inf, scores.dtype)                 # lowest positive (inf: no positive)
    high = np.full(c, np.inf, scores.dtype)                # highest positive
    top = np.zeros(c, np.uint64)                           # key of the highest positive
    shift = np.zeros(c, np.uint64)                         # bin t of key k: (top - k) >> shift
    tab = np.zeros(c + 1, np.int64)                        # table offsets, classes concatenated
    for j in range(c):
        if npos[j]:
            low[j], high[j] = pval[start[j + 1] - 1], pval[start[j]]
            top[j] = _key(np.uint64(bits[prow[start[j]], j]), sign)
            span = top[j] - _key(np.uint64(bits[prow[start[j + 1] - 1], j]), sign)
            while (span >> shift[j]) >= _BINS_PER_POSITIVE * npos[j]:
                shift[j] += np.uint64(1)
            tab[j + 1] = tab[j] + np.int64(span >> shift[j]) + 2
        else:
            tab[j + 1] = tab[j]
    above = np.empty(tab[c], np.int32)                     # above[tab + t]: positives in bins before t
    for j in range(c):
        p = 0
        for t in range(tab[j + 1] - tab[j]):
            while p < npos[j] and ((top[j] - _key(np.uint64(bits[prow[start[j] + p], j]), sign))
                                   >> shift[j]) < np.uint64(t):
                p += 1
            above[tab[j] + t] = p

    neg = np.zeros(start[c], np.int64)                     # negatives per bucket, classes concatenated
    near = np.empty(c, np.int64)
    for i in range(n):
        m = 0
        for j in range(c):                                 # branch-free: most scores lie below every positive
            near[m] = j
            m += scores[i, j] >= low[j]
        for k in range(m):
            j = near[k]
            x = scores[i, j]
            if x > high[j]:
                neg[start[j]] += 1                         # before every positive
                continue
            t = tab[j] + np.int64((top[j] - _key(np.uint64(bits[i, j]), sign)) >> shift[j])
            first, last = above[t], above[t + 1]
            if first < last:                               # shares a bin with positives: exact place
                if targets[i, j]:
                    continue
                while first < last:
                    mid = (first + last) // 2
                    if _precedes(pval[start[j] + mid], prow[start[j] + mid], x, i):
                        first = mid + 1
                    else:
                        last = mid
            if first < npos[j]:
                neg[start[j] + first] += 1

    ap = np.zeros(c, np.float64)
    for j in range(c):
        before = 0
        total = 0.0
        for k in range(npos[j]):
            before += neg[start[j] + k]
            total += (k + 1) / (k + before + 1)
        if npos[j]:
            ap[j] = total / npos[j]
    return ap
