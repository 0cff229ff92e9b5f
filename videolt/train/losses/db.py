"""Distribution-Balanced loss (Wu et al., ECCV 2020), as the authors' code computes it.

Source: github.com/wutong16/DistributionBalancedLoss, `mllt/models/losses/resample_loss.py` @ 2567764
(`ResampleLoss` with `reweight_func='rebalance'` and `logit_reg=dict(neg_scale, init_bias)`; unchanged
on master, 14460d0). Defaults from the config the authors ship, `configs/coco/LT_resnet50_pfc_DB.py`
lines 23-27: DB-Focal, `focal=dict(focal=True, balance_param=2.0, gamma=2)` (line 25),
`logit_reg=dict(neg_scale=2.0, init_bias=0.05)` (26), `map_param=dict(alpha=0.1, beta=10.0, gamma=0.2)`
(27). `focal_gamma: 0` is the plain DB loss (`focal=False`). The paper's text was not reachable here;
the formula below is the code's.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from videolt.errors import ConfigError
from videolt.train.losses._base import LOSSES, MultiLabelLoss, prior_log_odds, safe_counts


@LOSSES.register("db")
class DBLoss(MultiLabelLoss):
    """Re-balanced weighting + negative-tolerant regularisation on sigmoids (n_c train counts, N videos).

    Re-balanced weights, for every class c of clip k (positives and negatives alike):
        r_kc = (1/n_c) / Σ_j y_kj/n_j,    w_kc = alpha + sigmoid(beta · (r_kc − mu))
    (r is the ratio of class-level to instance-level sampling probability; `rebalance_weight`).
    Negative-tolerant regularisation: logits shifted by b_c = (kappa/lam)·log(p_c/(1 − p_c)),
    p_c = n_c/N (`init_bias`), and negatives scaled by lam (`neg_scale`):
        element = y·w·softplus(−(z + b)) + (1 − y)·(w/lam)·softplus(lam·(z + b)).
    DB-Focal (the default, focal_gamma > 0): each term times focal_balance·(1 − p_t)^focal_gamma with
    p_t the probability of the term's own label under its (scaled) logit, differentiated as the code
    does; focal_gamma = 0 is plain DB. With soft targets the two terms are
    weighted by y and 1 − y (the code scales a soft target's logit by a y-dependent factor instead;
    both agree on 0/1 targets). Test scores are sigmoid(z), the plain logits.
    """

    def __init__(self, class_counts: np.ndarray, *, alpha: float = 0.1, beta: float = 10.0, mu: float = 0.2,
                 kappa: float = 0.05, lam: float = 2.0, focal_gamma: float = 2.0, focal_balance: float = 2.0,
                 train_videos: int | None = None, reduction: str = "mean"):
        super().__init__(reduction)
        if not lam > 0:
            raise ConfigError(f"db lam must be > 0, got {lam!r}")
        self.register_buffer("inv_freq", torch.as_tensor(1.0 / safe_counts(class_counts), dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor(kappa / lam * prior_log_odds(class_counts, train_videos, "db"),
                                                     dtype=torch.float32))  # [C]
        self.alpha, self.beta, self.mu, self.lam = alpha, beta, mu, lam
        self.focal_gamma, self.focal_balance = focal_gamma, focal_balance

    def weights(self, targets: torch.Tensor) -> torch.Tensor:
        """w [B, C]: alpha + sigmoid(beta·(r − mu)), r = (1/n_c) / Σ_j y_j/n_j (a clip without labels: r = ∞)."""
        repeat = (targets * self.inv_freq).sum(dim=1, keepdim=True)  # [B, 1]
        r = self.inv_freq[None] / repeat  # [B, C]
        return self.alpha + torch.sigmoid(self.beta * (r - self.mu))

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        w = self.weights(targets)
        z = logits + self.bias  # [B, C]
        pos = F.softplus(-z)  # BCE(z, 1)
        neg = F.softplus(self.lam * z) / self.lam  # BCE(lam·z, 0) / lam
        if self.focal_gamma > 0:
            pos = pos * self.focal_balance * (1.0 - torch.sigmoid(z)) ** self.focal_gamma
            neg = neg * self.focal_balance * torch.sigmoid(self.lam * z) ** self.focal_gamma
        return w * (targets * pos + (1.0 - targets) * neg)
