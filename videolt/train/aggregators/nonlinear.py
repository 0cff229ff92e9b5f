"""NonLinear (docs/semantics.md §4): the same MLP on every frame, per-frame logits averaged over time."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from videolt.train.aggregators._base import AGGREGATORS, Aggregator


@AGGREGATORS.register("nonlinear")
class NonLinear(Aggregator):
    """Linear(D→H) → ReLU → Dropout → Linear(H→C) on every frame; per-frame logits averaged over time.

    No normalisation layers and default PyTorch init, as in the reference. Its embeddings are the
    frames themselves (V = T), so the time mean makes it indifferent to clip length (60 frames in
    training, 150 in testing); every main result of the paper uses it.
    """

    def __init__(self, in_dim: int, num_classes: int, *, hidden: int | None = None, dropout: float = 0.5):
        super().__init__()
        hidden = in_dim if hidden is None else hidden
        self.fc = nn.Linear(in_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)

    def embed(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        return x  # [B, T, D]: every frame is a view

    def head(self, e: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.relu(self.fc(e)))  # [B, V, H]
        return self.classifier(h).mean(dim=1)  # [B, V, C] -> [B, C]
