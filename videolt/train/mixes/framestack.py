"""FrameStack (docs/semantics.md §6): mix two clips along time, by how well their classes are learnt.

A clip's score s_n is the mean over all C classes of y[n, c]·score[c], i.e. the sum of its labels'
class scores (running AP by default) divided by C, as in the reference. Paired with a partner π(n),
it takes β_n = s_n / (s_n + s_π(n)) of its L frames from the partner and the rest from itself, and
its label becomes (1 − β_n)·y_n + β_n·y_π(n): a clip of well-learnt classes gives room to the
partner's frames and labels, a clip of poorly learnt classes keeps its own. With the class-frequency
rule ("cf", the paper's Table 3 ablation) a frequent class plays the part of a well-learnt one: head
clips give frames away and tail clips keep theirs.

The class score of an epoch is the per-class AP of the previous epoch, measured by `RunningAP` on
the clean clips in train mode. Before the first epoch it is 0, so FrameStack starts at epoch 1
(`framestack_active`). `FrameStack` is the registered batch mix that ties these together; its
signature holds the method's defaults (η = 0.5, β from running AP, one warm-up epoch), and its
state (the running AP and its generator) goes into the checkpoints.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from videolt.errors import ConfigError
from videolt.evaluate.metrics import average_precision
from videolt.train.mixes._base import BATCH_MIXES, BatchMix, Gather

__all__ = ["BETA_RULES", "FrameStack", "RunningAP", "class_scores_for", "framestack_active", "framestack_mix"]

# ap: running AP (the method); fixed: β = 0.5; cf: train frequency n_c / max n (the paper's rationale,
# scaled like AP so the 1e-5 threshold keeps its meaning); inverse_cf: 1 / n_c in place of AP (the
# literal substitution, in which tail clips give their frames away and most pairs fall under 1e-5).
BETA_RULES = ("ap", "fixed", "cf", "inverse_cf")
_EPS = 1e-5


def framestack_active(epoch: int, warmup_epochs: int = 1) -> bool:
    """FrameStack mixes from epoch `warmup_epochs` on; before it the class scores are still 0."""
    return epoch >= warmup_epochs


class RunningAP:
    """Per-class AP of one epoch's sigmoid scores, the class score of the next epoch.

    `update` collects a batch, `compute` gives the AP [C] of what was collected, `end_epoch` makes
    that the current `value` and starts a new collection. `value` is 0 before the first epoch ends.
    Batches stay where they were scored (on the GPU in training) until `compute` or `state_dict`
    copies them to the host at once: a step never waits for the device.
    """

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.value = np.zeros(num_classes, dtype=np.float64)  # [C]
        self._scores: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def update(self, scores: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> None:
        """Add a batch: sigmoid scores [B, C] and targets [B, C] (positive where > 0.5)."""
        self._scores.append(torch.as_tensor(scores).detach().to(torch.float32, copy=True))
        self._targets.append(torch.as_tensor(targets).detach() > 0.5)

    def _collected(self) -> tuple[np.ndarray, np.ndarray]:
        """Scores float32 [N, C] and targets bool [N, C] collected so far, on the host."""
        return torch.cat(self._scores).cpu().numpy(), torch.cat(self._targets).cpu().numpy()

    def compute(self) -> np.ndarray:
        """AP [C] over everything collected since the last `end_epoch` (zeros if nothing)."""
        if not self._scores:
            return np.zeros(self.num_classes, dtype=np.float64)
        scores, targets = self._collected()
        return average_precision(scores, targets.astype(np.float32))

    def end_epoch(self) -> np.ndarray:
        """Close the epoch: `value` becomes its AP, the collection restarts; returns `value`."""
        self.value = self.compute()
        self._scores, self._targets = [], []
        return self.value

    def state_dict(self) -> dict[str, np.ndarray]:
        empty = np.zeros((0, self.num_classes))
        scores, targets = self._collected() if self._scores else (empty.astype(np.float32), empty.astype(bool))
        return {"value": self.value.copy(), "scores": scores, "targets": targets}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.value = np.asarray(state["value"], dtype=np.float64)
        scores = torch.as_tensor(np.asarray(state["scores"], dtype=np.float32))
        self._scores = [scores] if len(scores) else []
        self._targets = [torch.as_tensor(np.asarray(state["targets"], dtype=bool))] if len(scores) else []


def class_scores_for(beta_rule: str, ap: np.ndarray, class_counts: np.ndarray) -> torch.Tensor:
    """The class score [C] that `framestack_mix` uses: AP ("ap"), n_c / max n ("cf"), 1 / n_c
    ("inverse_cf"), unused zeros ("fixed")."""
    _check_beta_rule(beta_rule)
    counts = np.maximum(np.asarray(class_counts, dtype=np.float64), 1.0)
    if beta_rule == "cf":
        return torch.as_tensor(counts / counts.max(), dtype=torch.float32)
    if beta_rule == "inverse_cf":
        return torch.as_tensor(1.0 / counts, dtype=torch.float32)
    if beta_rule == "ap":
        return torch.as_tensor(ap, dtype=torch.float32)
    return torch.zeros(len(ap))


def _check_beta_rule(beta_rule: str) -> None:
    if beta_rule not in BETA_RULES:
        raise ConfigError(f"beta_rule must be one of {', '.join(BETA_RULES)}, got {beta_rule!r}")


def framestack_mix(
    x: torch.Tensor,
    y: torch.Tensor,
    class_score: torch.Tensor,
    *,
    eta: float = 0.5,
    beta_rule: str = "ap",
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix the first ⌊η·B⌋ clips of a batch among themselves; the other rows are returned as they are.

    x [B, T, D], y [B, C], class_score [C] (see `class_scores_for`). π is a random permutation of the
    first m rows (self-pairs allowed), drawn from the CPU `generator`. Clip n becomes
    concat(partner frames, own frames) — partner first — with F_p = ⌊β_n·T⌋ partner frames and
    T − F_p own frames, each at positions trunc(linspace(0, T − 1, F)). As in the reference,
    s_n = mean_c y[n, c]·score[c] (the mean over C cancels in β, but sets the scale of the 1e-5
    threshold below which β = 0.5). beta_rule "fixed" uses β = 0.5 throughout.
    """
    _check_beta_rule(beta_rule)
    b, t, d = x.shape
    m = int(eta * b)
    if m == 0:
        return x, y
    perm = torch.randperm(m, generator=generator).to(x.device)  # [m]
    beta = _betas(y[:m], perm, class_score.to(y), beta_rule)  # [m]
    f_p = torch.floor(beta * t).long()[:, None]  # [m, 1] partner frames per clip
    j = torch.arange(t, device=x.device)[None, :]  # [1, T] place in the mixed clip
    partner = j < f_p  # [m, T]
    frame = _linspace_index(torch.where(partner, j, j - f_p), torch.where(partner, f_p, t - f_p), t)  # [m, T]
    own = torch.arange(m, device=x.device)[:, None]
    src = torch.where(partner, perm[:, None], own) * t + frame  # [m, T] flat frame index
    # One gather over the flattened frames [B·T, D] builds the whole batch; rows ≥ m gather themselves.
    index = torch.cat([src.reshape(-1), torch.arange(m * t, b * t, device=x.device)])
    mixed_x = x.reshape(b * t, d).index_select(0, index).reshape(b, t, d)  # [B, T, D]
    mixed_y = (1.0 - beta)[:, None] * y[:m] + beta[:, None] * y[perm]  # [m, C]
    return mixed_x, torch.cat([mixed_y, y[m:]])


