"""The feature sink: one per device, it runs every backbone on decoded videos and writes their rows.

A sink never waits on itself. `submit` hands a decoded video over and returns a future; three kinds
of threads then overlap one video's steps with its neighbours':

- the stager copies each clip into pinned host memory and on to the device asynchronously, on
  its own CUDA stream (on the CPU it only wraps the array);
- the forward thread takes the staged videos that are there, packs whole videos into one forward
  up to `batch_size` frames when `pack` is on (a temporal backbone gets whole clips: its segments
  never cross a video), runs each backbone in turn and starts the copy of the features back;
- writer threads wait for that copy and write each row's chunk, whole, through the store.

The sink writes feature chunks only: a row's `n_frames` and `status` are set by the stage's driver
when the result reaches it (on a cluster the driver alone writes those shared arrays). A video whose
inference fails is a per-video failure; a device error (`torch.AcceleratorError`) breaks the sink:
every video it holds fails with `SinkLost`, which the executor hands to another sink.

Packing changes only the batch. On the CPU a convolution's float sums can still depend on the batch
size (oneDNN picks kernels per shape; benchmarks/RESULTS.md), so one video per forward stays the CPU default and is
bit-identical to the serial sink; packed, features agree within float rounding (fp32) or the bf16
tolerance `--verify` uses.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from videolt.errors import StageError
from videolt.executor import SinkLost, SinkPlace
from videolt.extract.failures import ExtractFailure
from videolt.extract.decode_worker import Decoded, RowResult
from videolt.extract.transforms import Preprocessing

__all__ = ["FeatureSink", "FeatureSinkFactory", "SinkSpec"]

log = logging.getLogger(__name__)

_WRITERS = 2  # writer threads per sink: a row write (fp16 cast, finite check, chunk file) would stall the next forward


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


@dataclass(frozen=True)
class FeatureSinkFactory:
    """Everything a sink of one run is built from: picklable, so sink processes and Ray actors build
    their own. `probe` is (path, token): a file the driver wrote that every sink must read back, so a
    sink on a node that does not mount the workdir fails before any work."""

    specs: tuple[SinkSpec, ...]
    batch_size: int = 150
    amp: bool | None = None
    compile: bool = False
    threads: int | None = None
    pack: bool | None = None
    room: int = 2
    probe: tuple[str, str] | None = None

    def __call__(self, place: SinkPlace) -> FeatureSink:
        if self.probe is not None:
            check_probe(*self.probe, place)
        return FeatureSink(self.specs, device=place.device, batch_size=self.batch_size, amp=self.amp,
                           compile=self.compile, threads=self.threads, pack=self.pack, room=self.room, place=place)


def check_probe(path: str, token: str, place: SinkPlace) -> None:
    """Fail in one line unless the file the driver wrote at `path` holds `token` here too."""
    try:
        seen = Path(path).read_text().strip()
    except OSError:
        seen = None
    if seen != token:
        where = Path(path).parent
        raise StageError(f"sink {place.name} cannot see the workdir {where} ({Path(path).name} is "
                         f"{'missing' if seen is None else 'another run'}): every node that runs a sink must "
                         f"mount the workdir at the same path (a shared filesystem)")


@dataclass
class _Video:
    """One submitted video on its way through the sink."""

    decoded: Decoded
    future: Future
    failed: dict[str, str] = field(default_factory=dict)  # spec name → message
    inputs: dict[int, torch.Tensor] = field(default_factory=dict)  # view → uint8 [T, 3, c, c] on the device
    staged: Any = None  # CUDA event: the copy to the device is done

    @property
    def frames(self) -> int:
        return len(self.decoded.clips[0]) if self.decoded.clips else 0


@dataclass
class _Batch:
    """Videos run in one forward per backbone, and what came out."""

    videos: list[_Video]
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # spec → float32 [sum T, dim], then on the host
    busy: Any = 0.0  # seconds computing, or (start, end) CUDA events
    copied: Any = None  # CUDA event: the copy back to the host is done


class FeatureSink:
    """Runs every backbone on decoded videos and writes their feature chunks; one per device."""

    def __init__(self, specs: Sequence[SinkSpec], *, device: str = "cpu", batch_size: int = 150,
                 amp: bool | None = None, channels_last: bool | None = None, compile: bool = False,
                 threads: int | None = None, pack: bool | None = None, room: int = 2, place: SinkPlace | None = None):
        from videolt.data.store import FeatureStore
        from videolt.extract.backbones import create_backbone
        from videolt.extract.cores import keep_freed_memory

        self.device = torch.device(device)
        self.place = place or SinkPlace(0, str(self.device))
        cuda = self.device.type == "cuda"
        if threads:  # this process's intra-op threads (videolt.extract.cores sizes them)
            torch.set_num_threads(threads)
        if self.device.type == "cpu":  # no page faults on every forward pass (videolt.extract.cores)
            keep_freed_memory()
        self.amp = cuda if amp is None else amp
        self.channels_last = cuda if channels_last is None else channels_last
        self.pack = cuda if pack is None else pack
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
        self._room = threading.Semaphore(max(room, 1))
        self._inbox: queue.Queue = queue.Queue()
        self._staged: queue.Queue = queue.Queue()
        self._written: queue.Queue = queue.Queue()
        self._held: list[_Video] = []  # taken from the staged queue, waiting for the next batch
        self._lock = threading.Lock()
        self._live: set[Future] = set()
        self.broken: BaseException | None = None
        self._copy_stream = torch.cuda.Stream(self.device) if cuda else None
        self._threads = [threading.Thread(target=self._guard, args=(self._stage_loop,), name="sink-stage", daemon=True),
                         threading.Thread(target=self._guard, args=(self._forward_loop,), name="sink-forward",
                                          daemon=True)]
        self._threads += [threading.Thread(target=self._guard, args=(self._write_loop,), name=f"sink-write-{k}",
                                           daemon=True) for k in range(_WRITERS)]
        for t in self._threads:
            t.start()

    # -- the caller's side ----------------------------------------------------------------------

    def submit(self, d: Decoded) -> Future:
        """Take one decoded video; the future gives its `RowResult` once its rows are written."""
        future: Future = Future()
        if d.failure is not None:  # nothing to run: the driver records the decode failure
            future.set_result(RowResult(d.index, d.video_id, d.n_frames, d.failure, d.message,
                                        {s.name: d.failure for s in self.specs}, d.seconds, decode_info=d.info,
                                        sink=self.place))
            return future
        self._room.acquire()
        with self._lock:
            if self.broken is not None:
                self._room.release()
                raise SinkLost(f"sink {self.place.name} is broken: {self.broken}")
            self._live.add(future)
        video = _Video(d, future, failed=self._check_shapes(d))
        self._inbox.put(video)
        return future

    def consume(self, d: Decoded) -> RowResult:
        """Submit one video and wait for its result (no overlap: for callers that hold one video)."""
        return self.submit(d).result()

    def close(self) -> None:
        """Finish every video submitted, then stop the threads."""
        self._inbox.put(None)
        for t in self._threads:
            t.join()

    def _check_shapes(self, d: Decoded) -> dict[str, str]:
        failed = {}
        for spec, (bb, _) in zip(self.specs, self.models):
            crop = bb.preprocessing.crop
            clip = d.clips[spec.view]
            if clip.shape[1:] != (3, crop, crop):
                failed[spec.name] = f"ValueError: clip of shape {clip.shape} for a backbone fed {crop}x{crop} crops"
        return failed

    # -- threads --------------------------------------------------------------------------------

    def _guard(self, loop) -> None:
        """Run one thread's loop; an error there breaks the sink (every video held fails with SinkLost)."""
        try:
            if self._copy_stream is not None:
                torch.cuda.set_device(self.device)
            with torch.inference_mode():
                loop()
        except BaseException as e:  # noqa: BLE001 - reported to every waiting caller
            self._break(e)

    def _break(self, error: BaseException) -> None:
        with self._lock:
            if self.broken is None:
                self.broken = error
                log.error("sink %s broken: %s: %s", self.place.name, type(error).__name__, error)
            live, self._live = list(self._live), set()
        for future in live:
            if not future.done():
                future.set_exception(SinkLost(f"sink {self.place.name} lost: {type(error).__name__}: {error}"))
            self._room.release()  # a caller waiting for room wakes up and sees the sink broken
        self._staged.put(None)  # let the other threads see the end
        for _ in range(_WRITERS):
            self._written.put(None)

    def _stage_loop(self) -> None:
        """Clips to the device: pinned host memory, then an asynchronous copy on the copy stream."""
        while (video := self._inbox.get()) is not None and self.broken is None:
            views = {spec.view for spec in self.specs if spec.name not in video.failed}
            if self._copy_stream is None:
                video.inputs = {v: torch.from_numpy(video.decoded.clips[v]) for v in views}
            else:
                with torch.cuda.stream(self._copy_stream):
                    video.inputs = {v: torch.from_numpy(video.decoded.clips[v]).pin_memory().to(
                        self.device, non_blocking=True) for v in views}
                    video.staged = torch.cuda.Event()
                    video.staged.record(self._copy_stream)
            self._staged.put(video)
        self._staged.put(None)

    def _next_batch(self) -> list[_Video] | None:
        """The staged videos there are now, whole, up to `batch_size` frames (one when not packing)."""
        first = self._held.pop() if self._held else self._staged.get()
        if first is None:
            return None
        batch, frames = [first], first.frames
        while self.pack and frames < self.batch_size:
            try:
                video = self._staged.get_nowait()
            except queue.Empty:
                break
            if video is None:
                self._staged.put(None)  # seen again after this batch
                break
            if frames + video.frames > self.batch_size:
                self._held.append(video)
                break
            batch.append(video)
            frames += video.frames
        return batch

    def _forward_loop(self) -> None:
        while (videos := self._next_batch()) is not None and self.broken is None:
            batch = _Batch(videos)
            stream = torch.cuda.current_stream(self.device) if self._copy_stream is not None else None
            if stream is not None:
                for video in videos:
                    stream.wait_event(video.staged)
                    for x in video.inputs.values():
                        x.record_stream(stream)
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record(stream)
            began = time.perf_counter()
            for k, spec in enumerate(self.specs):
                self._run_spec(k, spec, batch)
            if stream is not None:
                end.record(stream)
                batch.busy = (start, end)
                for name, out in batch.outputs.items():  # back to the host, asynchronously
                    host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
                    batch.outputs[name] = host.copy_(out, non_blocking=True)
                batch.copied = torch.cuda.Event()
                batch.copied.record(stream)
            else:
                batch.busy = time.perf_counter() - began
            for video in videos:
                video.inputs = {}
            self._written.put(batch)
        for _ in range(_WRITERS):
            self._written.put(None)

    def _run_spec(self, k: int, spec: SinkSpec, batch: _Batch) -> None:
        """One backbone over the batch's videos; a failing batch is retried one video at a time."""
        videos = [v for v in batch.videos if spec.name not in v.failed]
        if not videos:
            return
        try:
            batch.outputs[spec.name] = self._features(k, spec, videos)
            return
        except torch.AcceleratorError:
            raise  # the device is gone: the sink breaks
        except Exception as e:  # one video's frames, or too large a batch: find out which
            if len(videos) == 1:
                videos[0].failed[spec.name] = f"{type(e).__name__}: {e}"
                return
        parts = []
        for video in videos:
            try:
                parts.append(self._features(k, spec, [video]))
            except torch.AcceleratorError:
                raise
            except Exception as e:
                video.failed[spec.name] = f"{type(e).__name__}: {e}"
        if parts:
            batch.outputs[spec.name] = torch.cat(parts)

    def _features(self, k: int, spec: SinkSpec, videos: list[_Video]) -> torch.Tensor:
        """float32 [sum T, dim] of `videos` (their frames in order), on the sink's device."""
        bb, forward = self.models[k]
        lengths = [v.frames for v in videos]
        x = torch.cat([v.inputs[spec.view] for v in videos]) if len(videos) > 1 else videos[0].inputs[spec.view]
        x = self.to_input[k](x)  # [T, 3, c, c] float32
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            if bb.cfg.temporal:  # whole clips, every segment inside one video
                out = bb.forward_clips(x, lengths) if len(videos) > 1 else forward(x)
            else:
                out = self._chunked(forward, x)
        return out.float()

    def _chunked(self, forward, x: torch.Tensor) -> torch.Tensor:
        """Non-temporal frames in forwards of at most `batch_size` (padded to it when compiling)."""
        step = self.batch_size
        outs = []
        for i in range(0, len(x), step):
            chunk = x[i:i + step]
            n = len(chunk)
            if n < step and self.compile:  # static shapes for torch.compile
                chunk = torch.cat([chunk, chunk[-1:].expand(step - n, *chunk.shape[1:])])
            outs.append(forward(chunk)[:n].float())
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    def _write_loop(self) -> None:
        while (batch := self._written.get()) is not None and self.broken is None:
            if batch.copied is not None:
                batch.copied.synchronize()
                start, end = batch.busy
                busy = start.elapsed_time(end) / 1000
            else:
                busy = batch.busy
            total = sum(v.frames for v in batch.videos) or 1
            offsets = {name: 0 for name in batch.outputs}
            for video in batch.videos:
                self._write(video, batch, offsets, busy * video.frames / total)

    def _write(self, video: _Video, batch: _Batch, offsets: dict[str, int], busy: float) -> None:
        """Write one video's rows (one per feature set), then complete its future."""
        d = video.decoded
        sets: dict[str, ExtractFailure | None] = {}
        message = None
        for spec, store in zip(self.specs, self.stores):
            error = video.failed.get(spec.name)
            if error is None:
                at = offsets[spec.name]
                offsets[spec.name] = at + video.frames
                try:
                    store.write_feats(d.index, batch.outputs[spec.name][at:at + video.frames].numpy())
                except Exception as e:  # e.g. NaN features: this row fails, the others go on
                    error = f"{type(e).__name__}: {e}"
            sets[spec.name] = None if error is None else ExtractFailure.INFERENCE
            if error is not None:
                message = f"[extract] {d.video_id}: {spec.name}: {error}"
                log.warning(message)
        result = RowResult(d.index, d.video_id, d.n_frames, None, message, sets, d.seconds, busy, d.info,
                           sink=self.place)
        with self._lock:
            self._live.discard(video.future)
        self._room.release()  # before the result: a caller that sees it may submit at once
        if not video.future.done():
            video.future.set_result(result)
