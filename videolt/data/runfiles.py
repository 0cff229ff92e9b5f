"""The names of a run folder's files (WORKDIR/runs/<run>/), in one place: for the trainer that writes
them (`train.rundir`), the benchmark that checks them and the reports that read them (`evaluate`).

Beside the workdir's layout (`workdir.py`), below every stage, so that each can use it.
"""

from __future__ import annotations

from pathlib import Path

from videolt.errors import UsageError

__all__ = ["CHECKPOINTS", "checkpoint_path", "config_path", "metrics_path", "per_class_ap_path", "rows_path",
           "scores_path", "train_log_path"]

# last: the end of the last finished epoch; best: the epoch the run's selection split picks;
# best_val / best_test: the epoch the other split picks (reported beside it).
CHECKPOINTS = ("last", "best", "best_val", "best_test")


def checkpoint_path(run_dir: Path, which: str) -> Path:
    if which not in CHECKPOINTS:
        raise UsageError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {which!r}")
    return run_dir / f"{which}.pt"


def config_path(run_dir: Path) -> Path:
    """config.json: the run's resolved TrainConfig (`config`) and its provenance."""
    return run_dir / "config.json"


def train_log_path(run_dir: Path) -> Path:
    return run_dir / "train_log.csv"


def _suffix(split: str, tag: str) -> str:
    return ("" if split == "test" else f"_{split}") + tag


def metrics_path(run_dir: Path, split: str = "test", tag: str = "") -> Path:
    """metrics.json for the test split, metrics_<split>.json for another; `tag` (e.g. "_selected_on_val")
    appended. The test split's, untagged, is there once the run has finished."""
    return run_dir / f"metrics{_suffix(split, tag)}.json"


def per_class_ap_path(run_dir: Path, split: str = "test", tag: str = "") -> Path:
    return run_dir / f"per_class_ap{_suffix(split, tag)}.csv"


def scores_path(run_dir: Path, split: str = "test", tag: str = "") -> Path:
    """scores_<split><tag>.npy: float32 [N, C], the scores the metrics were computed from."""
    return run_dir / f"scores_{split}{tag}.npy"


def rows_path(run_dir: Path, split: str = "test", tag: str = "") -> Path:
    """rows_<split><tag>.npy: int64 [N], the store rows `scores_path`'s lines belong to."""
    return run_dir / f"rows_{split}{tag}.npy"
