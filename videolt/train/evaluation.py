"""Scoring a trained model: predictions on a split and a run's checkpoint evaluated into its folder.

This is the one place checkpoints are evaluated (it needs the model, so it belongs to `train`):
the trainer scores its selection split through `predict`, and `evaluate_checkpoint` (also behind
`videolt evaluate`) rebuilds any run's model from its config.json, scores a split and writes, into
runs/<run>/, metrics.json and per_class_ap.csv for the test split (metrics_<split>.json and
per_class_ap_<split>.csv for another), and scores_<split>.npy with rows_<split>.npy (the feature-store
rows the scores belong to) for bootstraps and reports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from videolt.config import field
from videolt.data.integrity import require_consistent
from videolt.data.labels import SPLIT_FILES, group_warning, multi_hot
from videolt.data.store import FeatureStore
from videolt.data.workdir import Workdir
from videolt.devices import resolve_device
from videolt.errors import ConfigError, UsageError
from videolt.evaluate.metrics import METRIC_KEYS
from videolt.train import rundir
from videolt.train.cache import open_sources
from videolt.train.config import TrainConfig, config_from_run
from videolt.train.datasets import BatchLoader, FrameSource, TestClips, chunks, split_rows
from videolt.train.model import build_model
from videolt.train.preflight import GROUP_FIX

__all__ = ["EvaluateConfig", "RESCALING_NOTE", "evaluate_checkpoint", "predict", "run_evaluate"]

# Decoupling stages that only rescale each class's logits by a positive factor: the ranking of the
# videos within a class, hence every AP, is that of the source run.
log = logging.getLogger(__name__)

RESCALING = ("lws", "tau_norm")
RESCALING_NOTE = ("LWS and τ-normalisation rescale each class's logits by a positive factor (τ-norm keeps the "
                  "classifier's bias): per-class AP and every mAP equal the source run's, only Acc@k can change")


@torch.no_grad()
def predict(model: nn.Module, source: FrameSource, rows: Sequence[int], *, num_classes: int, batch_size: int,
            device: torch.device, workers: int = 0) -> np.ndarray:
    """Sigmoid scores [N, C] of the videos at store `rows`, on all their frames, in eval mode.

    Always in float32, whatever the training precision: bf16 logits take a few hundred distinct
    values per class over a test set, so AP ties would be broken by row order.
    """
    was_training = model.training
    model.eval()
    dataset = TestClips(source, rows, np.zeros((len(rows), 0), dtype=np.float32))
    out = torch.empty((len(rows), num_classes), dtype=torch.float32, device=device)  # copied to the host once
    loader = BatchLoader(dataset, chunks(len(rows), batch_size), workers=workers, pin_memory=device.type == "cuda")
    for x, _, pos in loader:
        logits = model(x.to(device, non_blocking=True).float())
        out[pos.to(device, non_blocking=True)] = torch.sigmoid(logits.float())
    model.train(was_training)
    return out.cpu().numpy()


def evaluate_checkpoint(wd: Workdir, run_name: str, *, split: str = "test", checkpoint: str = "best",
                        device: str | None = None, batch_size: int | None = None, group_head: int | None = None,
                        group_tail: int | None = None, sources: Mapping[str, FrameSource] | None = None) -> dict:
    """A run's checkpoint scored on `split`; writes metrics, per-class AP and scores into the run dir.

    The model is rebuilt from the run's config.json, so any run (decoupled ones too) can be re-scored.
    The run's own result (`best` on test) also carries, under "other_selection", the test metrics of
    the epoch the other split picked (`best_val.pt` when the run selects on test), so every report can
    show the test-selected number next to the validation-selected one. `group_head`/`group_tail`
    replace the run's class-group thresholds (to compare it with a run scored under others); the ones
    used are recorded in the metrics. `sources` (the training run's caches) are read where they hold
    `split`; otherwise an int8 run reads its int8 cache (features as it trained and selected on them)
    and any other run streams from the store (bit-identical to fp16).
    """
    if split not in SPLIT_FILES:
        raise UsageError(f"split must be one of {', '.join(SPLIT_FILES)}, got {split!r}")
    run_dir = wd.run_dir(run_name)
    config = config_from_run(run_dir)
    other = {"best_val": "val", "best_test": "test"}.get(checkpoint)
    extra: dict = {"select_on": other or config.select_on}
    if checkpoint == "best" and split == "test":
        alternative = "best_val" if config.select_on == "test" else "best_test"
        if rundir.checkpoint_path(run_dir, alternative).is_file():
            scored = evaluate_checkpoint(wd, run_name, split="test", checkpoint=alternative, device=device,
                                         batch_size=batch_size, group_head=group_head, group_tail=group_tail,
                                         sources=sources)
            extra["other_selection"] = {k: scored[k] for k in ("select_on", "epoch", *METRIC_KEYS)}
    state = rundir.load_checkpoint(rundir.checkpoint_path(run_dir, checkpoint))
    labels = wd.labels()
    store = FeatureStore.open(wd.features_path(config.features))
    dev = resolve_device(device or config.device)
    model = build_model(config.model, store.dim, labels.num_classes, config.model_opts, config.decouple,
                        class_counts=labels.counts)
    model.load_state_dict(state["model"])
    with wd.manifest() as m:
        rows, row_labels = split_rows(m.videos([split]), store, split=split)
    source = (sources or {}).get(split)
    if source is None:
        source = open_sources(store, {split: rows}, "int8" if config.cache == "int8" else "stream", dev)[split]
    scores = predict(model.to(dev), source, rows, num_classes=labels.num_classes,
                     batch_size=batch_size or config.batch_size, device=dev, workers=config.workers)
    if config.decouple in RESCALING:
        extra["note"] = RESCALING_NOTE
    head, tail = _thresholds(config, group_head, group_tail)
    extra |= {"group_head": head, "group_tail": tail}
    return rundir.write_metrics(run_dir, split=split, scores=scores, targets=multi_hot(row_labels, labels.num_classes),
                                rows=rows, labels=labels, head=head, tail=tail,
                                tag=f"_selected_on_{other}" if other else "",
                                extra={"epoch": int(state["epoch"]), "checkpoint": checkpoint, **extra})


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    """`videolt evaluate`: which checkpoint of a run is scored on which split."""

    split: Literal["test", "val", "train"] = field("test", "split to score")
    checkpoint: Literal["best", "last", "best_val", "best_test"] = field(
        "best", "best (the epoch the run's selection split picked), last, or best_val / best_test (the other split's pick)")
    device: str | None = field(None, "auto | cpu | cuda | cuda:N (default: the run's own)")
    batch_size: int | None = field(None, "videos per forward pass (default: the run's own)")
    group_head: int | None = field(None, "head classes have more train videos than this (default: the run's own)")
    group_tail: int | None = field(None, "tail classes have at most this many train videos (default: the run's own)")


def run_evaluate(workdir: str | Path, run_name: str, config: EvaluateConfig = EvaluateConfig(), *,
                 wait: bool = False) -> dict:
    """`videolt evaluate`: score the run's checkpoint on a split and return the metrics
    (keys overall_map ... acc5, epoch, split); warns when a class group is empty under the thresholds.
    It writes into the run folder, so it holds the run's lock (`wait`: wait for the process holding
    it, e.g. its training, else refuse)."""
    wd = Workdir.open(workdir)
    with wd.lock("videolt evaluate", [wd.run_lock(run_name)], wait=wait):
        run_config = config_from_run(wd.run_dir(run_name))
        require_consistent(wd, FeatureStore.open(wd.features_path(run_config.features)))
        head, tail = _thresholds(run_config, config.group_head, config.group_tail)
        warning = group_warning(wd.labels(), head, tail, GROUP_FIX)
        if warning:
            log.warning("%s", warning)
        return evaluate_checkpoint(wd, run_name, split=config.split, checkpoint=config.checkpoint,
                                   device=config.device, batch_size=config.batch_size,
                                   group_head=config.group_head, group_tail=config.group_tail)


def _thresholds(config: TrainConfig, head: int | None, tail: int | None) -> tuple[int, int]:
    """The group thresholds to score with: the given ones, else the run's own."""
    head = config.group_head if head is None else head
    tail = config.group_tail if tail is None else tail
    if not 0 <= tail <= head:
        raise ConfigError(f"group_head, group_tail: expected 0 <= group_tail <= group_head, got {head}, {tail}")
    return head, tail
