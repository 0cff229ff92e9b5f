"""How much memory a run's feature caches may take: host RAM and GPU memory, the run's own needs measured."""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import dataclass

import torch
from torch import nn

from videolt.train.model import autocast

__all__ = ["Room", "device_available", "device_reserve", "host_available"]

_HOST_RESERVE = 2 * 2**30  # host RAM left free beyond 10 % of the total


def host_available() -> int:
    """Host RAM that caches may take: MemAvailable less 10 % of the total and 2 GiB."""
    info = {}
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            name, _, value = line.partition(":")
            info[name] = int(value.split()[0]) * 1024
    if "MemAvailable" not in info:
        pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info = {"MemAvailable": pages * size, "MemTotal": os.sysconf("SC_PHYS_PAGES") * size}
    return max(0, info["MemAvailable"] - info["MemTotal"] // 10 - _HOST_RESERVE)


def device_available(device: torch.device, reserve: int) -> int:
    """Free memory of a CUDA `device` less `reserve` (0 for the CPU: there the host RAM counts)."""
    if device.type != "cuda":
        return 0
    return max(0, torch.cuda.mem_get_info(device)[0] - reserve)


def device_reserve(model: nn.Module, *, batch: int, clip_len: int, frames: int, dim: int, num_classes: int,
                   device: torch.device, amp_dtype: torch.dtype | None) -> int:
    """GPU bytes a run needs beside its caches, measured: the peak of one probe training step (forward
    under the run's autocast, backward) and one evaluation batch of whole videos, × 1.25, plus Adam's
    two moments and DDP's gradient buckets (3 × the parameters) and 1 GiB for the CUDA context's
    workspaces. The model's state (batch-norm statistics, generators) and the RNGs are restored."""
    if device.type != "cuda":
        return 0
    state = copy.deepcopy(model.state_dict())
    was_training = model.training
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.random.fork_rng(devices=[device]):
        x = torch.randn(batch, clip_len, dim, device=device)
        y = (torch.rand(batch, num_classes, device=device) < 0.01).float()
        model.train()
        with autocast(device, amp_dtype):
            logits = model(x, targets=y)
        logits.float().sum().backward()
        del x, y, logits
        model.eval()
        with torch.no_grad():
            model(torch.randn(batch, frames, dim, device=device))
    peak = torch.cuda.max_memory_allocated(device) - base
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return int(1.25 * peak) + 3 * params + 2**30


@dataclass
class Room:
    """Memory left for caches, on the training GPU and in host RAM; `place` claims it split by split."""

    device: torch.device
    on_device: int  # bytes the caches may take on the GPU (0 on the CPU)
    on_host: int  # bytes they may take in host RAM

    def place(self, need: int) -> torch.device | None:
        """Where `need` bytes go: the GPU first, then host RAM; None where neither has room."""
        if self.device.type == "cuda" and need <= self.on_device:
            self.on_device -= need
            return self.device
        if need <= self.on_host:
            self.on_host -= need
            return torch.device("cpu")
        return None

    def describe(self) -> str:
        gpu = f"{self.on_device / 1e9:.1f} GB left on {self.device} and " if self.device.type == "cuda" else ""
        return f"{gpu}{self.on_host / 1e9:.1f} GB in host RAM"
