"""Wiring of the extract stage: the executor its config names, the stage itself, then closing it;
then, with `verify`, the check of a few videos against the reference path.

The CLI (`videolt extract`) and `videolt run` both come through here; the stage itself is
`videolt.extract.stage.extract_pending`, the check `videolt.extract.verify`.
"""

from __future__ import annotations

from videolt.data.workdir import Workdir
from videolt.devices import resolve_device, resolve_devices
from videolt.extract.config import ExtractConfig, feature_set_names
from videolt.extract.cores import sized
from videolt.extract.stage import extract_pending
from videolt.extract.verify import check_verified, require_ffmpeg, verify_features
from videolt.pipeline.executors import stage_executor

__all__ = ["run_extract"]


def _local_devices(config: ExtractConfig) -> list[str]:
    """The sinks' devices as this machine sees them, for sizing its cores (a Ray cluster's are the
    cluster's: there, the kind and count given, or one sink per GPU of this machine)."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if config.executor == "ray" and config.ray_address is not None:
        return ["cuda"] if config.devices not in (None, "auto") and "cpu" not in str(config.devices) else ["cpu"]
    return resolve_devices(config.devices, config.device, gpus)


def run_extract(workdir: Workdir, config: ExtractConfig, *, progress: bool = True, wait: bool = False) -> dict:
    """Extract the features of every downloaded video not yet done, on `config.executor`; returns the run's counts.

    With `config.verify` N > 0, N done videos per feature set are then recomputed on the reference path
    (`counts["verify"]`); any above `config.verify_tolerance` raises StageError (exit 1). Decode processes,
    decoder threads and inference threads left unset are sized together from the cores and the device
    (`videolt.extract.cores`). One process extracts a feature set at a time: another one holding it
    refuses this run (`LockedError`) or, with `wait`, is waited for.
    """
    if config.verify:
        require_ffmpeg()  # before a long extraction, not after it
    held = [workdir.features_lock(name) for name in feature_set_names(config)]
    with workdir.stage("videolt extract", held, wait=wait):
        return _extract(workdir, config, progress)


def _extract(workdir: Workdir, config: ExtractConfig, progress: bool) -> dict:
    devices = _local_devices(config)
    config = sized(config, devices[0].split(":")[0], sinks=len(devices))
    executor = stage_executor(config.executor, workers=config.workers, ray_address=config.ray_address,
                              nice=config.decoder_nice or 0, sinks=len(devices))
    try:
        counts = extract_pending(workdir, config, executor, progress=progress)
    finally:
        executor.close()
    if config.verify:
        results = verify_features(workdir, config, device=resolve_device(config.device))
        counts["verify"] = check_verified(results, config.verify_tolerance)
    return counts
