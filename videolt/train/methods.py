"""Long-tail methods as data: which loss, sampler and batch mix a training run uses (and, for a method
built around its own aggregator such as MOVE, which aggregator).

Words (one meaning each; docs/architecture.md's glossary): a *method* is a name in `METHODS`; its
*spec* is the frozen `MethodSpec` filed there, and a *resolved* spec is what `resolve_method` makes of
a run's method, method options, loss override and loss options: the spec a run trains. A *recipe* is
training settings (`RECIPE`, `method_recipe`), a *setting* one config key, and the *method key*
(`method_key`) a resolved spec as canonical JSON.

`create_method(name, **opts)` returns a spec with options overridden: an option key is one of the
loss's options (`gamma`, `beta`, `reduction`, ...) or one of the batch mix's (`eta`, `beta_rule`,
`warmup_epochs` for FrameStack; their defaults live in the mix's class); anything else is a
`ConfigError`. `resolve_method` is the one place a spec is resolved; training and the benchmark's
matching of paper rows both use it, the latter through `method_key`.

A method's `model` names the aggregator it needs ("" = any): `--method move` trains MOVE's
aggregator. `TrainConfig` fills that in when no aggregator is asked for and refuses another one
(`method_model`); the aggregator's own options (MOVE's `lb`, ...) stay aggregator options
(`model_opts`), with their defaults in the aggregator's signature.

A method's default is its reference's behaviour. The paper's methods keep VideoLT's training
recipe (`RECIPE`: gradient-norm clip 20, as every script of the reference passes `--gd 20`); a
method whose reference trains otherwise overrides those settings in its spec's `train`, each with
the file and line it comes from, and `TrainConfig` resolves them when the run leaves them unset
(`method_recipe`; recorded resolved in config.json, and the spec itself in its provenance). Every
spec's `source` names the reference it follows (docs/semantics.md and docs/beyond.md say more).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from videolt.errors import ConfigError
from videolt.registry import Registry, option_error
from videolt.train.aggregators import AGGREGATORS
from videolt.train.losses import LOSSES
from videolt.train.mixes import BATCH_MIXES

__all__ = ["METHODS", "RECIPE", "MethodSpec", "create_method", "method_key", "method_model", "method_recipe",
           "resolve_method"]

# A loss's generator seed is the run's seed, not a setting of the method.
_RUNTIME_LOSS_OPTS = ("seed",)


@dataclass(frozen=True)
class MethodSpec:
    """One long-tail method: loss (+ options), sampler ("none" | "cbs" | "srs"), batch mix (+ options),
    the aggregator it is built around ("" = any), the training settings where its reference departs
    from VideoLT's recipe (`train`: setting → (value, the file and line it comes from)), and the
    reference it follows (`source`)."""

    loss: str
    loss_opts: dict[str, Any] = field(default_factory=dict)
    sampler: str = "none"
    batch_mix: str = "none"
    mix_opts: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    train: dict[str, tuple[Any, str]] = field(default_factory=dict)
    source: str = ""


def _summary(spec: MethodSpec) -> str:
    """What a method trains with and where it comes from, in one line, e.g. "loss focal {gamma: 1.0}; batch mix
    framestack; source: 17Skye17/VideoLT@1732d5c scripts/framestack.sh:4-22 (...)"."""
    parts = [f"loss {spec.loss}{_opts(spec.loss_opts)}"]
    if spec.sampler != "none":
        parts.append(f"sampler {spec.sampler}")
    if spec.batch_mix != "none":
        parts.append(f"batch mix {spec.batch_mix}{_opts(spec.mix_opts)}")
    if spec.model:
        parts.append(f"aggregator {spec.model}")
    parts += [f"{key} {value}" for key, (value, _) in spec.train.items()]
    if spec.source:
        parts.append(f"source: {spec.source}")
    return "; ".join(parts)


def _opts(opts: Mapping[str, Any]) -> str:
    return " {" + ", ".join(f"{k}: {v}" for k, v in opts.items()) + "}" if opts else ""


METHODS: Registry[MethodSpec] = Registry("method", summary=_summary)

# VideoLT's training recipe for the TrainConfig settings a method may set otherwise (docs/semantics.md §5):
# every script of the reference (VideoLT@1732d5c scripts/*.sh:7-8) passes --gd 20 to clip_grad_norm_ over
# all parameters (base_main.py:208-209, opts.py:35).
RECIPE: dict[str, Any] = {"clip_grad": 20.0}

