"""Tick selection for decoders that report frame times as floats (decord, torchcodec).

Both fetch frames by index or time in chunks, so memory stays bounded at native resolution, and
compare ticks with a 1 µs tolerance (their timestamps are floats, not exact fractions).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Iterator, Sequence

import numpy as np

# Frames fetched per backend call: bounds memory at native resolution (16 × 1080p ≈ 100 MB).
CHUNK = 16
# A frame within 1 µs of a tick counts as at the tick.
EPS = 1e-6


def tick_times(end: float, fps: Fraction) -> np.ndarray:
    """Tick times k / fps < end (seconds from the stream start)."""
    n_ticks = max(int(np.ceil(end * float(fps) - EPS)), 0)
    return np.arange(n_ticks, dtype=np.float64) / float(fps)


def ticks(starts: np.ndarray, end: float, fps: Fraction) -> tuple[np.ndarray, np.ndarray]:
    """Tick times and, per tick, the index of the last frame starting ≤ the tick."""
    times = tick_times(end, fps)
    idx = np.searchsorted(starts, times + EPS, side="right") - 1
    keep = idx >= 0  # no frame is shown before the first one
    return times[keep], idx[keep]


def chunks(times: np.ndarray, idx: np.ndarray) -> Iterator[tuple[Sequence[float], np.ndarray]]:
    """(tick times, frame indices) in slices of `CHUNK`."""
    for lo in range(0, len(times), CHUNK):
        yield times[lo:lo + CHUNK].tolist(), idx[lo:lo + CHUNK]
