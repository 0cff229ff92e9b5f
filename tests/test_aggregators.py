"""Aggregators: registry contract, NonLinear by hand, NetVLAD against a loop re-computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from videolt.errors import ConfigError, UnknownNameError
from videolt.train.aggregators import AGGREGATORS, NetVLAD, NonLinear, create_aggregator
from videolt.train.model import build_model

SMALL_OPTS = {"nonlinear": {}, "netvlad": {"clusters": 4, "hidden": 8},
              "move": {"heads": 2, "key_dim": 4, "clusters": 4, "hidden": 8, "classifier_hidden": 6}}
COUNTS5 = np.array([40, 20, 10, 5, 2])


@pytest.mark.parametrize("name", AGGREGATORS.names())
@pytest.mark.parametrize("frames", [60, 150])
def test_contract_shapes_and_backward(name: str, frames: int) -> None:
    torch.manual_seed(0)
    model = create_aggregator(name, 16, 5, class_counts=COUNTS5, **SMALL_OPTS[name])
    x = torch.randn(3, frames, 16)
    logits = model(x, targets=torch.eye(5)[:3])  # the trainer passes the targets in training
    assert logits.shape == (3, 5) and logits.dtype == torch.float32
    assert isinstance(model.classifier, nn.Linear) and model.classifier.out_features == 5
    logits.sum().backward()
    assert model.classifier.weight.grad is not None and model.classifier.weight.grad.abs().sum() > 0
    model.eval()
    assert torch.equal(model(x), model(x))  # eval mode is deterministic


@pytest.mark.parametrize("name", AGGREGATORS.names())
def test_contract_rejects_unknown_option(name: str) -> None:
    with pytest.raises(ConfigError, match="no option"):
        create_aggregator(name, 8, 3, class_counts=np.ones(3), bogus=1)
    with pytest.raises(ConfigError, match="model_opts.seed"):  # the run's seed is not an option
        build_model(name, 8, 3, {"seed": 1}, class_counts=np.ones(3))


def test_unknown_name() -> None:
    with pytest.raises(UnknownNameError, match="netvlad"):
        create_aggregator("netvald", 8, 3)


def test_defaults() -> None:
    nl = create_aggregator("nonlinear", 8, 3)
    assert nl.fc.out_features == 8 and nl.dropout.p == 0.5
    nv = create_aggregator("netvlad", 8, 3)
    assert nv.gate.shape == (64, 8) and nv.project.in_features == 64 * 8 and nv.project.out_features == 1024
    assert nv.assign.bias is None and nv.project.bias is None


def test_nonlinear_by_hand() -> None:
    model = NonLinear(2, 2, hidden=2).eval()
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
        model.fc.bias.copy_(torch.tensor([0.0, -1.0]))
        model.classifier.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, -1.0]]))
        model.classifier.bias.copy_(torch.tensor([0.5, 0.0]))
    frames = [[1.0, 2.0], [3.0, 1.0]]
    expected = [0.0, 0.0]
    for a, b in frames:
        h = [max(0.0, a - b), max(0.0, 0.5 * a + 2 * b - 1.0)]
        expected[0] += (h[0] + h[1] + 0.5) / len(frames)
        expected[1] += (2 * h[0] - h[1]) / len(frames)
    # frame 1: h = [0, 3.5] -> [4, -3.5]; frame 2: h = [2, 2.5] -> [5, 1.5]; mean [4.5, -1]
    assert expected == [4.5, -1.0]
    out = model(torch.tensor([frames]))
    assert out.tolist() == [pytest.approx(expected)]


def test_nonlinear_dropout_active_in_train_mode() -> None:
    torch.manual_seed(0)
    model = NonLinear(16, 4, dropout=0.5)
    x = torch.randn(2, 5, 16)
    assert not torch.allclose(model(x), model(x))
    model.eval()
    assert torch.allclose(model(x), model(x))


def _netvlad_by_loops(model: NetVLAD, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode NetVLAD spelt out per frame, cluster and dimension in float64."""
    p = {k: v.double() for k, v in model.state_dict().items() if v.is_floating_point()}
    b, t, d = x.shape
    k_clusters = p["gate"].shape[0]
    eps = model.input_bn.eps
    outs = []
    for i in range(b):
        v = torch.zeros(k_clusters, d, dtype=torch.float64)
        for j in range(t):
            f = (x[i, j].double() - p["input_bn.running_mean"]) / torch.sqrt(p["input_bn.running_var"] + eps)
            f = f * p["input_bn.weight"] + p["input_bn.bias"]
            a = p["assign.weight"] @ f
            a = (a - p["assign_bn.running_mean"]) / torch.sqrt(p["assign_bn.running_var"] + eps)
            a = a * p["assign_bn.weight"] + p["assign_bn.bias"]
            a = torch.exp(a) / torch.exp(a).sum()
            for k in range(k_clusters):
                v[k] += a[k] * f
        for k in range(k_clusters):
            v[k] = v[k] / (1 + torch.exp(-p["gate"][k]))
            v[k] = v[k] / v[k].norm()
        flat = torch.tensor([v[k, dd].item() for dd in range(d) for k in range(k_clusters)], dtype=torch.float64)
        flat = flat / flat.norm()
        h = p["project.weight"] @ flat
        h = (h - p["project_bn.running_mean"]) / torch.sqrt(p["project_bn.running_var"] + eps)
        h = (h * p["project_bn.weight"] + p["project_bn.bias"]).clamp(0.0, 6.0)
        outs.append(p["classifier.weight"] @ h + p["classifier.bias"])
    return torch.stack(outs)


def test_netvlad_matches_loop_recomputation() -> None:
    torch.manual_seed(0)
    model = NetVLAD(6, 3, clusters=4, hidden=5)
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        for bn in (model.input_bn, model.assign_bn, model.project_bn):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.randn(2, 7, 6)
    expected = _netvlad_by_loops(model, x)
    assert torch.allclose(model(x).double(), expected, atol=1e-5)


def test_netvlad_input_bn_uses_all_frames() -> None:
    torch.manual_seed(0)
    model = NetVLAD(4, 2, clusters=3, hidden=5)
    x = torch.randn(3, 10, 4) * 2 + 1
    model(x)  # train mode: BN statistics over all B·T frames
    expected = 0.1 * x.reshape(-1, 4).mean(dim=0)  # momentum 0.1 from a zero running mean
    assert torch.allclose(model.input_bn.running_mean, expected, atol=1e-6)


def test_netvlad_vlad_is_unit_norm_and_gate_init() -> None:
    torch.manual_seed(0)
    model = NetVLAD(32, 3, clusters=16, hidden=8)
    std = model.gate.std().item()
    assert abs(std - math.sqrt(2.0 / (16 + 32))) < 0.05  # xavier-normal
    v = model.vlad(torch.randn(2, 5, 32))
    assert v.shape == (2, 16 * 32)
    assert torch.allclose(v.norm(dim=1), torch.ones(2), atol=1e-6)
