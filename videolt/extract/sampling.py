"""Temporal sampling: which of a video's n decoded frames become its fixed-length feature rows."""

from __future__ import annotations

import numpy as np

from videolt.data.protocol import FRAMES

__all__ = ["sample_indices"]


def sample_indices(n: int, num: int = FRAMES) -> np.ndarray:
    """floor(linspace(0, n - 1, num)) as int64: uniform over the video, repeating frames when n < num.

    Both ends are always included, so a video's first and last second are represented.
    """
    if n < 1:
        raise ValueError(f"cannot sample from {n} frames: a video needs at least one decoded frame")
    if num < 1:
        raise ValueError(f"num must be at least 1, got {num}")
    return np.floor(np.linspace(0, n - 1, num)).astype(np.int64)
