"""Evaluate a trained run: a checkpoint's scores on a split → metrics, per-class AP and the scores.

Writes, into runs/<run>/: metrics.json and per_class_ap.csv for the test split (metrics_<split>.json
and per_class_ap_<split>.csv for another), and scores_<split>.npy (float16 sigmoid scores [N, C])
with rows_<split>.npy (their feature-store rows) for bootstraps and reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from videolt.data.workdir import Workdir
from videolt.train.trainer import evaluate_checkpoint

__all__ = ["evaluate_run"]


def evaluate_run(workdir: str | Path, run_name: str, *, split: str = "test",
                 checkpoint: Literal["best", "last"] = "best", device: str | None = None,
                 batch_size: int | None = None) -> dict:
    """Score the run's `checkpoint` on `split` and return the metrics (keys overall_map ... acc5, epoch, split)."""
    return evaluate_checkpoint(Workdir.open(workdir), run_name, split=split, checkpoint=checkpoint, device=device,
                               batch_size=batch_size)
