"""Asymmetric loss (Ridnik et al., ICCV 2021): focusing and a probability margin for the many negatives.

Source: github.com/Alibaba-MIIL/ASL, main branch at 8c9e0bd, `src/loss_functions/losses.py`
(`AsymmetricLoss`): since fc277af (March 2021) `disable_torch_grad_focal_loss=True` by default (line 6),
and the focusing weights (1 − p_t)^γ are computed under `torch.set_grad_enabled(False)` (lines 38-47),
so they get no gradient; `train.py:93` passes the same `disable_torch_grad_focal_loss=True`. That is
the default here; `focusing_grad: true` is the full gradient of the paper's formula, the weights
differentiated too: a negative's gradient is then 1 + γ−·(1 − p_m)·(−log(1 − p_m))/p_m times the
authors' (5x just above the margin, 3.8x at p_m = 0.5 with γ− = 4).
Defaults γ+ = 0, γ− = 4, clip m = 0.05, eps 1e-8: the paper's MS-COCO setting and
`AsymmetricLoss(gamma_neg=4, gamma_pos=0, clip=0.05, ...)` in `train.py:93`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from videolt.errors import ConfigError
from videolt.train.losses._base import LOSSES, MultiLabelLoss


@LOSSES.register("asl")
class AsymmetricLoss(MultiLabelLoss):
    """ASL: −[y·(1 − p)^γ+·log p + (1 − y)·p_m^γ−·log(1 − p_m)], p = σ(z), p_m = max(p − clip, 0).

    Logs are floored at log(eps) as the reference's `clamp(min=eps)`; log p is computed as
    logsigmoid(z). The focusing weights (1 − p)^γ+ and p_m^γ− are constants of the backward pass, as
    in the reference, unless `focusing_grad`. With soft targets the two terms are weighted by y and
    1 − y (the reference mixes the focusing exponents instead; both agree on 0/1 targets). The
    reference sums over all elements; here the usual reduction applies (mean over B·C by default).
    """

    def __init__(self, class_counts: np.ndarray, *, gamma_pos: float = 0.0, gamma_neg: float = 4.0,
                 clip: float = 0.05, eps: float = 1e-8, focusing_grad: bool = False, reduction: str = "mean"):
        super().__init__(reduction)
        if not 0.0 <= clip < 1.0:
            raise ConfigError(f"asl clip must be in [0, 1), got {clip!r}")
        self.gamma_pos, self.gamma_neg, self.clip, self.log_eps = gamma_pos, gamma_neg, clip, math.log(eps)
        self.focusing_grad = focusing_grad

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        log_p = F.logsigmoid(logits).clamp(min=self.log_eps)
        if self.clip > 0:
            neg_p = (1.0 - p + self.clip).clamp(max=1.0)  # 1 − p_m
            log_neg = torch.log(neg_p.clamp(min=math.exp(self.log_eps)))
        else:
            neg_p = 1.0 - p
            log_neg = F.logsigmoid(-logits).clamp(min=self.log_eps)
        w_pos, w_neg = (1.0 - p) ** self.gamma_pos, (1.0 - neg_p) ** self.gamma_neg  # (1 − neg_p) = p_m
        if not self.focusing_grad:
            w_pos, w_neg = w_pos.detach(), w_neg.detach()
        return -(targets * w_pos * log_p + (1.0 - targets) * w_neg * log_neg)
