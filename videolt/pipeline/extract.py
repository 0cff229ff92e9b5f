"""Wiring of the extract stage: the executor its config names, the stage runner, then closing it.

The CLI (`videolt extract`) and `videolt run` both come through here; the stage itself is
`videolt.extract.stage.run_extract`.
"""

from __future__ import annotations

from videolt.data.workdir import Workdir
from videolt.extract.config import ExtractConfig
from videolt.extract.stage import run_extract
from videolt.pipeline.executors import stage_executor

__all__ = ["extract_features"]


def extract_features(workdir: Workdir, config: ExtractConfig, *, progress: bool = True) -> dict:
    """Extract the features of every downloaded video not yet done, on `config.executor`; returns the run's counts."""
    executor = stage_executor(config.executor, workers=config.workers, ray_address=config.ray_address)
    try:
        return run_extract(workdir, config, executor, progress=progress)
    finally:
        executor.close()
