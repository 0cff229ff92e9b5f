"""The training stage's config: one `TrainConfig` per run, recorded in runs/<run>/config.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from videolt.config import field, from_dict
from videolt.data.protocol import GROUP_HEAD, GROUP_TAIL
from videolt.errors import ConfigError
from videolt.train import rundir
from videolt.train.aggregators import AGGREGATORS
from videolt.train.losses import LOSSES
from videolt.train.methods import METHODS, method_model, method_recipe

__all__ = ["TrainConfig", "config_from_run"]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run; every field is recorded in runs/<run>/config.json."""

    features: str = field("", "feature set name (WORKDIR/features/<name>.zarr)")
    model: str = field("", "aggregator: {names} ('': the method's own, else nonlinear)", names=AGGREGATORS.names)
    model_opts: dict = field({}, "aggregator options, e.g. {clusters: 64, hidden: 1024} for netvlad, "
                                 "{lb: 3.0} for move")
    method: str = field("baseline", "long-tail method: {names}", names=METHODS.names)
    method_opts: dict = field({}, "method options (its loss or mixing options, e.g. eta for framestack)")
    loss: str = field("", "loss overriding the method's own ('' keeps it): {names}", names=LOSSES.names)
    loss_opts: dict = field({}, "loss options, applied over the method's")
    epochs: int = field(100, "training epochs")
    batch_size: int = field(128, "global batch size (split between DDP ranks)")
    lr: float = field(1e-4, "Adam learning rate")
    milestones: tuple[int, ...] = field((30, 60), "epochs at which the learning rate is multiplied by gamma")
    gamma: float = field(0.1, "learning-rate decay factor at each milestone")
    clip_grad: float | None = field(None, "gradient-norm clip, 0 disables (unset: the method's: 20, VideoLT's "
                                          "recipe, or its reference's, e.g. 0 for move; recorded resolved)")
    seed: int = field(2021, "seed of the model init, shuffles, clips, mixing and samplers")
    eval_every: int = field(5, "evaluate on the selection split every N epochs (and at the last epoch)")
    select_on: Literal["test", "val"] = field("test", "split picking best.pt: test (the reference's protocol) or val")
    group_head: int = field(GROUP_HEAD, "head classes have more train videos than this")
    group_tail: int = field(GROUP_TAIL, "tail classes have at most this many train videos")
    workers: int = field(2, "threads reading batches ahead (0: read in the training loop)")
    cache: Literal["auto", "stream", "fp16", "int8"] = field(
        "auto", "hold the splits in memory (GPU, else pinned host RAM; see train/cache.py): fp16 (the stored values, "
                "results identical to stream), int8 (half of fp16, quantised per row and channel; opt-in), stream "
                "(read the store every batch); auto: fp16 where it fits, else stream")
    preload: bool = field(False, "superseded by cache: true means cache fp16 (kept so older configs and runs load)")
    amp: Literal["off", "bf16", "fp16"] = field("off", "mixed precision of the training forward (off: fp32); "
                                                "evaluation is always fp32; bf16 also on the CPU, fp16 on CUDA only")
    tf32: bool = field(True, "allow TF32 matrix products on CUDA in fp32 training (storage stays fp32)")
    device: str = field("auto", "auto | cpu | cuda | cuda:N")
    clip_len: int = field(60, "frames per training clip, drawn with replacement from the 150")
    checkpoint_every: int = field(1, "write last.pt every N epochs (and at the last epoch)")
    init_from: str = field("", "run whose best.pt initialises the model (decoupling)")
    decouple: Literal["none", "crt", "lws", "tau_norm"] = field("none", "decoupling stage (see decoupling.py)")
    tau: float = field(1.0, "τ of τ-normalisation")

    def __post_init__(self) -> None:
        if not self.features:
            raise ConfigError("features: name the feature set to train on")
        for key in ("epochs", "batch_size", "eval_every", "clip_len", "checkpoint_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: expected a positive integer, got {getattr(self, key)}")
        if self.workers < 0:
            raise ConfigError(f"workers: expected >= 0, got {self.workers}")
        if not 0 <= self.group_tail <= self.group_head:
            raise ConfigError(f"group_head, group_tail: expected 0 <= group_tail <= group_head (train videos), got "
                              f"{self.group_head}, {self.group_tail}")
        if self.preload:
            if self.cache not in ("auto", "fp16"):
                raise ConfigError(f"preload: superseded by cache; drop it (cache: {self.cache} is set)")
            object.__setattr__(self, "cache", "fp16")
        # '' becomes the method's aggregator (MOVE's for --method move) or nonlinear; recorded resolved.
        object.__setattr__(self, "model", method_model(self.method, self.model))
        # Settings left unset take the method's recipe (VideoLT's, or its reference's); recorded resolved.
        for key, value in method_recipe(self.method).items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)


def config_from_run(run_dir: Path) -> TrainConfig:
    """The TrainConfig a run was made with (its config.json)."""
    return from_dict(TrainConfig, rundir.read_config(run_dir))
