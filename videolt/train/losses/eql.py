"""Equalization loss (Tan et al., CVPR 2020): negatives of rare classes left out of BCE."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from videolt.data.protocol import GROUP_TAIL
from videolt.errors import ConfigError
from videolt.train.losses._base import LOSSES, MultiLabelLoss


@LOSSES.register("eql")
class EQLLoss(MultiLabelLoss):
    """Equalization loss: BCE with some negatives of rare classes left out.

    variant "reference" (the VideoLT code, the default): tail classes have n_c ≤ `tail_threshold`;
    each negative element of a tail class is dropped with probability `drop_prob` per step, an i.i.d.
    Bernoulli draw from a generator this loss owns (seeded, and saved in `state_dict`, so runs
    reproduce and resume). variant "threshold" (the EQL paper): a class is rare when its frequency
    n_c / N, N the number of train videos, is below `freq_threshold`, and its negatives are always
    ignored. Both default to 1.76e-3, the value the EQL paper tuned on LVIS; as a frequency threshold
    on VideoLT's official lists it marks 842 of the 1,004 classes rare (n_c ≤ 315 of 179,334 videos).
    """

    VARIANTS = ("reference", "threshold")

    def __init__(
        self,
        class_counts: np.ndarray,
        *,
        variant: str = "reference",
        drop_prob: float = 1.76e-3,
        tail_threshold: int = GROUP_TAIL,
        freq_threshold: float = 1.76e-3,
        train_videos: int | None = None,
        seed: int = 2021,
        reduction: str = "mean",
    ):
        super().__init__(reduction)
        if variant not in self.VARIANTS:
            raise ConfigError(f"eql variant must be one of {', '.join(self.VARIANTS)}, got {variant!r}")
        if not 0.0 <= drop_prob <= 1.0:
            raise ConfigError(f"eql drop_prob must be in [0, 1], got {drop_prob!r}")
        self.register_buffer("rare", torch.as_tensor(rare_classes(class_counts, variant, tail_threshold=tail_threshold,
                                                                  freq_threshold=freq_threshold,
                                                                  train_videos=train_videos), dtype=torch.float32))
        self.variant = variant
        self.drop_prob = drop_prob
        self.generator = torch.Generator().manual_seed(seed)

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.variant == "reference":
            u = torch.rand(logits.shape, generator=self.generator)  # [B, C], on CPU for reproducibility
            drop = (u >= 1.0 - self.drop_prob).to(logits)
        else:
            drop = torch.ones_like(logits)
        weight = 1.0 - drop * self.rare * (1.0 - targets)  # [B, C]
        return F.binary_cross_entropy_with_logits(logits, targets, weight=weight, reduction="none")

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def rare_classes(class_counts: np.ndarray, variant: str, *, tail_threshold: int, freq_threshold: float,
                 train_videos: int | None) -> np.ndarray:
    """bool [C]: the classes whose negatives EQL leaves out (some of the time, or always)."""
    n = np.asarray(class_counts, dtype=np.float64)
    if variant == "reference":
        return n <= tail_threshold
    if not train_videos:
        raise ConfigError("eql variant threshold needs the number of train videos (train_videos)")
    return n / train_videos < freq_threshold
