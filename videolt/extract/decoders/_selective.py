"""Selective decoding: which frames the tick rule shows, known from packet timestamps before decoding.

At 1 fps from a 25–30 fps source, one frame in 25–30 is shown at a tick; in H.264 with B-frames
about half of the others are never referenced either (`nal_ref_idc == 0`). libavcodec discards such
frames before decoding them when `skip_frame` is "NONREF", and it honours the setting per packet
(with frame threading too: each submitted packet carries the value the caller set). So: read every
packet's timestamp in a demux-only pass (cheap next to decoding), compute which frames some tick
will show, then decode with "NONREF" for every other packet and the default for those. A reference
frame is decoded either way; a discarded frame is, by definition, used by no other frame, so no
decoded pixel changes, and the shown frames are exactly the ones a full decode shows.

What makes the plan safe, checked before decoding (else the video is decoded in full and the
reason recorded): the codec is H.264 (VP9 and AV1 gain nothing from the setting); the stream has a
start time; every frame packet has a timestamp and no two share one. While decoding, `Plan.check`
verifies that the frames come out as planned (increasing timestamps, each one a packet's, every
kept frame present); a surprise is a `PlanMismatch` and the caller decodes again in full.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from videolt.extract.decoders._exact_ticks import first_tick, tick_units

__all__ = ["CODECS", "DEMUXERS", "Plan", "PlanMismatch", "plan_selection"]

# Codecs whose libavcodec decoder discards non-reference frames per packet (skip_frame "NONREF").
CODECS = frozenset({"h264"})
# Demuxers whose packets carry presentation timestamps (AVI, raw streams: decode-order or guessed ones).
DEMUXERS = frozenset({"mov", "mp4", "matroska", "webm", "mpegts", "flv"})


class PlanMismatch(Exception):
    """The decoder's frames differ from the plan (a frame missing, extra or out of order)."""


@dataclass(frozen=True)
class Plan:
    """Frame timestamps (pts) of one stream: all of them, and the ones that must be decoded."""

    frames: frozenset[int]  # every frame's pts
    keep: tuple[int, ...]  # sorted: frames shown at some tick, and the last two (the end of the stream)

    def wanted(self, pts: int | None) -> bool:
        """Whether the packet with this pts must be decoded ("DEFAULT") rather than may be discarded."""
        if pts is None:
            return True
        i = bisect.bisect_left(self.keep, pts)
        return i < len(self.keep) and self.keep[i] == pts

    def check(self, pts: int | None, previous: int | None) -> None:
        """Raise `PlanMismatch` unless a frame at `pts` may follow the one at `previous` (None: the first)."""
        if pts is None or pts not in self.frames:
            raise PlanMismatch(f"the decoder put out a frame at pts {pts}, which no packet has")
        if previous is not None and pts <= previous:
            raise PlanMismatch(f"the decoder put out pts {pts} after {previous}")
        lo = -1 if previous is None else previous
        i = bisect.bisect_right(self.keep, lo)
        if i < len(self.keep) and self.keep[i] < pts:
            raise PlanMismatch(f"the frame at pts {self.keep[i]} was not put out")

    def check_end(self, last: int | None) -> None:
        """Raise `PlanMismatch` if a kept frame after the last one put out never came."""
        if self.keep and (last is None or self.keep[-1] > last):
            raise PlanMismatch(f"the frame at pts {self.keep[-1]} was not put out")


def plan_selection(path: Path, demuxer: str, stream_index: int, codec: str, start: int | None,
                   time_base: Fraction | None, fps: Fraction) -> Plan | str:
    """The decode plan for video stream `stream_index` of `path`, or why there is none (a reason).

    `demuxer` is the container format's name (FFmpeg's, e.g. "mov,mp4,m4a,3gp,3g2,mj2"), `start`
    the stream's start time and `time_base` its unit (as the decoding pass uses them); one
    demux-only pass reads the packet timestamps.
    """
    if codec not in CODECS:
        return f"codec {codec} (selective decoding is for {', '.join(sorted(CODECS))})"
    if not DEMUXERS & set(demuxer.split(",")):
        return f"container {demuxer} (its packets may lack presentation timestamps)"
    if start is None or time_base is None:
        return "the stream has no start time"
    import av  # here, not at the top: the decoders package imports without PyAV

    pts: list[int] = []
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            for packet in container.demux(container.streams[stream_index]):
                if packet.size == 0 or packet.is_discard:
                    continue  # the end-of-stream marker, or a packet the decoder decodes but never puts out
                if packet.pts is None:
                    return "a packet has no timestamp"
                pts.append(packet.pts)
    except (av.FFmpegError, OSError) as exc:
        return f"the demux-only pass failed ({exc})"
    order = sorted(pts)
    if len(set(order)) != len(order):
        return "two packets share a timestamp"
    if len(order) < 3:
        return f"{len(order)} frames"
    return Plan(frames=frozenset(order), keep=tuple(shown_frames(order, start, time_base, fps)))


def shown_frames(order: list[int], start: int, time_base: Fraction, fps: Fraction) -> list[int]:
    """The pts (sorted) of the frames some tick shows, plus the last two frames.

    Frame i (offset d_i = pts − start) is shown at tick k iff d_i ≤ k / fps < d_{i+1}; the first tick
    at or after d_i is ceil(d_i · fps) (never below 0). The last frame is kept whatever it shows: its
    timestamp and duration end the stream, and the one before it gives the fallback duration.
    """
    tick, unit = tick_units(fps, time_base)  # as the decoder's loop
    keep = []
    for i in range(len(order) - 2):
        d, d_next = order[i] - start, order[i + 1] - start
        first = max(first_tick(d, tick, unit), 0)
        if first * tick < d_next * unit:
            keep.append(order[i])
    return keep + order[-2:]
