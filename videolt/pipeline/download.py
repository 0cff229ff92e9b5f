"""Wiring of the download stage: the executor its config names, the stage runner, then closing it.

The CLI (`videolt download`) and `videolt run` both come through here, so either can fetch on
threads, local processes or a Ray cluster; the runner itself is `videolt.data.download.download_pending`.
"""

from __future__ import annotations

from typing import Any

from videolt.data.download import DownloadConfig, download_pending
from videolt.data.workdir import VIDEOS_LOCK, Workdir
from videolt.pipeline.executors import stage_executor

__all__ = ["run_download"]


def run_download(workdir: Workdir, config: DownloadConfig, *, progress: bool = True,
                    wait: bool = False) -> dict[str, Any]:
    """Download the pending videos on `config.executor`, one fetch in flight per worker; returns the run's counts.
    One process downloads into a workdir at a time (`wait`: wait for the one running, else refuse)."""
    with workdir.stage("videolt download", [VIDEOS_LOCK], wait=wait):
        executor = stage_executor(config.executor, workers=config.workers, in_flight=config.workers,
                                  ray_address=config.ray_address)
        try:
            return download_pending(workdir, config, executor, progress=progress)
        finally:
            executor.close()
