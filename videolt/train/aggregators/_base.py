"""The aggregator registry and the shape every aggregator shares.

An aggregator turns a clip of frame features x [B, T, D] into class logits [B, C] in two steps:
`embed(x)` → clip embeddings [B, V, E] (V views of each clip: the T frames themselves for NonLinear,
one descriptor for NetVLAD, several during MOVE's training), then `head(e)` → logits [B, C], the
classifier on every view averaged over the views. The split is where a batch mix that works on
embeddings (e.g. MOVE's vicinity expansion) plugs in: `forward(x, embedding_hook=fn)` runs
`head(fn(embed(x)))`. Aggregators that use labels during training (MOVE's frame sampling) receive
them as `targets`; those that use train class counts declare a `class_counts` parameter, and those
that draw random numbers of their own (MOVE's frame sampling) a `seed` parameter, which gets the
run's seed; their generator state belongs in `get_extra_state` so that checkpoints hold it. Every
aggregator exposes `.classifier`, its final `nn.Linear`, for the decoupling methods (cRT, τ-norm, LWS).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from videolt.registry import Registry

__all__ = ["AGGREGATORS", "Aggregator", "EmbeddingHook", "create_aggregator"]

AGGREGATORS: Registry[Callable[..., "Aggregator"]] = Registry("aggregator", facts=("class_counts", "seed"),
                                                               key="model_opts")

EmbeddingHook = Callable[[torch.Tensor], torch.Tensor]


class Aggregator(nn.Module):
    """Base of every aggregator: `forward = head ∘ (hook) ∘ embed`."""

    classifier: nn.Linear

    def embed(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Clip embeddings [B, V, E] of a clip [B, T, D]; `targets` [B, C] only during training."""
        raise NotImplementedError

    def head(self, e: torch.Tensor) -> torch.Tensor:
        """Logits [B, C] of embeddings [B, V, E]: the classifier on every view, averaged over views."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None,
                embedding_hook: EmbeddingHook | None = None) -> torch.Tensor:
        e = self.embed(x, targets)
        if embedding_hook is not None:
            e = embedding_hook(e)
        return self.head(e)


def create_aggregator(name: str, in_dim: int, num_classes: int, *, class_counts: np.ndarray | None = None,
                      seed: int = 0, **opts: Any) -> Aggregator:
    """Build the aggregator `name`; unknown option keys are a `ConfigError`.

    `class_counts` (train videos per class) and `seed` (the run's seed, for aggregators that draw
    random numbers) reach the aggregators that take them and no other.
    """
    return AGGREGATORS.create(name, in_dim, num_classes, facts={"class_counts": class_counts, "seed": seed}, **opts)
