"""Wiring of the extract stage: the executor its config names, the stage runner, then closing it.

The CLI (`videolt extract`) and `videolt run` both come through here; the stage itself is
`videolt.extract.stage.run_extract`.
"""

from __future__ import annotations

from videolt.data.workdir import Workdir
from videolt.devices import resolve_device
from videolt.extract.config import ExtractConfig
from videolt.extract.cores import sized
from videolt.extract.stage import run_extract
from videolt.pipeline.executors import stage_executor

__all__ = ["extract_features"]


def extract_features(workdir: Workdir, config: ExtractConfig, *, progress: bool = True) -> dict:
    """Extract the features of every downloaded video not yet done, on `config.executor`; returns the run's counts.

    Decode processes, decoder threads and inference threads left unset are sized together from the
    cores and the device (`videolt.extract.cores`)."""
    config = sized(config, resolve_device(config.device).type)
    executor = stage_executor(config.executor, workers=config.workers, ray_address=config.ray_address,
                              nice=config.decoder_nice or 0)
    try:
        return run_extract(workdir, config, executor, progress=progress)
    finally:
        executor.close()
