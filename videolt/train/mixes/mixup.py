"""Feature-space mixup on frame-aligned clips (docs/semantics.md §6)."""

from __future__ import annotations

import numpy as np
import torch

from videolt.train.mixes._base import BATCH_MIXES, BatchMix

__all__ = ["Mixup", "mixup"]


def mixup(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix a batch with a permutation of itself: x̃ = λx + (1 − λ)x_π, ỹ = λy + (1 − λ)y_π.

    One λ ~ U(0, 1) and one permutation π per batch, both drawn from the (CPU) `generator`, so a
    seeded run repeats its mixes on any device. x [B, T, D] and y [B, C] are not modified.
    """
    lam = torch.rand((), generator=generator).item()
    perm = torch.randperm(len(x), generator=generator).to(x.device)  # [B]
    return lam * x + (1.0 - lam) * x[perm], lam * y + (1.0 - lam) * y[perm]


@BATCH_MIXES.register("mixup")
class Mixup(BatchMix):
    """`mixup` on every batch's clips, before the aggregator."""

    def __init__(self, class_counts: np.ndarray, seed: int):
        super().__init__(class_counts, seed)

    def mix_clips(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return mixup(x, y, self.generator)
