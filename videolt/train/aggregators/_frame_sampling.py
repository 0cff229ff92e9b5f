"""MOVE's label- and class-frequency-driven frame sampling, used inside its aggregator in training.

During training every clip is seen through random subsets of its T frames. A subset's size n is
drawn uniformly from {lower, …, T}, and `lower` grows with the train frequency of the clip's classes
(MOVE `VideoLT/MOVE.py:76-80`, `models/models.py:59-67, 166-173`):

    p_c = n_c / Σ n,  z_c = (p_c − min p) / (max p − min p)            (the class's frequency level)
    s_c = max(z_c · T, lb)                                             (lb = 3.0, `opts.py:71`)
    lower = ⌊mean of s_c over the clip's labels⌋

so a clip of the most frequent class keeps all T frames (lower = T) and a tail clip may keep as few
as lb: the views of tail clips differ much more than those of head clips, which is what MOVE's
extrapolation then amplifies. MOVE hard-codes T = 60 (its `train_num_frames`); here T is the clip's
length at run time, which gives the same numbers for T = 60.

The draws come from a `FrameDraws` object. `RandomFrameDraws` (the default) uses a CPU
`torch.Generator`: n = lower + ⌊u·(T − lower + 1)⌋ with u ~ U[0, 1) in float64, then the n frames
with the smallest of T uniform keys — a uniformly random n-subset, as Python's `random.randint` and
`random.sample` in MOVE's code, from another generator. Tests replay MOVE's own draws through the
same interface.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from videolt.errors import ConfigError

__all__ = ["DRAW_ROLES", "FrameDraws", "RandomFrameDraws", "frequency_levels", "lower_bounds"]

# The draws of one training forward, in the order the aggregator makes them: the NetVLAD branch's
# two views (models.py:61-67), the attention branch's two queries (167-170), its key mask (171-173).
DRAW_ROLES = ("vlad_view1", "vlad_view2", "query1", "query2", "key_mask")


def frequency_levels(class_counts: np.ndarray) -> np.ndarray:
    """z_c ∈ [0, 1] [C], float64, computed as MOVE.py:76-77 does (0 for all when every count is equal)."""
    n = np.asarray(class_counts, dtype=np.float64)
    p = n / n.sum()
    span = p.max() - p.min()
    if span <= 0:
        return np.zeros_like(p)
    return (p - p.min()) / span


def lower_bounds(targets: torch.Tensor, levels: np.ndarray, frames: int, lb: float) -> torch.Tensor:
    """The smallest subset size [B] (int64, CPU) of each clip: ⌊mean over its labels of max(z_c·T, lb)⌋.

    targets [B, C]: a multi-hot row averages over its positives (exactly `np.mean(sampling_prob[labels])`
    of models.py:59); a soft row (after a clip mix) is a weighted mean; a row without labels gets ⌊lb⌋.
    The result is capped at T.
    """
    s = np.maximum(levels * frames, lb)  # [C], MOVE.py:79-80
    y = targets.detach().float().cpu().numpy()
    out = np.empty(len(y), dtype=np.int64)
    for i, row in enumerate(y):
        pos = np.flatnonzero(row)
        if len(pos) == 0:
            mean = lb
        elif np.all(row[pos] == 1.0):
            mean = np.mean(s[pos])
        else:
            mean = np.sum(row[pos] * s[pos]) / np.sum(row[pos])
        out[i] = min(int(np.floor(mean)), frames)
    return torch.from_numpy(out)


class FrameDraws(Protocol):
    """Keep-masks for one role of a training forward: `lower` [B] → bool [B, T] (True: frame kept)."""

    def __call__(self, role: str, lower: torch.Tensor, frames: int) -> torch.Tensor: ...


class RandomFrameDraws:
    """n ~ U{lower, …, T} and a uniformly random n-subset of the T frames, per clip, from `generator`."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def __call__(self, role: str, lower: torch.Tensor, frames: int) -> torch.Tensor:
        b = len(lower)
        u = torch.rand(b, generator=self.generator, dtype=torch.float64)  # [B]
        n = lower + torch.floor(u * (frames - lower + 1)).long()  # [B] in [lower, T]
        keys = torch.rand(b, frames, generator=self.generator)  # [B, T]
        rank = keys.argsort(dim=1).argsort(dim=1)  # [B, T]: each frame's place in a random order
        return rank < n.clamp(max=frames)[:, None]


def check_lb(lb: float) -> None:
    """lb ≥ 1 keeps every query a mean of at least one frame (MOVE uses 3.0)."""
    if not lb >= 1.0:
        raise ConfigError(f"lb must be >= 1 (a view keeps at least lb frames), got {lb!r}")
