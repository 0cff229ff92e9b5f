"""The network a run trains: an aggregator, optionally wrapped for decoupling, and its precision.

Decoupling (docs/semantics.md §6) works on the aggregator's `.classifier`: cRT retrains it from scratch on
a frozen model; LWS learns a per-class logit scale on a frozen model; τ-normalisation rescales its
rows once. `Decoupled` keeps the frozen part in eval mode while training, so its dropout and batch
norm statistics stay those of the trained model.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from videolt.errors import ConfigError
from videolt.train.aggregators import Aggregator, create_aggregator

__all__ = ["Decoupled", "autocast", "build_model", "resolve_amp", "tau_normalize"]

DecoupleMode = Literal["none", "crt", "lws", "tau_norm"]


class Decoupled(nn.Module):
    """A trained aggregator `base` frozen except its classifier (cRT) or a per-class logit scale (LWS)."""

    def __init__(self, base: Aggregator, mode: Literal["crt", "lws"]):
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

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.base(x, **kwargs) * self.scale  # [B, C]


def build_model(name: str, in_dim: int, num_classes: int, opts: dict, decouple: DecoupleMode = "none", *,
                class_counts: np.ndarray | None = None, seed: int = 0) -> nn.Module:
    """The aggregator `name`, wrapped in `Decoupled` for cRT / LWS (τ-norm needs no wrapper).

    `class_counts` (train videos per class) and `seed` (the run's) go to the aggregators that use them."""
    reserved = sorted({"class_counts", "seed"} & set(opts))
    if reserved:
        raise ConfigError(f"model_opts.{reserved[0]}: given by the run (its label lists or seed), not an option")
    model = create_aggregator(name, in_dim, num_classes, class_counts=class_counts, seed=seed, **opts)
    return Decoupled(model, decouple) if decouple in ("crt", "lws") else model


@torch.no_grad()
def tau_normalize(classifier: nn.Linear, tau: float = 1.0) -> None:
    """Divide each class row of the classifier's weight by its L2 norm ** tau.

    The bias is kept, where Kang et al. (ICLR 2020) drop it: a class's logits become w·h/‖w‖^τ + b, an
    increasing affine map of w·h either way, so per-class AP (and mAP) is unchanged by either choice;
    keeping b leaves the calibration between classes, hence Acc@k, closer to the trained model.
    """
    norms = classifier.weight.norm(dim=1, keepdim=True).clamp_min(1e-12)  # [C, 1]
    classifier.weight.div_(norms.pow(tau))


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the training forward: None for `off` (fp32), bf16 on any device, fp16 on CUDA."""
    if amp == "off":
        return None
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp: fp16 autocast needs CUDA; use bf16 or off on the CPU")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision for the training forward (`dtype` None: a no-op context, fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
