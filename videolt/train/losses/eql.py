"""Equalization loss (Tan et al.): negatives of rare classes left out of BCE."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from videolt.errors import ConfigError
from videolt.train.losses._base import LOSSES, MultiLabelLoss


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
