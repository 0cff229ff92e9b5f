"""Class-aware resampling of the training list (CBS and SRS, docs/semantics.md §6).

An epoch keeps N = len(train) draws. Each draw picks a class — uniformly over the classes that
have train videos (CBS) or with p_c ∝ √n_c (SRS) — and then a video uniformly among that class's
videos. The draws of epoch e come from a generator seeded with (seed, e), so an epoch is the same
whether or not training was resumed before it. The drawn class is returned with each index:
`sample_mask` uses it to keep the loss off the video's other positive labels.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from videolt.registry import Registry

__all__ = ["SAMPLERS", "ClassSampler", "create_sampler", "sample_mask"]

SAMPLERS: Registry[Callable[..., "ClassSampler | None"]] = Registry("sampler")


class ClassSampler:
    """Draws (video index, class) pairs: a class with p_c ∝ n_c^power (n_c > 0), then one of its videos.

    power 0 is class-balanced sampling, 0.5 square-root sampling, 1 instance sampling.
    """

    def __init__(self, labels: Sequence[tuple[int, ...]], num_classes: int, seed: int, power: float):
        self.num_videos = len(labels)
        self.seed = seed
        # CSR layout of the class → videos lists: videos of class c are members[offsets[c]:offsets[c + 1]].
        pairs = [(c, i) for i, labs in enumerate(labels) for c in labs]
        cls = np.fromiter((c for c, _ in pairs), dtype=np.int64, count=len(pairs))
        vid = np.fromiter((i for _, i in pairs), dtype=np.int64, count=len(pairs))
        order = np.argsort(cls, kind="stable")
        self.members = vid[order]
        self.sizes = np.bincount(cls, minlength=num_classes)  # [C] videos per class
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        weight = np.where(self.sizes > 0, np.power(self.sizes, power, dtype=np.float64), 0.0)
        self.class_probs = weight / weight.sum()  # [C]

    def epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices [N], drawn_class [N]) for `epoch`, the same on every call."""
        rng = np.random.default_rng([self.seed, epoch])
        drawn = rng.choice(len(self.class_probs), size=self.num_videos, p=self.class_probs)  # [N]
        pick = np.floor(rng.random(self.num_videos) * self.sizes[drawn]).astype(np.int64)  # [N]
        return self.members[self.offsets[drawn] + pick], drawn


def create_sampler(
    name: str, labels: Sequence[tuple[int, ...]], num_classes: int, seed: int
) -> ClassSampler | None:
    """The sampler `name` ("none" → None: plain shuffled epochs) over the train labels."""
    return SAMPLERS.create(name, labels, num_classes, seed)


@SAMPLERS.register("none")
def _no_sampler(labels: Sequence[tuple[int, ...]], num_classes: int, seed: int) -> None:
    """Plain shuffled epochs: every train video once per epoch."""
    return None


@SAMPLERS.register("cbs")
def _class_balanced(labels: Sequence[tuple[int, ...]], num_classes: int, seed: int) -> ClassSampler:
    """Class-balanced sampling (CBS): a class uniformly, then one of its videos."""
    return ClassSampler(labels, num_classes, seed, power=0.0)


@SAMPLERS.register("srs")
def _square_root(labels: Sequence[tuple[int, ...]], num_classes: int, seed: int) -> ClassSampler:
    """Square-root sampling (SRS): a class with p_c ∝ √n_c, then one of its videos."""
    return ClassSampler(labels, num_classes, seed, power=0.5)


def sample_mask(targets: torch.Tensor, drawn_class: torch.Tensor) -> torch.Tensor:
    """Mask [B, C]: 0 at a video's positive labels other than the drawn class, 1 elsewhere."""
    mask = (targets <= 0).to(targets.dtype)  # [B, C]
    mask[torch.arange(len(mask), device=mask.device), drawn_class.to(mask.device)] = 1.0
    return mask
