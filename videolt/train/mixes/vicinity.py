"""MOVE's minority-oriented vicinity expansion (github.com/wjun0830/MOVE, `VideoLT/ops/Augment.py:70-89`).

After the aggregator, on the clip embeddings of every training batch (MOVE.py:222-223):

1. Dynamic extrapolation: ẑ = λ·z₁ + (1 − λ)·z₂ with λ = 1 + Beta(2, 2) ∈ (1, 2), one λ per batch,
   z₁, z₂ the two frame-sampled views of the same clip (MOVE's aggregator in training). The
   frequency dependence is in the views: a head clip keeps nearly all its frames in both, so z₁ ≈ z₂
   and ẑ ≈ z₁; a tail clip's views differ, so ẑ moves far beyond them.
2. Calibrated interpolation: z̃ = γ·ẑ + (1 − γ)·ẑ_π with γ ~ Beta(1, 1), one γ and one random
   permutation π per batch; the targets mix alike, ỹ = γ·y + (1 − γ)·y_π, and each class column is
   scaled by s_c = 1 − z_c + calib_bias (z_c the class's frequency level, MOVE.py:77, 82-84) and
   clipped to [0, 1]: a positive of the most frequent class counts 0.5, a tail positive 1, a tail
   class that is half mixed in up to 0.75.

Every clip of every batch is expanded (no per-sample or per-class selection) and the expanded batch
replaces the original one. With one view per clip (NetVLAD, or MOVE's aggregator without sampling)
step 1 is the identity (z₁ = z₂); NonLinear's per-frame views are refused unless `extrapolate` is
off. Defaults and sources (`VideoLT/`): calib_bias 0.5 (opts.py:72, scripts/MOVE.sh:13),
extrapolation Beta(2.0, 2.0) + 1 (Augment.py:72, hard-coded there; opts.py:73-74 define `--beta 2.0`
and `--beta_bias 1.0` that the code never reads), interpolation Beta(1.0, 1.0) (Augment.py:79).

The draws (λ, then γ, then π, as Augment.py:72, 79, 80) come from the mix's CPU generator; a Beta
variate is drawn by numpy from a seed taken from that generator, so any Beta parameters work and the
generator state alone fixes the stream (it is in the checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from videolt.errors import ConfigError
from videolt.train.aggregators._frame_sampling import frequency_levels
from videolt.train.mixes._base import BATCH_MIXES, BatchMix

__all__ = ["VicinityDraws", "VicinityExpansion", "calibration_factors", "vicinity_expand"]


@dataclass(frozen=True)
class VicinityDraws:
    """The random numbers of one batch: extrapolation λ, interpolation γ, permutation π [B]."""

    lam: float
    gamma: float
    perm: torch.Tensor


def calibration_factors(class_counts: np.ndarray, calib_bias: float) -> torch.Tensor:
    """s_c = 1 − z_c + calib_bias [C] (MOVE.py:82-84), float32."""
    return torch.as_tensor(1.0 - frequency_levels(class_counts) + calib_bias, dtype=torch.float32)


def vicinity_expand(e: torch.Tensor, y: torch.Tensor, factors: torch.Tensor | None, draws: VicinityDraws, *,
                    extrapolate: bool = True, interpolate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings e [B, V, E] (V = 2 views, or 1) and targets y [B, C] → ([B, 1, E] or [B, V, E], [B, C]).

    The arithmetic is written as Augment.py:75, 81-87 writes it, so equal draws give equal results.
    `factors` None leaves the mixed targets uncalibrated (and unclipped).
    """
    if extrapolate:
        if e.shape[1] == 2:
            e = (draws.lam * e[:, 0] + (1 - draws.lam) * e[:, 1])[:, None]  # [B, 1, E]
        elif e.shape[1] != 1:
            raise ConfigError(f"vicinity extrapolation needs two views per clip (or one), got {e.shape[1]}: "
                              "use the move aggregator, or turn extrapolate off")
    if interpolate:
        perm = draws.perm.to(e.device)
        e = e * draws.gamma + e[perm] * (1 - draws.gamma)
        y = y * draws.gamma + y[perm] * (1 - draws.gamma)
    if factors is not None:
        y = torch.clamp(y * factors.to(y)[None], 0, 1)
    return e, y


@BATCH_MIXES.register("vicinity")
class VicinityExpansion(BatchMix):
    """MOVE's vicinity expansion as a batch mix on clip embeddings (after the aggregator).

    calib_bias: s_c = 1 − z_c + calib_bias; extrapolation_a/b: λ − 1 ~ Beta(a, b);
    interpolation_a/b: γ ~ Beta(a, b); extrapolate / interpolate / calibrate: each step on or off
    (off, off, on would only rescale the labels).
    """

    mixes_embeddings = True

    def __init__(self, class_counts: np.ndarray, seed: int, *, calib_bias: float = 0.5,
                 extrapolation_a: float = 2.0, extrapolation_b: float = 2.0, interpolation_a: float = 1.0,
                 interpolation_b: float = 1.0, extrapolate: bool = True, interpolate: bool = True,
                 calibrate: bool = True):
        super().__init__(class_counts, seed)
        self.check_options(extrapolation_a=extrapolation_a, extrapolation_b=extrapolation_b,
                           interpolation_a=interpolation_a, interpolation_b=interpolation_b)
        self.extrapolation = (extrapolation_a, extrapolation_b)
        self.interpolation = (interpolation_a, interpolation_b)
        self.extrapolate, self.interpolate = extrapolate, interpolate
        self.factors = calibration_factors(self.class_counts, calib_bias) if calibrate else None

    @classmethod
    def check_options(cls, **opts: Any) -> None:
        for key in ("extrapolation_a", "extrapolation_b", "interpolation_a", "interpolation_b"):
            if key in opts and not opts[key] > 0:
                raise ConfigError(f"{key} must be > 0 (a Beta parameter), got {opts[key]!r}")

    def draw(self, batch: int) -> VicinityDraws:
        """λ, γ and π for a batch of `batch` clips (λ and γ drawn even when their step is off)."""
        lam = 1.0 + _beta(*self.extrapolation, self.generator)
        gamma = _beta(*self.interpolation, self.generator)
        return VicinityDraws(lam, gamma, torch.randperm(batch, generator=self.generator))

    def mix_embeddings(self, e: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return vicinity_expand(e, y, self.factors, self.draw(len(e)), extrapolate=self.extrapolate,
                               interpolate=self.interpolate)


def _beta(a: float, b: float, generator: torch.Generator) -> float:
    """One Beta(a, b) variate, fixed by `generator`'s state (numpy draws it from a seed taken there)."""
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    return float(np.random.default_rng(seed).beta(a, b))
