"""Binary cross-entropy on logits: the baseline's loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from videolt.train.losses._base import LOSSES, MultiLabelLoss


@LOSSES.register("bce")
class BCELoss(MultiLabelLoss):
    """Binary cross-entropy on logits."""

    def __init__(self, class_counts: np.ndarray, *, reduction: str = "mean"):
        super().__init__(reduction)

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
