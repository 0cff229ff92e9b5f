"""Which torch device a stage runs on: one rule for extraction, training and evaluation; and the
devices of an extract run's sinks (one sink per device)."""

from __future__ import annotations

import torch

from videolt.errors import ConfigError

__all__ = ["resolve_device", "resolve_devices"]


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


def resolve_devices(devices: str | int | None, device: str, gpus: int) -> list[str]:
    """The device of each sink, given the GPUs the executor offers (this machine's or a Ray cluster's).

    `devices`: None → one sink on `device`, except that `device` auto means every GPU (one CPU sink
    when there is none); "auto" → the same; N (an int or digits) → the first N GPUs; a comma-separated
    list ("cuda:0,cuda:1", "cpu,cpu") → those, all of one kind. A GPU that is not there is an error.
    """
    if devices is None or devices == "auto":
        if devices is None and device != "auto":
            return [_checked(device if device != "cuda" else "cuda:0", gpus)]
        return [f"cuda:{k}" for k in range(gpus)] or ["cpu"]
    if isinstance(devices, int) or devices.strip().isdigit():
        n = int(devices)
        if not 1 <= n <= gpus:
            raise ConfigError(f"devices: {n} GPUs asked, {gpus} here" + (" (for CPU sinks list them: cpu,cpu)"
                                                                          if gpus == 0 else ""))
        return [f"cuda:{k}" for k in range(n)]
    names = [d.strip() for d in devices.split(",") if d.strip()]
    out = [_checked("cuda:0" if d == "cuda" else d, gpus) for d in names]
    if not out or len({d.split(":")[0] for d in out}) > 1:
        raise ConfigError(f"devices: expected auto, N or a list of devices of one kind (cpu,cpu or cuda:0,cuda:1), "
                          f"got {devices!r}")
    return out


def _checked(name: str, gpus: int) -> str:
    if name != "cpu" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise ConfigError(f"devices: expected cpu, cuda or cuda:N, got {name!r}")
    if name != "cpu" and int(name[5:]) >= gpus:
        raise ConfigError(f"devices: {name} asked, but there " + (f"are {gpus} GPUs (cuda:0 to cuda:{gpus - 1})"
                                                                    if gpus else "is no GPU here (use cpu)"))
    return name
