"""NetVLAD (docs/semantics.md §4): gated NetVLAD without cluster centres, as in the YouTube-8M entries."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from videolt.train.aggregators._base import AGGREGATORS, Aggregator

__all__ = ["NetVLAD", "gated_vlad"]


def gated_vlad(x: torch.Tensor, assign: nn.Linear, assign_bn: nn.BatchNorm1d, gate: torch.Tensor) -> torch.Tensor:
    """The normalised gated VLAD descriptor [N, D·K] (D-major) of normalised frames x [N, T, D].

    Soft assignment softmax(BN(x·Wᵀ)) over K clusters, V = Aᵀ·X summed over frames, V ⊙ sigmoid(G),
    L2 per cluster over D, flattened D-major, global L2. Shared by NetVLAD and MOVE's aggregator.
    """
    n, t, d = x.shape
    a = F.softmax(assign_bn(assign(x.reshape(n * t, d))), dim=1)  # [N·T, K]
    v = torch.einsum("ntk,ntd->nkd", a.reshape(n, t, -1), x)  # [N, K, D]
    v = F.normalize(v * torch.sigmoid(gate), dim=2)  # [N, K, D], unit norm per cluster
    v = v.transpose(1, 2).reshape(n, -1)  # [N, D·K], D-major
    return F.normalize(v, dim=1)


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
        flat = self.input_bn(x.reshape(b * t, d)).reshape(b, t, d)  # BN over all B·T frames
        return gated_vlad(flat, self.assign, self.assign_bn, self.gate)

    def embed(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        return F.relu6(self.project_bn(self.project(self.vlad(x))))[:, None]  # [B, 1, H]

    def head(self, e: torch.Tensor) -> torch.Tensor:
        return self.classifier(e).mean(dim=1)  # [B, V, C] -> [B, C]
