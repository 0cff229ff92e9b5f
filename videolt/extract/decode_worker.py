"""The extract stage's two halves, as plain functions the executors call.

`decode_job` (CPU, one process per core): decode one video at 1 fps, pick the 150 sampled frames,
resize and centre-crop them once per distinct `View` (uint8, so little crosses process boundaries).
It never raises: a failure comes back as data. The feature sink (`videolt.extract.sink`, one per
device) runs every backbone on the clips and writes each feature set's row chunk; `RowResult` says
what happened. A View is the spatial half of a backbone's `Preprocessing`, the sink applies the
other half (the backbone's mean/std); the sink checks that its backbones' preprocessing is the one
recorded.

Memory stays bounded for long videos: the stream's declared duration predicts n, the number of 1-fps
frames, and only frames that floor(linspace(0, n − 1, 150)) could pick for any n near the prediction
are kept. When the real n falls outside that window (a lying header), the video is decoded again
keeping exactly the right frames, so the result is always exact.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from videolt.data.protocol import FPS, FRAMES
from videolt.executor import SinkPlace
from videolt.extract.decoders import DecodeError, iter_frames
from videolt.extract.failures import ExtractFailure
from videolt.extract.sampling import sample_indices
from videolt.extract.transforms import CenterCrop, Preprocessing, ResizeShortSide

log = logging.getLogger(__name__)

# Frames-per-video window around the predicted n whose sampled frames are kept on the first pass.
_WINDOW = 3


@dataclass(frozen=True)
class View:
    """One spatial preprocessing shared by some backbones: short side `resize`, centre crop `crop`."""

    resize: int
    crop: int
    interpolation: str = "bilinear"
    antialias: bool = True

    @classmethod
    def of(cls, pre: Preprocessing) -> View:
        """The uint8 resize → crop of a backbone's preprocessing (its normalisation runs in the sink)."""
        return cls(pre.resize, pre.crop, pre.interpolation, pre.antialias)


@dataclass(frozen=True)
class DecodeJob:
    index: int
    video_id: str
    path: str
    views: tuple[View, ...]
    fps: float = FPS
    frames: int = FRAMES
    decoder: str = "pyav"
    timeout: float | None = None
    selective: bool = True  # discard frames no tick shows and none references, where exact (decoders/_selective.py)
    threads: int = 0  # decoder threads (0: the library's choice)


@dataclass(frozen=True)
class Decoded:
    """A decode result: `clips[v]` is uint8 [frames, 3, crop, crop] for view v, or a failure."""

    index: int
    video_id: str
    n_frames: int = 0
    clips: tuple[np.ndarray, ...] = ()
    failure: ExtractFailure | None = None
    message: str | None = None
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)  # the path the decoder took (`DecodeReport.to_info`)


@dataclass(frozen=True)
class RowResult:
    """What the sink did with one video: per feature set, None (written) or a failure class."""

    index: int
    video_id: str
    n_frames: int
    decode_failure: ExtractFailure | None
    message: str | None
    sets: dict[str, ExtractFailure | None] = field(default_factory=dict)
    decode_seconds: float = 0.0
    infer_seconds: float = 0.0  # the sink's compute time for this video (its share of a packed forward)
    decode_info: dict[str, Any] = field(default_factory=dict)  # `Decoded.info`
    sink: SinkPlace | None = None  # the sink that did it


def decode_job(job: DecodeJob) -> Decoded:
    """Decode, sample and crop one video; failures are returned, never raised."""
    start, cpu = time.perf_counter(), time.process_time()
    info: dict[str, Any] = {}
    try:
        with _torch_threads(1):
            n, clips = _decode_sampled(job, info)
        info["cpu_seconds"] = round(time.process_time() - cpu, 3)  # this process's threads: one job at a time
    except DecodeError as e:
        return Decoded(job.index, job.video_id, failure=e.failure, message=str(e),
                       seconds=time.perf_counter() - start, info=info)
    except Exception as e:  # a bug or an unforeseen library error: keep the traceback, go on
        return Decoded(job.index, job.video_id, failure=ExtractFailure.INTERNAL,
                       message=f"[decode] {job.video_id}: {type(e).__name__}: {e}\n{traceback.format_exc()}",
                       seconds=time.perf_counter() - start, info=info)
    return Decoded(job.index, job.video_id, n, clips, seconds=time.perf_counter() - start, info=info)


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run torch ops on `n` intra-op threads, then restore the previous count.

    A decode job is one worker per core: torch's default of one thread per core made the small
    per-frame resize and copy wait on each other (benchmarks/RESULTS.md).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _decode_sampled(job: DecodeJob, info: dict[str, Any]) -> tuple[int, tuple[np.ndarray, ...]]:
    """(n 1-fps frames, one sampled uint8 clip per view); `info` receives the decoder's report."""
    crops = [(ResizeShortSide(v.resize, v.interpolation, v.antialias), CenterCrop(v.crop)) for v in job.views]

    def prepare(image: np.ndarray) -> list[np.ndarray]:
        x = torch.from_numpy(image).unsqueeze(0)  # [1, H, W, 3] uint8
        # The resized crop is a channels-last view; numpy makes it channels-first contiguous in one copy.
        return [np.ascontiguousarray(crop(resize(x))[0].numpy()) for resize, crop in crops]  # [3, c, c] each

    predicted = _predict_ticks(Path(job.path), job.fps)
    keep = None if predicted is None else _candidates(predicted, job.frames)
    n, kept = _collect(job, keep, prepare, info)
    if keep is not None and not set(sample_indices(n, job.frames).tolist()) <= kept.keys():
        log.info("%s: %d frames at %g fps, header predicted %d; decoding again", job.video_id, n, job.fps, predicted)
        n2, kept = _collect(job, set(sample_indices(n, job.frames).tolist()), prepare, info)
        if n2 != n:
            raise DecodeError(ExtractFailure.CORRUPT, job.path, f"two decodes gave {n} and {n2} frames")
    picks = sample_indices(n, job.frames)
    return n, tuple(np.stack([kept[int(i)][v] for i in picks]) for v in range(len(job.views)))


def _collect(job: DecodeJob, keep: set[int] | None, prepare,
             info: dict[str, Any]) -> tuple[int, dict[int, list[np.ndarray]]]:
    """Stream the video; prepare the frames whose tick index is in `keep` (all when None)."""
    kept: dict[int, list[np.ndarray]] = {}
    n = 0
    frames = iter_frames(job.path, job.fps, backend=job.decoder, timeout=job.timeout, selective=job.selective,
                         threads=job.threads)
    try:
        for n, (_, image) in enumerate(frames, 1):
            if keep is None or n - 1 in keep:
                kept[n - 1] = prepare(image)
    finally:
        info.update(frames.report.to_info())
    if n == 0:
        raise DecodeError(ExtractFailure.EMPTY, job.path, "no frame before the end of the stream")
    return n, kept


def _predict_ticks(path: Path, fps: float) -> int | None:
    """The number of 1-fps ticks the container header promises, or None when it does not say."""
    import av

    try:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif c.duration is not None:
                seconds = c.duration / 1_000_000
            else:
                return None
    except (av.FFmpegError, IndexError, OSError):
        return None  # the decoder proper will classify the failure
    return max(math.ceil(seconds * fps), 1)


def _candidates(predicted: int, frames: int) -> set[int]:
    """Every index that sampling could pick if the real n is within the window around `predicted`."""
    out: set[int] = set()
    for n in range(max(predicted - _WINDOW, 1), predicted + _WINDOW + 1):
        out.update(sample_indices(n, frames).tolist())
    return out
