"""NetVLAD (semantics §4): gated NetVLAD without cluster centres, as in the YouTube-8M entries."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from videolt.train.aggregators._base import AGGREGATORS, Aggregator


@AGGREGATORS.register("netvlad")
class NetVLAD(Aggregator):
    """Gated NetVLAD (YouTube-8M style: soft-assignment sums, no centres or residuals).

    BN over all frames' features; soft assignment Linear(D→K, no bias) → BN(K) → softmax over
    clusters; V = Aᵀ·X summed over frames; V ⊙ sigmoid(G); L2 per cluster over D; flatten D-major;
    global L2; Linear(K·D→H, no bias) → BN(H) → ReLU6 is the clip embedding (one view); Linear(H→C).
    """

    def __init__(self, in_dim: int, num_classes: int, *, clusters: int = 64, hidden: int = 1024):
        super().__init__()
        self.input_bn = nn.BatchNorm1d(in_dim)
        self.assign = nn.Linear(in_dim, clusters, bias=False)
        self.assign_bn = nn.BatchNorm1d(clusters)
        self.gate = nn.Parameter(torch.empty(clusters, in_dim))
        nn.init.xavier_normal_(self.gate)
        self.project = nn.Linear(clusters * in_dim, hidden, bias=False)
        self.project_bn = nn.BatchNorm1d(hidden)
        self.classifier = nn.Linear(hidden, num_classes)

    def vlad(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised VLAD descriptor [B, D·K] (D-major) of a clip [B, T, D]."""
        b, t, d = x.shape
        flat = self.input_bn(x.reshape(b * t, d))  # [B·T, D]
        a = F.softmax(self.assign_bn(self.assign(flat)), dim=1)  # [B·T, K]
        v = torch.einsum("btk,btd->bkd", a.reshape(b, t, -1), flat.reshape(b, t, d))  # [B, K, D]
        v = F.normalize(v * torch.sigmoid(self.gate), dim=2)  # [B, K, D], unit norm per cluster
        v = v.transpose(1, 2).reshape(b, -1)  # [B, D·K], D-major
        return F.normalize(v, dim=1)

    def embed(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        return F.relu6(self.project_bn(self.project(self.vlad(x))))[:, None]  # [B, 1, H]

    def head(self, e: torch.Tensor) -> torch.Tensor:
        return self.classifier(e).mean(dim=1)  # [B, V, C] -> [B, C]
