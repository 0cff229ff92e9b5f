"""The network a run trains and how it predicts: an aggregator, optionally wrapped for decoupling.

Decoupling (semantics §6) works on the aggregator's `.classifier`: cRT retrains it from scratch on
a frozen model; LWS learns a per-class logit scale on a frozen model; τ-normalisation rescales its
rows once. `Decoupled` keeps the frozen part in eval mode while training, so its dropout and batch
norm statistics stay those of the trained model.
"""

from __future__ import annotations

import contextlib
from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from videolt.errors import ConfigError
from videolt.train.aggregators import create_aggregator
from videolt.train.datasets import BatchLoader, FrameSource, TestClips, chunks

__all__ = ["Decoupled", "autocast", "build_model", "predict", "resolve_amp", "resolve_device", "tau_normalize"]

DecoupleMode = Literal["none", "crt", "lws", "tau_norm"]


class Decoupled(nn.Module):
    """A trained aggregator `base` frozen except its classifier (cRT) or a per-class logit scale (LWS)."""

    def __init__(self, base: nn.Module, mode: Literal["crt", "lws"]):
        super().__init__()
        self.base, self.mode = base, mode
        for p in base.parameters():
            p.requires_grad_(False)
        if mode == "crt":
            for p in base.classifier.parameters():
                p.requires_grad_(True)
        self.scale = nn.Parameter(torch.ones(base.classifier.out_features), requires_grad=mode == "lws")

    def reset_classifier(self) -> None:
        """cRT starts its classifier from a fresh default init."""
        self.base.classifier.reset_parameters()

    def train(self, mode: bool = True) -> "Decoupled":
        super().train(mode)
        self.base.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) * self.scale  # [B, C]


def build_model(name: str, in_dim: int, num_classes: int, opts: dict, decouple: DecoupleMode = "none") -> nn.Module:
    """The aggregator `name`, wrapped in `Decoupled` for cRT / LWS; τ-norm needs no wrapper."""
    model = create_aggregator(name, in_dim, num_classes, **opts)
    return Decoupled(model, decouple) if decouple in ("crt", "lws") else model


@torch.no_grad()
def tau_normalize(classifier: nn.Linear, tau: float = 1.0) -> None:
    """Divide each class row of the classifier's weight by its L2 norm ** tau (the bias is kept)."""
    norms = classifier.weight.norm(dim=1, keepdim=True).clamp_min(1e-12)  # [C, 1]
    classifier.weight.div_(norms.pow(tau))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` → this rank's GPU if there is one, else the CPU; asking for a missing GPU is an error."""
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name} requested but CUDA is not available")
    return device


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: none on CPU or with `off`; `auto` picks bf16 where the GPU supports it."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA only; a no-op context otherwise."""
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


@torch.no_grad()
def predict(model: nn.Module, source: FrameSource, rows: Sequence[int], *, num_classes: int, batch_size: int,
            device: torch.device, amp_dtype: torch.dtype | None = None, workers: int = 0) -> np.ndarray:
    """Sigmoid scores [N, C] (float32) of the videos at store `rows`, on all their frames, in eval mode."""
    was_training = model.training
    model.eval()
    dataset = TestClips(source, rows, np.zeros((len(rows), num_classes), dtype=np.float32))
    out = np.empty((len(rows), num_classes), dtype=np.float32)
    loader = BatchLoader(dataset, chunks(len(rows), batch_size), workers=workers,
                          pin_memory=device.type == "cuda")
    for x, _, pos in loader:
        with autocast(device, amp_dtype):
            logits = model(x.to(device, non_blocking=True).float())
        out[pos.numpy()] = torch.sigmoid(logits.float()).cpu().numpy()
    model.train(was_training)
    return out
