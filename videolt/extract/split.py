"""Where an extract run's time went, decoding against inference, as the driver saw it.

Per video the decode processes report their wall and CPU seconds and the path their decoder took
(selective or full); the sink reports its compute seconds (every backbone; on a GPU the device's
own time, from CUDA events; its share when several videos ran in one forward) and which sink it
was. The driver adds the time it spent waiting for a result. Per sink (`sinks`): its node and
device, its videos, frames/s over the run's wall time, and its busy fraction (compute seconds over
wall time). A run whose sinks are seldom busy needs more decoders; one whose sinks are always busy
is bound by inference.
"""

from __future__ import annotations

import resource
import time
from typing import Iterable, Iterator

from videolt.extract.config import ExtractConfig
from videolt.extract.decode_worker import RowResult

__all__ = ["Split"]


class Split:
    """Accumulates one run's decode and inference times; `timed` wraps the executor's results."""

    def __init__(self, cfg: ExtractConfig):
        self.cfg = cfg
        self.videos = self.selective = 0
        self.decode_s = self.decode_cpu_s = self.inference_s = self.wait_s = 0.0
        self._usage = resource.getrusage(resource.RUSAGE_SELF)
        self._start = time.perf_counter()
        self.first_s: float | None = None  # seconds until the first video was done (start-up included)
        self.sinks: dict[int, dict] = {}  # sink index → its place, videos, frames, compute seconds

    def timed(self, results: Iterable[RowResult]) -> Iterator[RowResult]:
        """The results, each timed from the moment the driver asked for it."""
        it = iter(results)
        while True:
            asked = time.perf_counter()
            try:
                r = next(it)
            except StopIteration:
                return
            self.add(r, time.perf_counter() - asked)
            yield r

    def add(self, r: RowResult, seconds: float) -> None:
        """Count one video that took the driver `seconds` to get (its inference included, when local)."""
        self.videos += 1
        if self.first_s is None:
            self.first_s = time.perf_counter() - self._start
        self.decode_s += r.decode_seconds
        self.decode_cpu_s += float(r.decode_info.get("cpu_seconds", 0.0))
        self.inference_s += r.infer_seconds
        self.wait_s += max(seconds - r.infer_seconds, 0.0)
        self.selective += bool(r.decode_info.get("selective"))
        if r.sink is not None and r.decode_failure is None:
            sink = self.sinks.setdefault(r.sink.index, {"sink": r.sink.index, "node": r.sink.node,
                                                        "device": r.sink.label or r.sink.device,
                                                        "videos": 0, "busy_s": 0.0})
            sink["videos"] += 1
            sink["busy_s"] += r.infer_seconds

    def summary(self, wall_s: float) -> dict:
        """Plain numbers for the run's counts (`--json`)."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "wall_s": round(wall_s, 2), "first_video_s": round(self.first_s or 0.0, 2),
            "inference_s": round(self.inference_s, 2), "wait_s": round(self.wait_s, 2),
            "decode_s": round(self.decode_s, 2), "decode_cpu_s": round(self.decode_cpu_s, 2),
            "driver_user_s": round(usage.ru_utime - self._usage.ru_utime, 2),
            "driver_sys_s": round(usage.ru_stime - self._usage.ru_stime, 2),
            "videos": self.videos, "selective_videos": self.selective,
            "workers": self.cfg.workers, "decoder_threads": self.cfg.decoder_threads,
            "torch_threads": self.cfg.torch_threads, "decoder_nice": self.cfg.decoder_nice,
            "sinks": [{**{k: v for k, v in s.items() if k != "busy_s"},
                       "frames_s": round(s["videos"] * self.cfg.frames / wall_s, 1) if wall_s else 0.0,
                       "busy": round(s["busy_s"] / wall_s, 3) if wall_s else 0.0}
                      for _, s in sorted(self.sinks.items())],
        }

    @staticmethod
    def describe(s: dict) -> str:
        """One line for the log: the split and the cores' plan."""
        if not s["videos"]:
            return "split: no video"
        sinks = max(len(s.get("sinks", [])), 1)
        busy = s["inference_s"] / (s["wall_s"] * sinks) if s["wall_s"] else 0.0
        return (f"split: {s['videos']} videos in {s['wall_s']:.1f} s (the first after {s['first_video_s']:.1f} s); "
                f"inference {s['inference_s']:.1f} s in {sinks} sink(s) "
                f"({busy:.0%} of their time), waiting for results {s['wait_s']:.1f} s; decoding "
                f"{s['decode_s']:.1f} s in workers ({s['decode_cpu_s']:.1f} CPU-s, selective "
                f"{s['selective_videos']}/{s['videos']} videos); driver CPU {s['driver_user_s']:.1f} s user + "
                f"{s['driver_sys_s']:.1f} s system; {s['workers']} decode processes x {s['decoder_threads']} "
                f"threads at nice +{s['decoder_nice'] or 0}, {s['torch_threads']} inference threads"
                + "".join(f"\n  sink {k['sink']} on {k['node'] + '/' if k['node'] else ''}{k['device']}: "
                          f"{k['videos']} videos, {k['frames_s']:.1f} frames/s, busy {k['busy']:.0%}"
                          for k in s.get("sinks", [])))
