"""int8 quantisation of feature rows for the cache (`cache.py`): one byte a value, a scale and a zero
point per row and channel. Why int8 and not fp8: benchmarks/RESULTS.md "## cache (issue 22)"."""

from __future__ import annotations

import torch

__all__ = ["dequantise", "quantise"]


def quantise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows x [n, T, D] → codes uint8 [n, T, D], scale float32 [n, D], zero point float32 [n, D].

    Per row and channel, over the T frames, with lo and hi the channel's min and max: s = (hi − lo) / 255
    and 256 levels read back by `dequantise` as (q − z)·s. A channel that holds 0 (lo ≤ 0 ≤ hi: ReLU
    zeros, signed features) has its grid on 0: z = round(−lo / s), an integer, so 0 reads back exactly
    (q = z); another channel's grid starts at lo (z = −lo / s). Either way |x̂ − x| ≤ s/2 for every
    value, up to float32 rounding.
    """
    x = x.to(torch.float32, copy=True)  # worked on in place below
    lo, hi = x.amin(dim=1), x.amax(dim=1)  # [n, D]
    scale = (hi - lo) / 255.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a constant channel: any scale, q = 0
    holds_zero = (lo <= 0) & (hi >= 0)
    on_zero = torch.round(-lo / scale)
    base = torch.where(holds_zero, -on_zero * scale, lo)  # the value of code 0
    zero = torch.where(holds_zero, on_zero, -lo / scale)
    codes = x.sub_(base[:, None]).div_(scale[:, None]).round_().clamp_(0, 255)
    return codes.to(torch.uint8), scale, zero


def dequantise(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """(q − z)·s in float32: codes [B, T, D], scale and zero [B, D]. The difference comes first (exact where
    z is an integer), then one product: no fused multiply-add could leave a rounding error where q = z."""
    return codes.float().sub_(zero[:, None]).mul_(scale[:, None])
