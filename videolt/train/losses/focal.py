"""Focal loss (Lin et al.) on sigmoids: FrameStack's loss with γ = 1."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from videolt.train.losses._base import LOSSES, MultiLabelLoss


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
