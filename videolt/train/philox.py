"""Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011) in torch.

A counter-based generator maps (key, counter) to random words and keeps no state, so a training
clip's frames are a pure function of (seed, epoch, position): a whole batch is drawn in one
vectorised call on whatever device holds the features, and the integers are the same on the CPU
and on CUDA, for any number of loader threads, any DDP world size and across a resume.

Words are uint32 values held in int64 tensors. A 32 × 32-bit product would overflow int64, so
`_mulhilo` multiplies by 16-bit halves: every intermediate stays below 2^49. Checked against
Random123's known-answer vectors and for uniformity in tests/test_philox.py.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["clip_frames", "philox4x32", "uniform_ints"]

_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # round multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # key schedule (Weyl) increments
_MASK = 0xFFFFFFFF
STREAM_CLIPS = 0  # counter word 3 for training clips; other uses take other stream numbers
_CHUNK = 1 << 16  # clips drawn per call inside `clip_frames`


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of a · b (a < 2^32 a constant, b uint32 in int64), without overflow."""
    low = a * (b & 0xFFFF)  # < 2^48
    mid = a * (b >> 16) + (low >> 16)  # < 2^48 + 2^32: a·b = mid·2^16 + (low mod 2^16)
    return mid >> 16, ((mid & 0xFFFF) << 16) | (low & 0xFFFF)


def philox4x32(counter: torch.Tensor, key: tuple[int, int], rounds: int = 10) -> torch.Tensor:
    """Philox4x32-`rounds` of `counter` [..., 4] (uint32 words in int64) under `key` → words [..., 4]."""
    c0, c1, c2, c3 = (counter[..., i] for i in range(4))
    k0, k1 = key[0] & _MASK, key[1] & _MASK
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK
        hi0, lo0 = _mulhilo(_M0, c0)
        hi1, lo1 = _mulhilo(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return torch.stack([c0, c1, c2, c3], dim=-1)


def uniform_ints(words: torch.Tensor, n: int) -> torch.Tensor:
    """Integers in [0, n) from uint32 words by ⌊w·n / 2^32⌋ (bias ≤ n / 2^32; n < 2^31)."""
    if not 0 < n < 2**31:
        raise ValueError(f"n must lie in [1, 2^31), got {n}")
    return (words * n) >> 32


def clip_frames(seed: int, epoch: int, positions: np.ndarray, frames: int, clip_len: int,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """Sorted frame indices [B, clip_len] (int64, on `device`) of the clips at epoch `positions` [B].

    `clip_len` draws with replacement, uniform over [0, frames) (semantics §3). Clip k of epoch e
    takes the words of counters (j, k, e, STREAM_CLIPS), j = 0, 1, …, under the key (the seed's
    low and high 32 bits). The positions are checked on the host, so nothing waits for the device.
    """
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    if positions.size and (positions.min() < 0 or positions.max() > _MASK) or not 0 <= epoch <= _MASK:
        raise ValueError("positions and epoch must lie in [0, 2^32)")
    if len(positions) > _CHUNK:  # bounds the temporaries of a whole epoch's draw
        return torch.cat([clip_frames(seed, epoch, positions[i:i + _CHUNK], frames, clip_len, device)
                          for i in range(0, len(positions), _CHUNK)])
    seed &= 2**64 - 1
    blocks = -(-clip_len // 4)
    counter = np.zeros((len(positions), blocks, 4), dtype=np.int64)
    counter[..., 0] = np.arange(blocks)
    counter[..., 1] = positions[:, None]
    counter[..., 2] = epoch
    counter[..., 3] = STREAM_CLIPS
    words = philox4x32(torch.from_numpy(counter).to(device, non_blocking=True), (seed & _MASK, seed >> 32))
    return uniform_ints(words.reshape(len(positions), blocks * 4)[:, :clip_len], frames).sort(dim=1).values
