"""Which torch device a stage runs on: one rule for extraction, training and evaluation."""

from __future__ import annotations

import torch

from videolt.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` → this rank's GPU when there is one, else the CPU; `cpu`, `cuda`, `cuda:N` as given.

    Asking for a GPU that is not there is an error (never a silent switch to the CPU).
    """
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {name!r}")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name} requested but CUDA is not available here (use cpu or auto)")
    return device
