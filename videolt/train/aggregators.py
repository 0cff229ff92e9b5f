"""Temporal aggregators: a clip of frame features [B, T, D] in, class logits [B, C] out.

Two heads from the VideoLT paper (semantics §4): `nonlinear`, a per-frame MLP whose logits are
averaged over time (every main result uses it), and `netvlad`, a gated NetVLAD without cluster
centres. Both expose `.classifier`, the final `nn.Linear`, so decoupling methods (cRT, τ-norm,
LWS) can retrain or rescale it without knowing the head's insides.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from videolt.errors import ConfigError
from videolt.registry import Registry

__all__ = ["AGGREGATORS", "NetVLAD", "NonLinear", "create_aggregator"]

AGGREGATORS: Registry[Callable[..., nn.Module]] = Registry("aggregator")


def create_aggregator(name: str, in_dim: int, num_classes: int, **opts: Any) -> nn.Module:
    """Build the aggregator `name`; unknown option keys are a `ConfigError`."""
    factory = AGGREGATORS.get(name)
    _check_options(f"aggregator {name!r}", factory, opts, positional=2)
    return factory(in_dim, num_classes, **opts)


def _check_options(what: str, factory: Callable[..., Any], opts: dict, positional: int) -> None:
    """Refuse option keys the factory does not take, naming the ones it does."""
    params = list(inspect.signature(factory).parameters)[positional:]
    unknown = sorted(set(opts) - set(params))
    if unknown:
        raise ConfigError(f"{what} has no option {', '.join(unknown)} (options: {', '.join(params)})")


@AGGREGATORS.register("nonlinear")
class NonLinear(nn.Module):
    """Linear(D→H) → ReLU → Dropout → Linear(H→C) on every frame; per-frame logits averaged over time.

    No normalisation layers and default PyTorch init, as in the reference. The time mean makes it
    indifferent to clip length (60 frames in training, 150 in testing).
    """

    def __init__(self, in_dim: int, num_classes: int, *, hidden: int | None = None, dropout: float = 0.5):
        super().__init__()
        hidden = in_dim if hidden is None else hidden
        self.fc = nn.Linear(in_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.relu(self.fc(x)))  # [B, T, H]
        return self.classifier(h).mean(dim=1)  # [B, T, C] -> [B, C]


@AGGREGATORS.register("netvlad")
class NetVLAD(nn.Module):
    """Gated NetVLAD (YouTube-8M style: soft-assignment sums, no centres or residuals).

    BN over all frames' features; soft assignment Linear(D→K, no bias) → BN(K) → softmax over
    clusters; V = Aᵀ·X summed over frames; V ⊙ sigmoid(G); L2 per cluster over D; flatten D-major;
    global L2; Linear(K·D→H, no bias) → BN(H) → ReLU6 → Linear(H→C).
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self.project_bn(self.project(self.vlad(x))))  # [B, H]
        return self.classifier(h)  # [B, C]