_VLT = "17Skye17/VideoLT@1732d5c"
_RESAMPLED = {"reduction": "sum_classes"}  # the loss of resampling: sum over classes, mean over batch
for _name, _spec in {
    "baseline": MethodSpec("bce", source=f"{_VLT} scripts/baseline.sh:4-18 (base_main.py, BCELoss)"),
    "focal": MethodSpec("focal", source=f"{_VLT} ops/losses.py FocalLoss as scripts/framestack.sh:14,19 trains it "
                                        "(γ 1), alone: FrameStack's loss as a control (issue 9)"),
    "cb": MethodSpec("cb", source=f"{_VLT} scripts/cbloss.sh:4-18 (CBLoss)"),
    "ldam_drw": MethodSpec("ldam", source=f"{_VLT} scripts/ldamloss.sh:4-18 (LDAM)"),
    "eql": MethodSpec("eql", source=f"{_VLT} scripts/EQL.sh:4-18 (EQL)"),
    "mixup": MethodSpec("bce", batch_mix="mixup", source=f"{_VLT} scripts/mixup.sh:4-5 (--augment mixup)"),
    "cbs": MethodSpec("bce", dict(_RESAMPLED), sampler="cbs", source=f"{_VLT} scripts/CBS.sh:4-5 (--resample CBS)"),
    "srs": MethodSpec("bce", dict(_RESAMPLED), sampler="srs", source=f"{_VLT} scripts/SRS.sh:4-5 (--resample SRS)"),
    "framestack": MethodSpec("focal", {"gamma": 1.0}, batch_mix="framestack",
                             source=f"{_VLT} scripts/framestack.sh:4-22 (dy_main.py, FocalLoss γ 1, ratio 0.5)"),
    # MOVE (AAAI 2023): its aggregator, its vicinity expansion, BCE, and no gradient clipping.
    "move": MethodSpec("bce", batch_mix="vicinity", model="move",
                       train={"clip_grad": (0.0, "wjun0830/MOVE@7928daa VideoLT/scripts/MOVE.sh:3-13 passes no --gd "
                                                 "(opts.py:34-35: default None) and MOVE.py:239-243 steps unclipped")},
                       source="wjun0830/MOVE@7928daa VideoLT/scripts/MOVE.sh:3-13, MOVE.py:111 (BCE), 214-243"),
    # Losses made for multi-label long tails, as methods of their own (plain sampling, no mix), trained in
    # VideoLT's loop; each loss's defaults are its authors' (cited in its module).
    "db": MethodSpec("db", source="wutong16/DistributionBalancedLoss@2567764 configs/coco/LT_resnet50_pfc_DB.py:22-28 "
                                  "(DB-Focal: the defaults of losses/db.py)"),
    "asl": MethodSpec("asl", source="Alibaba-MIIL/ASL@8c9e0bd train.py:93, src/loss_functions/losses.py:38-47 "
                                    "(the defaults of losses/asl.py)"),
    "logit_adjusted": MethodSpec("logit_adjusted", source="Menon et al., ICLR 2021 (logit-adjusted loss, τ 1), "
                                                          "in its sigmoid form (losses/logit_adjusted.py)"),
}.items():
    METHODS.register(_name)(_spec)


def method_recipe(method: str) -> dict[str, Any]:
    """The training settings `method` runs with when the run leaves them unset: VideoLT's recipe, with the
    method's own where its reference departs from it."""
    return {**RECIPE, **{key: value for key, (value, _) in METHODS.get(method).train.items()}}


def create_method(name: str, **opts: Any) -> MethodSpec:
    """The method `name` with `opts` overriding its loss or mix options (validated); the mix's
    options are complete (its defaults filled in)."""
    spec = METHODS.get(name)
    loss_keys = set(LOSSES.options(spec.loss))
    mix_keys = set(BATCH_MIXES.options(spec.batch_mix))
    unknown = sorted(set(opts) - loss_keys - mix_keys)
    if unknown:
        note = ""
        if spec.model and set(unknown) <= set(AGGREGATORS.options(spec.model)):
            note = f"; {', '.join(unknown)}: option(s) of the {spec.model} aggregator, set in model_opts"
        raise option_error(f"method {name!r}", unknown, sorted(loss_keys | mix_keys), "method_opts", note)
    mix_opts = {**BATCH_MIXES.options(spec.batch_mix), **spec.mix_opts,
                **{k: v for k, v in opts.items() if k in mix_keys}}
    BATCH_MIXES.get(spec.batch_mix).check_options(**mix_opts)
    return dataclasses.replace(spec, loss_opts={**spec.loss_opts, **{k: v for k, v in opts.items() if k in loss_keys}},
                               mix_opts=mix_opts)


def resolve_method(method: str, method_opts: Mapping[str, Any] | None = None, loss: str = "",
                   loss_opts: Mapping[str, Any] | None = None) -> MethodSpec:
    """The resolved spec a run trains: the method with its options, its loss replaced by `loss` when given
    (the method's own loss options are then dropped), `loss_opts` over them, and the resampling
    methods' class-sum reduction kept under a replaced loss."""
    spec = create_method(method, **dict(method_opts or {}))
    name = loss or spec.loss
    opts = {**(spec.loss_opts if name == spec.loss else {}), **dict(loss_opts or {})}
    if spec.sampler != "none":
        opts.setdefault("reduction", "sum_classes")
    LOSSES.check_options(name, opts)
    return dataclasses.replace(spec, loss=name, loss_opts=opts)


def method_model(method: str, model: str) -> str:
    """The aggregator a run trains: `model` if given, else the method's own, else "nonlinear".

    Asking for another aggregator than the one the method is built around is a `ConfigError`.
    """
    own = METHODS.get(method).model
    if own and model and model != own:
        raise ConfigError(f"method {method!r} trains its own aggregator {own!r}, not {model!r}: "
                          f"drop the model setting or set it to {own}")
    return model or own or "nonlinear"


def method_key(spec: MethodSpec, model: str = "", model_opts: Mapping[str, Any] | None = None) -> str:
    """A resolved spec as canonical JSON, every default filled in: runs (and paper rows) with equal
    keys are the same experiment however their options were spelt.

    `model_opts` of aggregator `model` count only where they differ from its defaults (rows are
    matched on the aggregator's name separately); a method's own aggregator is part of its spec.
    """
    loss_opts = {**LOSSES.options(spec.loss), **spec.loss_opts}
    for key in _RUNTIME_LOSS_OPTS:
        loss_opts.pop(key, None)
    key = {"loss": spec.loss, "loss_opts": loss_opts, "sampler": spec.sampler, "batch_mix": spec.batch_mix,
           "mix_opts": {**BATCH_MIXES.options(spec.batch_mix), **spec.mix_opts}}
    if spec.model:
        key["model"] = spec.model
    defaults = AGGREGATORS.options(model) if model else {}
    changed = {k: v for k, v in (model_opts or {}).items() if k not in defaults or defaults[k] != v}
    if changed:
        key["model_opts"] = changed
    return json.dumps(key, sort_keys=True)
