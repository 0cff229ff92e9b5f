"""MOVE's attentive aggregation (Moon et al., AAAI 2023, github.com/wjun0830/MOVE, `VideoLT/models/models.py`).

Two aggregators side by side, their outputs concatenated: a single multi-head attention layer that
pools the frames with a learnt query (the "self-attentive aggregator", D-d), and a gated NetVLAD
(the "codebook-attentive aggregator", H-d), 2,048 + 1,024 = 3,072-d for ResNet features; then
MOVE's classifier Linear(E→2048) → ReLU → Dropout(0.5) → Linear(2048→C) on every view, averaged.

In training ("dynamic" sampling, MOVE.py) both branches look at random frame subsets sized by the
clip's class frequency (`_frame_sampling.py`), and each clip gives two views [B, 2, E] — the input of
MOVE's vicinity expansion (`mixes/vicinity.py`); without that mix the classifier averages the two
views' logits. In evaluation both branches see all frames and each clip is one view [B, 1, E].
Sampling "none" is MOVE's `base_main_Agg.py` (the "Baseline" rows with Agg in MOVE's Table 1): one
view, the query is the mean frame, no mask.

Defaults and their source (file:line in wjun0830/MOVE @ 7928daa, `VideoLT/`):

| option | default | source |
|---|---|---|
| lb | 3.0 | opts.py:71 (`--lb`, also scripts/MOVE.sh:13) |
| heads, key_dim (= value dim) | 4, 512 | MOVE.py:119 (`n_head=4, d_k=512, d_v=512`) |
| attention_dropout | 0.1 | MOVE.py:119 `dropout=0.1` (output), models.py:296 `attn_dropout=0.1` (weights) |
| clusters, hidden | 64, 1024 | models.py:102-103 |
| classifier_hidden | 2048 | models.py:11 |
| classifier_dropout | 0.5 | models.py:14 |
| key_mask | "drop_sampled" | models.py:171-173 (the sampled frames are masked out of the keys) |
| LayerNorm eps | 1e-6 (fixed) | models.py:156 |
| masked logit | −1e9 (fixed) | models.py:304 (so an all-masked row attends uniformly) |

Quirks kept as the default, with the alternative as an option: the key mask removes the n ≥ lower
*sampled* frames, so a clip of the most frequent class (lower = T) has every key masked and attends
uniformly to all frames; `key_mask: keep_sampled` attends to the sampled frames instead (the NetVLAD
branch's rule). MOVE hard-codes the mask length 60, the feature size 2048 and the training clip
length; here they follow the input. The NetVLAD branch's input BatchNorm gets no gradient in MOVE's
training (`x.detach()`, models.py:53-54), so its affine stays 1/0: here it has no affine parameters
under dynamic sampling (the same function), and a learnt affine under sampling "none" (as
`models/net_module.py`, which does not detach).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videolt.errors import ConfigError
from videolt.train.aggregators._base import AGGREGATORS, Aggregator
from videolt.train.aggregators._frame_sampling import (
    DRAW_ROLES,
    FrameDraws,
    RandomFrameDraws,
    check_lb,
    frequency_levels,
    lower_bounds,
)
from videolt.train.aggregators.netvlad import gated_vlad

__all__ = ["AttentionPool", "MoveAggregator"]

SAMPLING = ("dynamic", "none")
KEY_MASKS = ("drop_sampled", "keep_sampled")
_MASKED = -1e9  # models.py:304


class AttentionPool(nn.Module):
    """One multi-head attention layer pooling frames x [B, T, D] with queries [B, L, D] → [B, L, D].

    Q, K, V projections without bias, scaled dot products, dropout on the attention weights, an
    output projection with dropout, the query as residual, LayerNorm (models.py:143-199, 293-307).
    """

    def __init__(self, dim: int, *, heads: int, key_dim: int, dropout: float):
        super().__init__()
        self.heads, self.key_dim = heads, key_dim
        self.w_q = nn.Linear(dim, heads * key_dim, bias=False)
        self.w_k = nn.Linear(dim, heads * key_dim, bias=False)
        self.w_v = nn.Linear(dim, heads * key_dim, bias=False)
        self.out = nn.Linear(heads * key_dim, dim, bias=False)
        self.attention_dropout = nn.Dropout(dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, queries: torch.Tensor, key_keep: torch.Tensor | None = None) -> torch.Tensor:
        """key_keep: bool [B, T], False = key masked with −1e9 (None: all keys)."""
        b, t, _ = x.shape
        n_q, h, dk = queries.shape[1], self.heads, self.key_dim
        q = self.w_q(queries).view(b, n_q, h, dk).transpose(1, 2)  # [B, h, L, dk]
        k = self.w_k(x).view(b, t, h, dk).transpose(1, 2)  # [B, h, T, dk]
        v = self.w_v(x).view(b, t, h, dk).transpose(1, 2)  # [B, h, T, dk]
        logits = torch.matmul(q / math.sqrt(dk), k.transpose(2, 3))  # [B, h, L, T]
        if key_keep is not None:  # −1e9, or the dtype's lowest under fp16 autocast: an all-masked row stays uniform
            logits = logits.masked_fill(~key_keep[:, None, None, :], max(_MASKED, torch.finfo(logits.dtype).min))
        attn = self.attention_dropout(F.softmax(logits, dim=-1))
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, n_q, h * dk)  # [B, L, h·dk]
        return self.norm(self.dropout(self.out(out)) + queries)


@AGGREGATORS.register("move")
class MoveAggregator(Aggregator):
    """MOVE's attentive aggregation: [attention pooling (D) | gated NetVLAD (H)] → MOVE's classifier.

    Embeddings [B, 2, D + H] in training with dynamic sampling (two frame-sampled views per clip),
    [B, 1, D + H] otherwise. Training needs the clips' targets [B, C] (they set the subset sizes).
    The frame draws use a CPU generator seeded with the run's seed and kept in the checkpoint.
    """

    def __init__(self, in_dim: int, num_classes: int, *, class_counts: np.ndarray, seed: int = 0,
                 sampling: str = "dynamic", lb: float = 3.0, key_mask: str = "drop_sampled", heads: int = 4,
                 key_dim: int = 512, attention_dropout: float = 0.1, clusters: int = 64, hidden: int = 1024,
                 classifier_hidden: int = 2048, classifier_dropout: float = 0.5):
        super().__init__()
        if sampling not in SAMPLING:
            raise ConfigError(f"move sampling must be one of {', '.join(SAMPLING)}, got {sampling!r}")
        if key_mask not in KEY_MASKS:
            raise ConfigError(f"move key_mask must be one of {', '.join(KEY_MASKS)}, got {key_mask!r}")
        check_lb(lb)
        if len(class_counts) != num_classes:
            raise ConfigError(f"move: {len(class_counts)} class counts for {num_classes} classes")
        self.sampling, self.lb, self.key_mask = sampling, lb, key_mask
        self.levels = frequency_levels(class_counts)  # [C] float64, z_c of MOVE.py:77
        self.generator = torch.Generator().manual_seed(seed)
        self.draws: FrameDraws = RandomFrameDraws(self.generator)
        self.attention = AttentionPool(in_dim, heads=heads, key_dim=key_dim, dropout=attention_dropout)
        self.input_bn = nn.BatchNorm1d(in_dim, affine=sampling == "none")
        self.assign = nn.Linear(in_dim, clusters, bias=False)
        self.assign_bn = nn.BatchNorm1d(clusters)
        self.gate = nn.Parameter(torch.empty(clusters, in_dim))
        nn.init.xavier_normal_(self.gate)
        self.project = nn.Linear(clusters * in_dim, hidden, bias=False)
        self.project_bn = nn.BatchNorm1d(hidden)
        self.fc = nn.Linear(in_dim + hidden, classifier_hidden)
        self.dropout = nn.Dropout(classifier_dropout)
        self.classifier = nn.Linear(classifier_hidden, num_classes)

    def embed(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        if not (self.training and self.sampling == "dynamic"):
            query = x.mean(dim=1, keepdim=True)  # [B, 1, D]: the mean frame (models.py:178, 271)
            return torch.cat([self.attention(x, query), self._vlad(self._normalise(x))[:, None]], dim=2)
        if targets is None:
            raise ValueError("MOVE's aggregator samples frames by the clips' classes in training: pass targets")
        b, t, _ = x.shape
        lower = lower_bounds(targets, self.levels, t, self.lb)  # [B]
        keep = {role: self.draws(role, lower, t).to(x.device) for role in DRAW_ROLES}  # bool [B, T] each
        normed = self._normalise(x)  # BN statistics over all B·T frames before sampling (models.py:123-126)
        views = torch.cat([normed * keep["vlad_view1"][..., None], normed * keep["vlad_view2"][..., None]])
        v = self._vlad(views).reshape(2, b, -1).transpose(0, 1)  # [B, 2, H]; BN over both views together
        queries = torch.stack([_masked_mean(x, keep["query1"]), _masked_mean(x, keep["query2"])], dim=1)
        key_keep = ~keep["key_mask"] if self.key_mask == "drop_sampled" else keep["key_mask"]
        return torch.cat([self.attention(x, queries, key_keep), v], dim=2)  # [B, 2, D + H]: attention first

    def head(self, e: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.relu(self.fc(e)))  # [B, V, classifier_hidden]
        return self.classifier(h).mean(dim=1)  # [B, V, C] -> [B, C]

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return self.input_bn(x.reshape(b * t, d)).reshape(b, t, d)

    def _vlad(self, x: torch.Tensor) -> torch.Tensor:
        """[N, T, D] normalised (and masked) frames → [N, H]: gated VLAD → Linear → BN → ReLU6."""
        return F.relu6(self.project_bn(self.project(gated_vlad(x, self.assign, self.assign_bn, self.gate))))

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def _masked_mean(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean [B, D] of each clip's kept frames (x [B, T, D], keep bool [B, T] with ≥ 1 True per row)."""
    w = keep.to(x.dtype)
    return (x * w[..., None]).sum(dim=1) / w.sum(dim=1, keepdim=True)
