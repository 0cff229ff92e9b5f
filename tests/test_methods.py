"""Method registry: the paper's specs, option validation, and one training step per method × aggregator."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from videolt.config import to_dict
from videolt.errors import ConfigError, UnknownNameError
from videolt.train.aggregators import AGGREGATORS, create_aggregator
from videolt.train.losses import LOSSES, create_loss
from videolt.train.config import TrainConfig
from videolt.train.methods import (
    METHODS,
    RECIPE,
    MethodSpec,
    create_method,
    method_key,
    method_model,
    method_recipe,
    resolve_method,
)
from videolt.train.mixes import create_batch_mix
from videolt.train.mixes.mixup import mixup
from videolt.train.samplers import create_sampler, sample_mask

EXPECTED = {
    "baseline": MethodSpec("bce"),
    "focal": MethodSpec("focal"),
    "cb": MethodSpec("cb"),
    "ldam_drw": MethodSpec("ldam"),
    "eql": MethodSpec("eql"),
    "mixup": MethodSpec("bce", batch_mix="mixup"),
    "cbs": MethodSpec("bce", {"reduction": "sum_classes"}, sampler="cbs"),
    "srs": MethodSpec("bce", {"reduction": "sum_classes"}, sampler="srs"),
    "framestack": MethodSpec(
        "focal", {"gamma": 1.0}, batch_mix="framestack", mix_opts={"eta": 0.5, "beta_rule": "ap", "warmup_epochs": 1}
    ),
    "move": MethodSpec("bce", batch_mix="vicinity", model="move",
                       mix_opts={"calib_bias": 0.5, "extrapolation_a": 2.0, "extrapolation_b": 2.0,
                                 "interpolation_a": 1.0, "interpolation_b": 1.0, "extrapolate": True,
                                 "interpolate": True, "calibrate": True}),
    "db": MethodSpec("db"),
    "asl": MethodSpec("asl"),
    "logit_adjusted": MethodSpec("logit_adjusted"),
}


# Where a method's reference trains otherwise than VideoLT's recipe (clip 20 over every parameter).
EXPECTED_RECIPE = {name: {"clip_grad": 20.0} for name in EXPECTED} | {"move": {"clip_grad": 0.0}}
FILE_LINE = re.compile(r"\S+\.(py|sh):\d+")  # a file and a line (or range) of the reference


def test_specs() -> None:
    assert METHODS.names() == sorted(EXPECTED)
    for name, spec in EXPECTED.items():
        assert dataclasses.replace(create_method(name), train={}, source="") == spec


def test_each_method_resolves_its_references_defaults() -> None:
    """The paper's methods keep VideoLT's recipe; MOVE clips nothing, as its scripts/MOVE.sh; each departure
    from the recipe cites the file and line it comes from, every spec names its reference, and a setting
    given explicitly wins. The resolved value is what config.json records."""
    assert RECIPE == {"clip_grad": 20.0}
    for name in EXPECTED:
        spec = METHODS.get(name)
        assert method_recipe(name) == EXPECTED_RECIPE[name]
        config = TrainConfig(features="f", method=name)
        assert {key: getattr(config, key) for key in RECIPE} == EXPECTED_RECIPE[name]
        assert spec.source and (FILE_LINE.search(spec.source) or name == "logit_adjusted"), name
        for key, (value, citation) in spec.train.items():
            assert key in RECIPE and value != RECIPE[key] and FILE_LINE.search(citation), (name, key)
    assert "MOVE.sh" in METHODS.get("move").train["clip_grad"][1]
    assert TrainConfig(features="f", method="move", clip_grad=20.0).clip_grad == 20.0
    assert TrainConfig(features="f", clip_grad=0.0).clip_grad == 0.0
    assert to_dict(TrainConfig(features="f", method="move"))["clip_grad"] == 0.0
    assert resolve_method("move", loss="focal").train == METHODS.get("move").train  # a loss swap keeps the recipe


def test_losses_default_to_what_their_authors_ship() -> None:
    """DB is DB-Focal (γ 2, balance 2: DistributionBalancedLoss configs/coco/LT_resnet50_pfc_DB.py:25); ASL's
    focusing weights get no gradient (Alibaba-MIIL/ASL losses.py:38-47, train.py:93)."""
    assert {k: LOSSES.options("db")[k] for k in ("focal_gamma", "focal_balance", "kappa", "lam", "alpha", "beta",
                                                 "mu")} == {"focal_gamma": 2.0, "focal_balance": 2.0, "kappa": 0.05,
                                                            "lam": 2.0, "alpha": 0.1, "beta": 10.0, "mu": 0.2}
    assert "LT_resnet50_pfc_DB.py" in METHODS.get("db").source
    assert LOSSES.options("asl") == {"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05, "eps": 1e-8,
                                    "focusing_grad": False, "reduction": "mean"}
    assert "train.py:93" in METHODS.get("asl").source


def test_overrides_go_to_loss_or_mix() -> None:
    spec = create_method("framestack", eta=0.3, beta_rule="cf", gamma=2.0)
    assert spec.mix_opts == {"eta": 0.3, "beta_rule": "cf", "warmup_epochs": 1}
    assert spec.loss_opts == {"gamma": 2.0}
    assert create_method("framestack").mix_opts["eta"] == 0.5  # the registered spec is untouched
    assert create_method("cbs", reduction="mean").loss_opts == {"reduction": "mean"}
    assert create_method("eql", variant="threshold").loss_opts == {"variant": "threshold"}


@pytest.mark.parametrize(
    ("name", "opts", "match"),
    [
        ("baseline", {"gamma": 2.0}, "no option gamma"),
        ("mixup", {"eta": 0.5}, "no option eta"),
        ("framestack", {"eta": 1.5}, "eta"),
        ("framestack", {"beta_rule": "auc"}, "beta_rule"),
        ("framestack", {"warmup_epochs": -1}, "warmup_epochs"),
    ],
)
def test_bad_options(name: str, opts: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_method(name, **opts)


def test_unknown_method() -> None:
    with pytest.raises(UnknownNameError, match="framestack"):
        create_method("framestak")


def test_mixup_by_hand() -> None:
    x = torch.arange(12.0).reshape(3, 2, 2)
    y = torch.eye(3)
    mx, my = mixup(x, y, torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)  # the documented draws: λ, then π
    lam = torch.rand((), generator=g).item()
    perm = torch.randperm(3, generator=g).tolist()
    for n in range(3):
        for f in range(2):
            for d in range(2):
                want = lam * x[n, f, d].item() + (1 - lam) * x[perm[n], f, d].item()
                assert mx[n, f, d].item() == pytest.approx(want, rel=1e-6)
        want_y = [lam * (n == c) + (1 - lam) * (perm[n] == c) for c in range(3)]
        assert my[n].tolist() == pytest.approx(want_y, rel=1e-6)
    assert torch.equal(x, torch.arange(12.0).reshape(3, 2, 2))  # inputs untouched


LABELS = [(0,), (0,), (0, 1), (1,), (2,), (0,), (3,), (0, 3)]
COUNTS = np.array([4, 2, 1, 2])


SMALL = {"nonlinear": {}, "netvlad": {"clusters": 4, "hidden": 8},
         "move": {"heads": 2, "key_dim": 4, "clusters": 4, "hidden": 8, "classifier_hidden": 6}}


@pytest.mark.parametrize("aggregator", AGGREGATORS.names())
@pytest.mark.parametrize("method", METHODS.names())
def test_one_training_step(method: str, aggregator: str) -> None:
    """One step as the trainer takes it: sampler, clip mix, aggregator (+ embedding mix), loss, backward."""
    torch.manual_seed(0)
    spec = create_method(method)
    if spec.model and spec.model != aggregator:
        pytest.skip(f"{method} trains its own aggregator {spec.model}")
    loss_fn = create_loss(spec.loss, COUNTS, train_videos=len(LABELS), **spec.loss_opts)
    loss_fn.set_epoch(1)
    sampler = create_sampler(spec.sampler, LABELS, 4, seed=0)
    idx, drawn = sampler.epoch(1) if sampler else (np.arange(6), None)
    y = torch.zeros(6, 4)
    for row, i in enumerate(idx[:6]):
        y[row, list(LABELS[i])] = 1.0
    x = torch.randn(6, 60, 8)
    model = create_aggregator(aggregator, 8, 4, class_counts=COUNTS, **SMALL[aggregator])
    mix = create_batch_mix(spec.batch_mix, COUNTS, 0, **spec.mix_opts)
    mask = sample_mask(y, torch.as_tensor(drawn[:6])) if sampler else None
    if mix.observes:  # FrameStack mixes from the second epoch, with the first epoch's AP
        mix.observe(torch.rand(6, 4), y)
        mix.end_epoch(None)
    mix.start_epoch(1)
    x, y = mix.mix_clips(x, y)
    targets = {"y": y}

    def hook(e: torch.Tensor) -> torch.Tensor:
        e, targets["y"] = mix.mix_embeddings(e, targets["y"])
        return e

    if mix.mixes_embeddings and aggregator == "nonlinear":
        with pytest.raises(ConfigError, match="two views"):  # MOVE's extrapolation needs views of clips
            model(x, targets=y, embedding_hook=hook)
        return
    logits = model(x, targets=y, embedding_hook=hook if mix.mixes_embeddings else None)
    loss = loss_fn(logits, targets["y"], mask)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert model.classifier.weight.grad.abs().sum() > 0


def test_a_method_names_its_aggregator() -> None:
    assert method_model("move", "") == "move" and method_model("move", "move") == "move"
    assert method_model("baseline", "") == "nonlinear" and method_model("baseline", "move") == "move"
    with pytest.raises(ConfigError, match="trains its own aggregator 'move', not 'nonlinear'"):
        method_model("move", "nonlinear")
    assert TrainConfig(features="f", method="move").model == "move"  # recorded resolved in config.json
    assert TrainConfig(features="f").model == "nonlinear"
    with pytest.raises(ConfigError, match="own aggregator"):
        TrainConfig(features="f", method="move", model="netvlad")
    with pytest.raises(ConfigError, match="lb: option.*of the move aggregator, set in model_opts"):
        create_method("move", lb=2.0)
    assert create_method("move", calib_bias=0.3).mix_opts["calib_bias"] == 0.3


def test_setting_key_counts_model_and_changed_aggregator_options() -> None:
    base = resolve_method("baseline")
    assert method_key(base) == method_key(base, "move", {"lb": 3.0})  # a default option names no new setting
    assert method_key(base, "move", {"sampling": "none"}) != method_key(base, "move")
    assert json.loads(method_key(resolve_method("move")))["model"] == "move"
    assert "model" not in json.loads(method_key(base))  # the paper's methods keep their keys
