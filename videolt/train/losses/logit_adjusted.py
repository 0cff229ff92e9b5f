"""Logit-adjusted BCE: the sigmoid form of Menon et al.'s logit adjustment (ICLR 2021)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from videolt.train.losses._base import LOSSES, MultiLabelLoss, prior_log_odds


@LOSSES.register("logit_adjusted")
class LogitAdjustedBCE(MultiLabelLoss):
    """BCE on z_c + τ·log(p_c / (1 − p_c)), p_c = n_c / N (N train videos), in training only.

    Each class's binary problem is trained with its prior log-odds added to the logit, so the
    network's own logit learns the prior-free part; test scores are sigmoid(z) of the plain logits,
    which is the adjustment applied in the trainer's loss and nowhere else. τ = 1 by default.
    """

    def __init__(self, class_counts: np.ndarray, *, tau: float = 1.0, train_videos: int | None = None,
                 reduction: str = "mean"):
        super().__init__(reduction)
        offset = tau * prior_log_odds(class_counts, train_videos, "logit_adjusted")
        self.register_buffer("offset", torch.as_tensor(offset, dtype=torch.float32))  # [C]

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits + self.offset, targets, reduction="none")
