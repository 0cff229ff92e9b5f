"""The batch-mix registry and the hooks a batch mix may use.

A batch mix changes a training batch around the aggregator, one registered class per mix (mixup,
FrameStack, MOVE's vicinity expansion). The trainer calls, per epoch and batch:

- `start_epoch(epoch)`;
- `mix_clips(x, y)` before the aggregator: clips x [B, T, D] and targets y [B, C] → mixed ones;
- `mix_embeddings(e, y)` after it, on clip embeddings e [B, V, E] (`Aggregator.embed`), only when the
  class sets `mixes_embeddings`;
- `observe(scores, y)` with the sigmoid scores of the clean, unmixed clips from an extra no-grad
  forward in train mode after the loss, only when the class sets `observes` (FrameStack's running AP);
- `end_epoch(gather)`, where under DDP `gather` turns this rank's per-sample rows into the whole
  epoch's, in epoch order (None in a single process);
- `state_dict()` / `load_state_dict()`: what a resumed run needs, as tensors and plain data only
  (checkpoints load with `weights_only=True`).

Every mix owns a CPU generator seeded with the run's seed, so a seeded run repeats its mixes on any
device, and its state is in the checkpoint. Options are the keyword-only parameters of the class,
whose defaults are the only place they are written.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from videolt.registry import Registry

__all__ = ["BATCH_MIXES", "BatchMix", "Gather", "create_batch_mix"]

BATCH_MIXES: Registry[type["BatchMix"]] = Registry("batch mix", key="method_opts")

Gather = Callable[[np.ndarray], np.ndarray]


class BatchMix:
    """No mixing; the base every mix derives from (each hook defaults to doing nothing)."""

    mixes_embeddings = False
    observes = False

    def __init__(self, class_counts: np.ndarray, seed: int):
        self.class_counts = np.asarray(class_counts)
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def check_options(cls, **opts: Any) -> None:
        """Raise `ConfigError` for option values the mix refuses (called before any training)."""

    def start_epoch(self, epoch: int) -> None:
        """Called before the epoch's first batch."""

    def mix_clips(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def mix_embeddings(self, e: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return e, y

    def observe(self, scores: torch.Tensor, y: torch.Tensor) -> None:
        """Sigmoid scores [B, C] of the clean clips and their targets [B, C]."""

    def end_epoch(self, gather: Gather | None) -> None:
        """Called after the epoch's last batch."""

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


BATCH_MIXES.register("none")(BatchMix)


def create_batch_mix(name: str, class_counts: np.ndarray, seed: int, **opts: Any) -> BatchMix:
    """The batch mix `name` for the train class counts [C]; unknown option keys are a `ConfigError`."""
    return BATCH_MIXES.create(name, class_counts, seed, **opts)
