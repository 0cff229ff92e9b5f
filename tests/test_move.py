"""MOVE's attentive aggregation: shapes, frame-sampling rule and masks, attention masking, gradients,
determinism and the generator in the checkpoint. (The side-by-side checks against MOVE's own code
are recorded in benchmarks/RESULTS.md; they need that code and are not part of the suite.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from videolt.errors import ConfigError
from videolt.train import rundir
from videolt.train.aggregators import AGGREGATORS, MoveAggregator, create_aggregator
from videolt.train.aggregators._frame_sampling import (
    DRAW_ROLES,
    RandomFrameDraws,
    frequency_levels,
    lower_bounds,
)
from videolt.train.aggregators.move import AttentionPool

COUNTS = np.array([100, 50, 10, 1])  # z = (n − 1) / 99 exactly: p_c = n_c / Σn is linear in n_c
SMALL = {"heads": 2, "key_dim": 3, "clusters": 4, "hidden": 5, "classifier_hidden": 7}


def make(dim: int = 6, seed: int = 0, **opts) -> MoveAggregator:
    torch.manual_seed(0)
    return create_aggregator("move", dim, 4, class_counts=COUNTS, seed=seed, **{**SMALL, **opts})


def targets(*label_sets: tuple[int, ...]) -> torch.Tensor:
    y = torch.zeros(len(label_sets), 4)
    for i, labels in enumerate(label_sets):
        y[i, list(labels)] = 1.0
    return y


class Recording:
    """FrameDraws that records each call and serves RandomFrameDraws' masks."""

    def __init__(self, seed: int = 0):
        self.inner = RandomFrameDraws(torch.Generator().manual_seed(seed))
        self.calls: list[tuple[str, list[int], torch.Tensor]] = []

    def __call__(self, role: str, lower: torch.Tensor, frames: int) -> torch.Tensor:
        keep = self.inner(role, lower, frames)
        self.calls.append((role, lower.tolist(), keep))
        return keep


def test_lower_bounds_follow_moves_rule_by_hand() -> None:
    z = frequency_levels(COUNTS)
    assert z.tolist() == pytest.approx([1.0, 49 / 99, 9 / 99, 0.0])
    # s_c = max(z_c · 60, 3) = [60, 29.70, 5.45, 3]; lower = floor(mean over the clip's labels)
    y = targets((0,), (1,), (2,), (3,), (0, 3), (1, 2), (0, 1, 2))
    expected = [60, 29, 5, 3, math.floor((60 + 3) / 2), math.floor((49 / 99 * 60 + 9 / 99 * 60) / 2),
                math.floor((60 + 49 / 99 * 60 + 9 / 99 * 60) / 3)]
    assert lower_bounds(y, z, 60, 3.0).tolist() == expected == [60, 29, 5, 3, 31, 17, 31]
    assert lower_bounds(y, z, 30, 3.0).tolist() == [30, 14, 3, 3, 16, 8, 15]  # any clip length T
    assert lower_bounds(targets(()), z, 60, 3.0).tolist() == [3]  # no labels: lb
    assert lower_bounds(targets((0,)), z, 2, 3.0).tolist() == [2]  # capped at T
    soft = torch.tensor([[0.25, 0.0, 0.0, 0.75]])  # after a clip mix: the weighted mean
    assert lower_bounds(soft, z, 60, 3.0).tolist() == [math.floor(0.25 * 60 + 0.75 * 3)]
    assert frequency_levels(np.array([5, 5])).tolist() == [0.0, 0.0]  # no spread: every class at the floor


def test_random_frame_draws_sizes_and_subsets_are_uniform() -> None:
    draws = RandomFrameDraws(torch.Generator().manual_seed(1))
    lower = torch.tensor([3, 40, 60])
    keeps = torch.stack([draws("vlad_view1", lower, 60) for _ in range(4000)])  # [N, 3, 60]
    n = keeps.sum(dim=2)  # [N, 3]
    assert (n[:, 0] >= 3).all() and (n[:, 1] >= 40).all() and (n[:, 2] == 60).all() and (n <= 60).all()
    for col, lo in ((0, 3), (1, 40)):
        hist = np.bincount(n[:, col].numpy(), minlength=61)[lo:]
        assert stats.chisquare(hist).pvalue > 1e-3  # n ~ U{lower, ..., 60}
        inclusion = keeps[:, col].float().mean(dim=0)  # every frame equally likely: E[n] / T
        assert torch.allclose(inclusion, torch.full((60,), (lo + 60) / 2 / 60), atol=0.04)


def test_shapes_train_eval_and_any_feature_size() -> None:
    for dim, frames in ((6, 60), (10, 50), (6, 150)):
        model = make(dim)
        x = torch.randn(5, frames, dim)
        y = targets((0,), (1,), (2,), (3,), (0, 3))
        assert model.embed(x, y).shape == (5, 2, dim + 5)  # two views, [attention | NetVLAD]
        assert model(x, targets=y).shape == (5, 4)
        model.eval()
        assert model.embed(x).shape == (5, 1, dim + 5) and model(x).shape == (5, 4)
    static = make(sampling="none")
    assert static.embed(torch.randn(2, 60, 6), targets((0,), (3,))).shape == (2, 1, 11)
    assert isinstance(static.classifier, torch.nn.Linear) and static.classifier.in_features == 7


