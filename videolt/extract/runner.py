"""The extract stage's two halves, as plain functions the executors call.

`decode_job` (CPU, one process per core): decode one video at 1 fps, pick the 150 sampled frames,
resize and centre-crop them once per distinct `View` (uint8, so little crosses process boundaries).
It never raises: a failure comes back as data. `FeatureSink.consume` (one per device): normalise,
run every backbone, write each feature set's row (data first, status last) and say what happened.
A View is the spatial half of a backbone's `Preprocessing`, the sink applies the other half (the
backbone's mean/std); the sink checks that its backbones' preprocessing is the one recorded.

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
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from videolt.errors import StageError
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
    fps: float = 1.0
    frames: int = 150
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
    infer_seconds: float = 0.0
    decode_info: dict[str, Any] = field(default_factory=dict)  # `Decoded.info`


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
    per-frame resize and copy wait on each other (a 256×256 channels-last copy took 1–7 ms on two
    threads of a loaded 2-core box against 0.25 ms on one).
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


@dataclass(frozen=True)
class SinkSpec:
    """One feature set the sink writes: which backbone, which view of the frames, where.

    resize/crop are the run's overrides (None: the backbone's own); `preprocessing`, when given, is
    the one recorded in the feature set's attrs, and the sink refuses a backbone that would apply another.
    """

    name: str
    backbone: str
    weights: str
    store_path: str
    view: int
    seed: int = 0
    opts: tuple[tuple[str, Any], ...] = ()
    resize: int | None = None
    crop: int | None = None
    preprocessing: Preprocessing | None = None


class FeatureSink:
    """Runs every backbone on a decoded video and writes their rows; one per device."""

    def __init__(self, specs: Sequence[SinkSpec], *, device: str = "cpu", batch_size: int = 150,
                 amp: bool | None = None, channels_last: bool | None = None, compile: bool = False,
                 threads: int | None = None):
        from videolt.data.store import FeatureStore
        from videolt.extract.backbones import create_backbone
        from videolt.extract.cores import keep_freed_memory

        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        if threads:  # this process's intra-op threads (videolt.extract.cores sizes them)
            torch.set_num_threads(threads)
        if self.device.type == "cpu":  # no page faults on every forward pass (videolt.extract.cores)
            keep_freed_memory()
        self.amp = cuda if amp is None else amp
        self.channels_last = cuda if channels_last is None else channels_last
        self.batch_size = batch_size
        self.compile = compile  # pad short batches to one shape only when compiling
        self.specs = list(specs)
        self.models = []
        for spec in self.specs:
            bb = create_backbone(spec.backbone, weights=spec.weights, seed=spec.seed, resize=spec.resize,
                                 crop=spec.crop, **dict(spec.opts)).to(self.device)
            if spec.preprocessing is not None and bb.preprocessing != spec.preprocessing:
                raise StageError(f"{spec.name}: backbone {spec.backbone} would apply {bb.preprocessing}, "
                                 f"but the feature set records {spec.preprocessing}")
            if self.channels_last:
                bb = bb.to(memory_format=torch.channels_last)
            forward = torch.compile(bb) if compile else bb
            self.models.append((bb, forward))
        self.stores = [FeatureStore.open(spec.store_path, mode="r+") for spec in self.specs]
        self.to_input = [bb.preprocessing.normalise() for bb, _ in self.models]  # uint8 → float, mean/std

    def consume(self, d: Decoded) -> RowResult:
        if d.failure is not None:
            for store in self.stores:
                store.mark_failed(d.index)
            return RowResult(d.index, d.video_id, d.n_frames, d.failure, d.message,
                             {s.name: d.failure for s in self.specs}, d.seconds, decode_info=d.info)
        start = time.perf_counter()
        sets: dict[str, ExtractFailure | None] = {}
        message = None
        for spec, (bb, forward), store, normalise in zip(self.specs, self.models, self.stores, self.to_input):
            try:
                feats = self._features(d.clips[spec.view], bb, forward, normalise)
                store.write_row(d.index, feats, d.n_frames)
                sets[spec.name] = None
            except Exception as e:  # one video's inference failure never stops the batch
                store.mark_failed(d.index)
                sets[spec.name] = ExtractFailure.INFERENCE
                message = f"[extract] {d.video_id}: {spec.name}: {type(e).__name__}: {e}"
                log.warning(message)
        return RowResult(d.index, d.video_id, d.n_frames, None, message, sets, d.seconds,
                         time.perf_counter() - start, d.info)

    @torch.inference_mode()
    def _features(self, clip: np.ndarray, bb, forward, normalise) -> np.ndarray:
        crop = bb.preprocessing.crop
        if clip.shape[1:] != (3, crop, crop):
            raise ValueError(f"clip of shape {clip.shape} for a backbone fed {crop}x{crop} crops")
        x = torch.from_numpy(clip)  # [T, 3, c, c] uint8
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = normalise(x)  # [T, 3, c, c] float32
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        step = len(x) if bb.cfg.temporal else self.batch_size  # a temporal model needs the whole clip
        outs = []
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            for i in range(0, len(x), step):
                chunk = x[i:i + step]
                n = len(chunk)
                if n < step and self.compile and not bb.cfg.temporal:  # static shapes for torch.compile
                    chunk = torch.cat([chunk, chunk[-1:].expand(step - n, *chunk.shape[1:])])
                outs.append(forward(chunk)[:n].float())
        return torch.cat(outs).cpu().numpy()  # [T, dim] float32
