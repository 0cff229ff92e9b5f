"""Class-balanced loss (Cui et al.): BCE weighted per class column by the effective number."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from videolt.train.losses._base import LOSSES, MultiLabelLoss, class_balanced_weights


@LOSSES.register("cb")
class CBLoss(MultiLabelLoss):
    """BCE with class-balanced weights per class column (positives and negatives alike)."""

    def __init__(self, class_counts: np.ndarray, *, beta: float = 0.9999, reduction: str = "mean"):
        super().__init__(reduction)
        weights = class_balanced_weights(class_counts, beta)
        self.register_buffer("weight", torch.as_tensor(weights, dtype=torch.float32))  # [C]

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets, weight=self.weight, reduction="none")
