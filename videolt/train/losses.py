"""Multi-label (sigmoid) losses of the long-tail methods, semantics §6.

Every loss maps logits [B, C] and float targets [B, C] (multi-hot, or soft after mixing) to a
scalar. An optional mask [B, C] multiplies the element losses (resampling zeroes a video's other
labels). `reduction="mean"` divides by B·C whatever the mask or weights (as the reference's
`F.binary_cross_entropy_with_logits(weight=...)` does); `"sum_classes"` sums over classes and
averages over the batch. Class weights are buffers, so `.to(device)` moves them.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videolt.errors import ConfigError
from videolt.registry import Registry

__all__ = [
    "LOSSES",
    "BCELoss",
    "CBLoss",
    "EQLLoss",
    "FocalLoss",
    "LDAMLoss",
    "MultiLabelLoss",
    "class_balanced_weights",
    "create_loss",
    "loss_options",
]

log = logging.getLogger(__name__)

LOSSES: Registry[Callable[..., "MultiLabelLoss"]] = Registry("loss")
REDUCTIONS = ("mean", "sum_classes")


def create_loss(name: str, class_counts: np.ndarray, **opts: Any) -> "MultiLabelLoss":
    """Build the loss `name` for train class counts [C]; unknown option keys are a `ConfigError`."""
    factory = LOSSES.get(name)
    known = loss_options(name)
    unknown = sorted(set(opts) - set(known))
    if unknown:
        raise ConfigError(f"loss {name!r} has no option {', '.join(unknown)} (options: {', '.join(known)})")
    return factory(class_counts, **opts)


def loss_options(name: str) -> list[str]:
    """The option keys that loss `name` accepts (everything after `class_counts`)."""
    return list(inspect.signature(LOSSES.get(name)).parameters)[1:]


def class_balanced_weights(class_counts: np.ndarray, beta: float) -> np.ndarray:
    """Cui et al. weights (1 − β)/(1 − β^n_c), renormalised to sum to C; β = 0 gives all ones."""
    n = _safe_counts(class_counts)
    w = (1.0 - beta) / (1.0 - np.power(beta, n))
    return w / w.sum() * len(n)


def _safe_counts(class_counts: np.ndarray) -> np.ndarray:
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


@LOSSES.register("bce")
class BCELoss(MultiLabelLoss):
    """Binary cross-entropy on logits."""

    def __init__(self, class_counts: np.ndarray, *, reduction: str = "mean"):
        super().__init__(reduction)

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


@LOSSES.register("focal")
class FocalLoss(MultiLabelLoss):
    """α(1 − p_t)^γ · BCE with p_t = exp(−BCE); γ = 1 as in the FrameStack runs."""

    def __init__(self, class_counts: np.ndarray, *, gamma: float = 1.0, alpha: float = 1.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.gamma = gamma
        self.alpha = alpha

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p_t = torch.exp(-bce)
        return self.alpha * (1.0 - p_t) ** self.gamma * bce


@LOSSES.register("cb")
class CBLoss(MultiLabelLoss):
    """BCE with class-balanced weights per class column (positives and negatives alike)."""

    def __init__(self, class_counts: np.ndarray, *, beta: float = 0.9999, reduction: str = "mean"):
        super().__init__(reduction)
        weights = class_balanced_weights(class_counts, beta)
        self.register_buffer("weight", torch.as_tensor(weights, dtype=torch.float32))  # [C]

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets, weight=self.weight, reduction="none")


@LOSSES.register("ldam")
class LDAMLoss(MultiLabelLoss):
    """LDAM margins with deferred re-weighting (DRW), as the reference applies them to sigmoids.

    m_c ∝ n_c^(−1/4) with max m = max_m. A sample's margin is Σ_c y_c·m_c (the sum over its
    positive classes); it is subtracted from the logits at the positive positions, and the loss is
    weighted BCE(s·z′, y). Weights are 1 before `drw_epoch`, class-balanced (β) from then on.
    """

    def __init__(
        self,
        class_counts: np.ndarray,
        *,
        max_m: float = 0.5,
        s: float = 30.0,
        drw_epoch: int = 50,
        beta: float = 0.9999,
        reduction: str = "mean",
    ):
        super().__init__(reduction)
        m = _safe_counts(class_counts) ** -0.25
        self.register_buffer("margins", torch.as_tensor(m * (max_m / m.max()), dtype=torch.float32))  # [C]
        self.register_buffer("weight", torch.ones(len(m)))  # [C]
        self._drw_weight = torch.as_tensor(class_balanced_weights(class_counts, beta), dtype=torch.float32)
        self.s = s
        self.drw_epoch = drw_epoch

    def set_epoch(self, epoch: int) -> None:
        weight = self._drw_weight if epoch >= self.drw_epoch else torch.ones_like(self._drw_weight)
        self.weight.copy_(weight)

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        batch_m = targets @ self.margins  # [B]
        z = torch.where(targets > 0, logits - batch_m[:, None], logits)  # [B, C]
        return F.binary_cross_entropy_with_logits(self.s * z, targets, weight=self.weight, reduction="none")


@LOSSES.register("eql")
class EQLLoss(MultiLabelLoss):
    """Equalization loss: BCE with some negatives of rare classes left out.

    variant "reference" (VideoLT code): tail classes have n_c ≤ `tail_threshold`; each negative
    element of a tail class is dropped with probability `lambda_` per step, an i.i.d. Bernoulli
    draw from a generator this loss owns (seeded, and saved in `state_dict`, so runs reproduce and
    resume). variant "threshold" (EQL paper): classes whose frequency n_c/Σn is below `lambda_`
    always have their negatives ignored.
    """

    VARIANTS = ("reference", "threshold")

    def __init__(
        self,
        class_counts: np.ndarray,
        *,
        lambda_: float = 1.76e-3,
        tail_threshold: int = 100,
        variant: str = "reference",
        seed: int = 2021,
        reduction: str = "mean",
    ):
        super().__init__(reduction)
        if variant not in self.VARIANTS:
            raise ConfigError(f"eql variant must be one of {', '.join(self.VARIANTS)}, got {variant!r}")
        n = np.asarray(class_counts, dtype=np.float64)
        rare = n <= tail_threshold if variant == "reference" else n / n.sum() < lambda_
        self.register_buffer("rare", torch.as_tensor(rare, dtype=torch.float32))  # [C]
        self.variant = variant
        self.lambda_ = lambda_
        self.generator = torch.Generator().manual_seed(seed)

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.variant == "reference":
            u = torch.rand(logits.shape, generator=self.generator)  # [B, C], on CPU for reproducibility
            drop = (u >= 1.0 - self.lambda_).to(logits)
        else:
            drop = torch.ones_like(logits)
        weight = 1.0 - drop * self.rare * (1.0 - targets)  # [B, C]
        return F.binary_cross_entropy_with_logits(logits, targets, weight=weight, reduction="none")

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