def test_defaults_are_moves() -> None:
    assert AGGREGATORS.options("move") == {
        "sampling": "dynamic", "lb": 3.0, "key_mask": "drop_sampled", "heads": 4, "key_dim": 512,
        "attention_dropout": 0.1, "clusters": 64, "hidden": 1024, "classifier_hidden": 2048, "classifier_dropout": 0.5}
    model = create_aggregator("move", 8, 3, class_counts=np.arange(1, 4))  # MOVE's sizes around an 8-d input
    att = model.attention
    assert (att.heads, att.key_dim, att.w_q.out_features, att.out.out_features) == (4, 512, 2048, 8)
    assert att.attention_dropout.p == att.dropout.p == 0.1 and att.norm.eps == 1e-6
    assert model.gate.shape == (64, 8) and model.project.out_features == 1024 and model.project.bias is None
    assert (model.fc.in_features, model.fc.out_features, model.dropout.p) == (8 + 1024, 2048, 0.5)
    assert not model.input_bn.affine  # MOVE's detach: its input BN never learns an affine


def test_each_draw_role_once_in_order_with_the_clips_lower_bounds() -> None:
    model = make()
    model.draws = rec = Recording()
    y = targets((0,), (1,), (3,))
    model.embed(torch.randn(3, 60, 6), y)
    assert [c[0] for c in rec.calls] == list(DRAW_ROLES)
    assert all(c[1] == [60, 29, 3] for c in rec.calls)
    model.eval()
    model.embed(torch.randn(3, 60, 6), y)
    assert len(rec.calls) == 5  # evaluation draws nothing


def test_views_and_queries_use_only_the_kept_frames() -> None:
    model = make()
    model.draws = rec = Recording(3)
    seen = {}
    model.attention.register_forward_hook(lambda m, args, out: seen.update(queries=args[1], key_keep=args[2]))
    x = torch.randn(3, 60, 6)
    model.embed(x, targets((0,), (1,), (3,)))
    keep = {role: k for role, _, k in rec.calls}
    for i, role in enumerate(("query1", "query2")):
        mean = torch.stack([x[b, keep[role][b]].mean(dim=0) for b in range(3)])  # the mean of the kept frames
        torch.testing.assert_close(seen["queries"][:, i], mean)
    assert torch.equal(seen["key_keep"], ~keep["key_mask"])  # the sampled frames are masked out (MOVE's rule)
    assert not seen["key_keep"][0].any()  # clip of the most frequent class: every key masked


def test_attention_pool_masks() -> None:
    torch.manual_seed(0)
    pool = AttentionPool(4, heads=2, key_dim=3, dropout=0.0).eval()
    x, q = torch.randn(2, 5, 4), torch.randn(2, 1, 4)
    values = pool.w_v(x)  # [B, T, h·dk]
    none = torch.zeros(2, 5, dtype=torch.bool)
    uniform = pool.norm(pool.out(values.mean(dim=1, keepdim=True)) + q)  # all masked: a plain mean
    torch.testing.assert_close(pool(x, q, none), uniform)
    only2 = none.clone()
    only2[:, 2] = True
    torch.testing.assert_close(pool(x, q, only2), pool.norm(pool.out(values[:, 2:3]) + q))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # reduced precision: still a mean, never NaN
        assert torch.isfinite(pool(x, q, none)).all()


def test_keep_sampled_variant_attends_to_the_sampled_frames() -> None:
    model = make(key_mask="keep_sampled")
    model.draws = rec = Recording()
    seen = {}
    model.attention.register_forward_hook(lambda m, args, out: seen.update(key_keep=args[2]))
    model.embed(torch.randn(2, 60, 6), targets((0,), (3,)))
    assert torch.equal(seen["key_keep"], rec.calls[-1][2]) and seen["key_keep"][0].all()


def test_gradients_reach_every_parameter_and_none_reach_the_frozen_bn() -> None:
    for sampling in ("dynamic", "none"):
        model = make(sampling=sampling)
        x = torch.randn(4, 60, 6, requires_grad=True)
        model(x, targets=targets((0,), (1,), (2,), (3,))).sum().backward()
        params = dict(model.named_parameters())
        assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
                   for p in params.values())
        assert ("input_bn.weight" in params) == (sampling == "none")
        assert x.grad is not None and x.grad.abs().sum() > 0  # the attention branch sees the raw frames


def test_training_needs_targets_and_options_are_checked() -> None:
    with pytest.raises(ValueError, match="pass targets"):
        make()(torch.randn(2, 60, 6))
    for opts, match in (({"sampling": "random"}, "sampling"), ({"key_mask": "x"}, "key_mask"), ({"lb": 0.5}, "lb")):
        with pytest.raises(ConfigError, match=match):
            make(**opts)
    with pytest.raises(ConfigError, match="class counts"):
        create_aggregator("move", 6, 3, class_counts=COUNTS)


def test_seeded_and_resumable_through_a_checkpoint(tmp_path) -> None:
    x, y = torch.randn(3, 60, 6), targets((0,), (1,), (3,))
    a, b = make(seed=5), make(seed=5)
    b.load_state_dict(a.state_dict())
    torch.manual_seed(1)
    first = a(x, targets=y)
    torch.manual_seed(1)
    assert torch.equal(b(x, targets=y), first)  # same seed, same draws and dropouts
    rundir.save_checkpoint(tmp_path / "c.pt", {"model": a.state_dict()})
    c = make(seed=99)
    c.load_state_dict(rundir.load_checkpoint(tmp_path / "c.pt")["model"])  # weights_only=True
    torch.manual_seed(2)
    after_a = a(x, targets=y)
    torch.manual_seed(2)
    assert torch.equal(c(x, targets=y), after_a)  # the generator state came with the checkpoint
    assert not torch.equal(make(seed=6)(x, targets=y), make(seed=5)(x, targets=y))
