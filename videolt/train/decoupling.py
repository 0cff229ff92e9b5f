"""Decoupling baselines on a trained run (docs/semantics.md §6), each producing a new run directory.

- cRT: re-initialise the classifier and retrain only it, with class-balanced sampling (the `cbs`
  method: a class drawn uniformly, then one of its videos), the rest of the model frozen.
- LWS: learn one scale per class on the logits of the frozen model, with class-balanced sampling.
- τ-normalisation: divide each classifier row by its norm ** τ (τ = 1); no training.

The frozen model is the source run's best.pt; the new run records it as `init_from` in its config,
so `evaluate_checkpoint` rebuilds it like any other run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from videolt.config import field, to_dict
from videolt.data import runfiles
from videolt.data.integrity import require_consistent
from videolt.data.store import FeatureStore
from videolt.data.workdir import Workdir
from videolt.errors import ConfigError, UsageError
from videolt.train import rundir
from videolt.train.config import TrainConfig, config_from_run
from videolt.train.evaluation import evaluate_checkpoint
from videolt.train.model import build_model, tau_normalize
from videolt.train.trainer import run_train

__all__ = ["DecoupleConfig", "run_crt", "run_decouple", "run_lws", "run_tau_norm"]


@dataclass(frozen=True, kw_only=True)
class DecoupleConfig:
    """`videolt decouple`: which stage, and its few settings."""

    stage: Literal["crt", "lws", "tau_norm"] | None = field(None, "crt, lws or tau_norm (required)")
    epochs: int = field(10, "cRT/LWS training epochs (no learning-rate decay)")
    tau: float = field(1.0, "τ of τ-normalisation")

    def __post_init__(self) -> None:
        if self.stage is None:
            raise ConfigError("stage: name the decoupling stage (crt, lws or tau_norm)")
        if self.epochs < 1:
            raise ConfigError(f"epochs: expected a positive integer, got {self.epochs}")


def _source(wd: Workdir, source_run: str) -> TrainConfig:
    config = config_from_run(wd.run_dir(source_run))
    if config.decouple != "none":
        raise UsageError(f"run {source_run!r} is already a {config.decouple} stage; decouple its source run")
    return config


def run_decouple(workdir: str | Path, source_run: str, run_name: str, config: DecoupleConfig, *,
                 progress: bool = True, wait: bool = False) -> dict | None:
    """The decoupling stage `config.stage` on `source_run` into the new run `run_name` (whose lock it
    holds; `wait`: wait for the process holding it). A finished stage returns its metrics again."""
    if config.stage == "tau_norm":
        return run_tau_norm(workdir, source_run, run_name, tau=config.tau, wait=wait)
    fn = run_crt if config.stage == "crt" else run_lws
    return fn(workdir, source_run, run_name, progress=progress, wait=wait, epochs=config.epochs)


def _retrain(workdir: str | Path, source_run: str, run_name: str, mode: str, changes: dict[str, Any],
             progress: bool, wait: bool) -> dict | None:
    config = _source(Workdir.open(workdir), source_run)
    staged = dataclasses.replace(config, method="cbs", method_opts={}, loss="", loss_opts={},
                                 init_from=source_run, decouple=mode, **{"epochs": 10, "milestones": (), **changes})
    return run_train(workdir, run_name, staged, progress=progress, wait=wait)


def run_crt(workdir: str | Path, source_run: str, run_name: str, *, progress: bool = True, wait: bool = False,
            **changes: Any) -> dict | None:
    """Classifier re-training; `changes` override config fields (default 10 epochs, no lr decay)."""
    return _retrain(workdir, source_run, run_name, "crt", changes, progress, wait)


def run_lws(workdir: str | Path, source_run: str, run_name: str, *, progress: bool = True, wait: bool = False,
            **changes: Any) -> dict | None:
    """Learnable per-class logit scales; `changes` override config fields (default 10 epochs, no lr decay)."""
    return _retrain(workdir, source_run, run_name, "lws", changes, progress, wait)


def run_tau_norm(workdir: str | Path, source_run: str, run_name: str, *, tau: float = 1.0,
                 wait: bool = False) -> dict:
    """τ-normalise the source run's best classifier into a new run and evaluate it on the test split."""
    wd = Workdir.open(workdir)
    config = dataclasses.replace(_source(wd, source_run), init_from=source_run, decouple="tau_norm", tau=tau)
    run_dir = wd.run_dir(run_name)
    with wd.lock("videolt decouple", [wd.run_lock(run_name)], wait=wait):
        how = rundir.start(run_dir, to_dict(config), resume=False)
        if isinstance(how, dict):  # done before with these settings
            return how
        state = rundir.load_checkpoint(rundir.checkpoint_path(wd.run_dir(source_run), "best"))
        store = FeatureStore.open(wd.features_path(config.features))
        require_consistent(wd, store)
        labels = wd.labels()
        model = build_model(config.model, store.dim, labels.num_classes, config.model_opts,
                            class_counts=labels.counts)
        model.load_state_dict(state["model"])
        tau_normalize(model.classifier, tau)
        run_dir.mkdir(parents=True, exist_ok=True)
        provenance = {"source_run": source_run, "source_epoch": state["epoch"]}
        rundir.write_json(runfiles.config_path(run_dir), {"config": to_dict(config), "provenance": provenance})
        rundir.save_checkpoint(rundir.checkpoint_path(run_dir, "best"),
                               {"epoch": state["epoch"], "model": model.state_dict()})
        return evaluate_checkpoint(wd, run_name, split="test", checkpoint="best")
