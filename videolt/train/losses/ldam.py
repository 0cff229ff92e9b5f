"""LDAM margins with deferred re-weighting (Cao et al.), as the VideoLT reference applies them to sigmoids."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from videolt.train.losses._base import LOSSES, MultiLabelLoss, class_balanced_weights, safe_counts


@LOSSES.register("ldam")
class LDAMLoss(MultiLabelLoss):
    """LDAM margins with deferred re-weighting (DRW), as the reference applies them to sigmoids.

    m_c ∝ n_c^(−1/4) with max m = max_m. A sample's margin is Σ_c y_c·m_c (the targets-weighted sum
    of the class margins); it is subtracted from the logits where the target is exactly 1 (the
    reference's `torch.where(targets.type(torch.uint8), ...)`), and the loss is weighted BCE(s·z′, y).
    Weights are 1 before `drw_epoch`, class-balanced (β) from then on.

    Under mixing (mixup, FrameStack) the targets are soft: a position with 0 < y < 1 gets no margin,
    and the sample's margin, where some position is still exactly 1 (a class both mixed clips share),
    is the soft-weighted sum. This is the reference's behaviour, kept as the default; it means LDAM
    under mixup applies almost no margin.
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
        m = safe_counts(class_counts) ** -0.25
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
        z = torch.where(targets >= 1.0, logits - batch_m[:, None], logits)  # [B, C]: margins at exact 1s only
        return F.binary_cross_entropy_with_logits(self.s * z, targets, weight=self.weight, reduction="none")