def _linspace_index(k: torch.Tensor, f: torch.Tensor, t: int) -> torch.Tensor:
    """trunc(linspace(0, t − 1, f))[k] elementwise, computed on the device as numpy computes it:
    k · ((t − 1) / (f − 1)) in float64, the last point exactly t − 1, and [0] for f = 1."""
    step = torch.full_like(f, t - 1, dtype=torch.float64) / (f - 1).clamp(min=1)  # a true division, as numpy's
    value = (k.double() * step).long()
    return torch.where((k == f - 1) & (f > 1), t - 1, value)


def _betas(y: torch.Tensor, perm: torch.Tensor, score: torch.Tensor, beta_rule: str) -> torch.Tensor:
    """β_n [m]: s_n / (s_n + s_π(n)), or 0.5 where that sum is below 1e-5 or the rule is "fixed"."""
    half = torch.full((len(y),), 0.5, dtype=y.dtype, device=y.device)
    if beta_rule == "fixed":
        return half
    s = (y * score).mean(dim=1)  # [m]
    total = s + s[perm]  # [m]
    return torch.where(total < _EPS, half, s / total.clamp_min(_EPS))


@BATCH_MIXES.register("framestack")
class FrameStack(BatchMix):
    """FrameStack as a batch mix: mixes clips before the aggregator, observes the clean clips' scores.

    eta: share of each batch that is mixed (0: none); beta_rule: "ap" (running AP, the method),
    "fixed" (β = 0.5) or "cf" (class frequency); warmup_epochs: epochs of plain training first.
    """

    observes = True

    def __init__(self, class_counts: np.ndarray, seed: int, *, eta: float = 0.5, beta_rule: str = "ap",
                 warmup_epochs: int = 1):
        super().__init__(class_counts, seed)
        self.check_options(eta=eta, beta_rule=beta_rule, warmup_epochs=warmup_epochs)
        self.eta, self.beta_rule, self.warmup_epochs = eta, beta_rule, warmup_epochs
        self.running_ap = RunningAP(len(self.class_counts))
        self._class_score: torch.Tensor | None = None  # [C] while mixing this epoch, else None

    @classmethod
    def check_options(cls, *, eta: float, beta_rule: str, warmup_epochs: int) -> None:  # type: ignore[override]
        if not 0.0 <= eta <= 1.0:
            raise ConfigError(f"eta must be in [0, 1], got {eta!r}")
        _check_beta_rule(beta_rule)
        if warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be >= 0, got {warmup_epochs!r}")

    def start_epoch(self, epoch: int) -> None:
        active = framestack_active(epoch, self.warmup_epochs)
        self._class_score = (class_scores_for(self.beta_rule, self.running_ap.value, self.class_counts)
                             if active else None)

    def mix_clips(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._class_score is None:
            return x, y
        return framestack_mix(x, y, self._class_score, eta=self.eta, beta_rule=self.beta_rule,
                              generator=self.generator)

    def observe(self, scores: torch.Tensor, y: torch.Tensor) -> None:
        self.running_ap.update(scores, y)

    def end_epoch(self, gather: Gather | None) -> None:
        """The next epoch's class scores: the AP of this whole epoch (all DDP ranks' clips)."""
        if gather is not None:
            state = self.running_ap.state_dict()
            self.running_ap.load_state_dict({"value": state["value"], "scores": gather(state["scores"]),
                                             "targets": gather(state["targets"])})
        self.running_ap.end_epoch()

    def state_dict(self) -> dict[str, Any]:
        ap = {k: torch.from_numpy(v) for k, v in self.running_ap.state_dict().items()}
        return {**super().state_dict(), "running_ap": ap}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.running_ap.load_state_dict({k: np.asarray(v) for k, v in state["running_ap"].items()})
