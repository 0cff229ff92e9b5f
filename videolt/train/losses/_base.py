"""The loss registry and what every multi-label (sigmoid) loss shares (docs/semantics.md §6).

Every loss maps logits [B, C] and float targets [B, C] (multi-hot, or soft after mixing) to a
scalar. An optional mask [B, C] multiplies the element losses (resampling zeroes a video's other
labels). `reduction="mean"` divides by B·C whatever the mask or weights (as the reference's
`F.binary_cross_entropy_with_logits(weight=...)` does); `"sum_classes"` sums over classes and
averages over the batch. Class weights are buffers, so `.to(device)` moves them.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from videolt.errors import ConfigError
from videolt.registry import Registry

__all__ = ["LOSSES", "REDUCTIONS", "MultiLabelLoss", "class_balanced_weights", "create_loss", "prior_log_odds",
           "safe_counts"]

log = logging.getLogger(__name__)

# train_videos: the number of train videos (which multi-label counts do not give), the trainer's run-time fact.
LOSSES: Registry[Callable[..., "MultiLabelLoss"]] = Registry("loss", facts=("train_videos",), key="loss_opts")
REDUCTIONS = ("mean", "sum_classes")


def create_loss(name: str, class_counts: np.ndarray, *, train_videos: int | None = None,
                **opts: Any) -> "MultiLabelLoss":
    """Build the loss `name` for train class counts [C]; unknown option keys are a `ConfigError`.

    `train_videos` reaches the losses that take it, as the trainer's run-time fact rather than a setting.
    """
    return LOSSES.create(name, class_counts, facts={"train_videos": train_videos}, **opts)


def class_balanced_weights(class_counts: np.ndarray, beta: float) -> np.ndarray:
    """Cui et al. weights (1 − β)/(1 − β^n_c), renormalised to sum to C; β = 0 gives all ones."""
    n = safe_counts(class_counts)
    w = (1.0 - beta) / (1.0 - np.power(beta, n))
    return w / w.sum() * len(n)


def prior_log_odds(class_counts: np.ndarray, train_videos: int | None, loss: str) -> np.ndarray:
    """log(p_c / (1 − p_c)) [C] with p_c = n_c / N, N the number of train videos.

    A class absent from train counts once (`safe_counts`); a class on every train video counts
    N − ½ (its odds would be infinite).
    """
    if not train_videos:
        raise ConfigError(f"loss {loss!r} needs the number of train videos (train_videos)")
    n = np.minimum(safe_counts(class_counts), train_videos - 0.5)
    p = n / float(train_videos)
    return np.log(p) - np.log1p(-p)


def safe_counts(class_counts: np.ndarray) -> np.ndarray:
    """Counts as float64, a class absent from train counted once (else its weight or margin is infinite)."""
    n = np.asarray(class_counts, dtype=np.float64)
    if (n < 1).any():
        log.warning("%d classes have no train videos; counting them as 1", int((n < 1).sum()))
    return np.maximum(n, 1.0)


class MultiLabelLoss(nn.Module):
    """Base: subclasses give the element losses [B, C]; masking and reduction live here."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ConfigError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        loss = self.elementwise(logits, targets)  # [B, C]
        if mask is not None:
            loss = loss * mask
        if self.reduction == "mean":
            return loss.mean()
        return loss.sum(dim=1).mean()

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer at the start of every epoch; only schedules (DRW) use it."""
