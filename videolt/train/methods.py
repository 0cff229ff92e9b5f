"""Long-tail methods as data: which loss, sampler and batch mixing a training run uses.

A method is a frozen `MethodSpec` filed in `METHODS`; `create_method(name, **opts)` returns a copy
with options overridden. An option key is either one of the loss's options (`gamma`, `beta`,
`reduction`, ...) or one of the batch mixing's (`eta`, `beta_rule`, `warmup_epochs` for
FrameStack); anything else is a `ConfigError`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from videolt.errors import ConfigError
from videolt.registry import Registry
from videolt.train.framestack import BETA_RULES
from videolt.train.losses import loss_options

__all__ = ["BATCH_MIXES", "METHODS", "MethodSpec", "create_method"]

# Options of each batch mixing with their defaults (mixup has none: λ ~ U(0, 1) every batch).
BATCH_MIXES: dict[str, dict[str, Any]] = {
    "none": {},
    "mixup": {},
    "framestack": {"eta": 0.5, "beta_rule": "ap", "warmup_epochs": 1},
}


@dataclass(frozen=True)
class MethodSpec:
    """One long-tail method: loss (+ options), sampler ("none" | "cbs" | "srs"), batch mixing (+ options)."""

    loss: str
    loss_opts: dict[str, Any] = field(default_factory=dict)
    sampler: str = "none"
    batch_mix: str = "none"
    mix_opts: dict[str, Any] = field(default_factory=dict)


METHODS: Registry[MethodSpec] = Registry("method")

_RESAMPLED = {"reduction": "sum_classes"}  # the loss of resampling: sum over classes, mean over batch
for _name, _spec in {
    "baseline": MethodSpec("bce"),
    "focal": MethodSpec("focal"),
    "cb": MethodSpec("cb"),
    "ldam_drw": MethodSpec("ldam"),
    "eql": MethodSpec("eql"),
    "mixup": MethodSpec("bce", batch_mix="mixup"),
    "cbs": MethodSpec("bce", dict(_RESAMPLED), sampler="cbs"),
    "srs": MethodSpec("bce", dict(_RESAMPLED), sampler="srs"),
    "framestack": MethodSpec("focal", {"gamma": 1.0}, batch_mix="framestack", mix_opts=dict(BATCH_MIXES["framestack"])),
}.items():
    METHODS.register(_name)(_spec)


def create_method(name: str, **opts: Any) -> MethodSpec:
    """The method `name` with `opts` overriding its loss or mixing options (validated)."""
    spec = METHODS.get(name)
    loss_keys = set(loss_options(spec.loss))
    mix_keys = set(BATCH_MIXES[spec.batch_mix])
    unknown = sorted(set(opts) - loss_keys - mix_keys)
    if unknown:
        known = ", ".join(sorted(loss_keys | mix_keys))
        raise ConfigError(f"method {name!r} has no option {', '.join(unknown)} (options: {known})")
    mix_opts = {**spec.mix_opts, **{k: v for k, v in opts.items() if k in mix_keys}}
    _check_mix_opts(mix_opts)
    return dataclasses.replace(
        spec,
        loss_opts={**spec.loss_opts, **{k: v for k, v in opts.items() if k in loss_keys}},
        mix_opts=mix_opts,
    )


def _check_mix_opts(mix_opts: dict[str, Any]) -> None:
    eta = mix_opts.get("eta", 0.0)
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(f"eta must be in [0, 1], got {eta!r}")
    if mix_opts.get("beta_rule", "ap") not in BETA_RULES:
        raise ConfigError(f"beta_rule must be one of {', '.join(BETA_RULES)}, got {mix_opts['beta_rule']!r}")
    if mix_opts.get("warmup_epochs", 0) < 0:
        raise ConfigError(f"warmup_epochs must be >= 0, got {mix_opts['warmup_epochs']!r}")
