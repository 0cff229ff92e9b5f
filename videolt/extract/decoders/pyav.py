"""The "pyav" decoder (the default): one sequential pass with PyAV, exactly ffmpeg's 1-fps frames.

The stream is decoded once, front to back, keeping only the current candidate frame and converting
to RGB only the frames it keeps (converting every frame would cost as much as decoding), with the
CLI's own conversion (`_rgb.py`: byte for byte on 10-bit sources too). With
`selective` (the default), H.264 frames that no tick shows and no frame references are discarded
before decoding (`_selective.py`: exact, and faster than a full pass on H.264 with B-frames:
benchmarks/RESULTS.md "## decode"); other codecs, and streams whose timestamps give no safe plan, are decoded in
full, and the report says which path ran and why. Rotation
metadata is applied as ffmpeg's autorotate does. A stream that ends more than a second before the
duration its header declares counts as `corrupt` (a cut download: demuxers report it as a normal
end of stream). The time limit is checked between decoded frames.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from videolt.extract.decoders._base import (
    Deadline,
    DecodeError,
    DecodeOptions,
    DecodeReport,
    autorotate,
    register_decoder,
)
from videolt.extract.decoders._exact_ticks import first_tick, tick_units
from videolt.extract.decoders._rgb import RgbConverter
from videolt.extract.decoders._selective import Plan, PlanMismatch, plan_selection
from videolt.extract.failures import ExtractFailure

if TYPE_CHECKING:  # PyAV is imported where a video is decoded: the package imports without it (GPU benchmark box)
    import av

log = logging.getLogger(__name__)

# A stream that ends this much (seconds) before the duration its header declares is truncated;
# demuxers report a cut file as a normal end of stream.
_TRUNCATION_SLACK = 1.0


@register_decoder("pyav", package="av")
def decode_pyav(path: Path, fps: Fraction, deadline: Deadline, options: DecodeOptions,
                report: DecodeReport) -> Iterator[tuple[float, np.ndarray]]:
    """One sequential pass (selective where exact); only the current candidate is kept, only kept frames become RGB."""
    yielded = 0
    try:
        for item in _decode(path, fps, deadline, options, report, selective=options.selective):
            yield item
            yielded += 1
    except PlanMismatch as exc:
        # The frames did not come out as the packets promised: decode again, every frame, and
        # continue after the ticks already given (they were shown by frames that came out as planned).
        log.warning("%s: selective decoding: %s; decoding again in full", path, exc)
        report.selective, report.fallback = False, f"{exc}; decoded again in full"
        for i, item in enumerate(_decode(path, fps, deadline, options, report, selective=False)):
            if i >= yielded:
                yield item


def _decode(path: Path, fps: Fraction, deadline: Deadline, options: DecodeOptions, report: DecodeReport,
            *, selective: bool) -> Iterator[tuple[float, np.ndarray]]:
    with _open(path) as container:
        stream = _video_stream(container, path, options.threads)
        plan = _plan(path, container, stream, fps, report) if selective else None
        report.selective = plan is not None
        yield from _sample(path, container, stream, plan, fps, deadline, report)


def _open(path: Path) -> av.container.InputContainer:
    import av

    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DecodeError(ExtractFailure.UNREADABLE, path, f"cannot open ({exc})") from exc


def _video_stream(container: av.container.InputContainer, path: Path, threads: int) -> av.VideoStream:
    """The first video stream, set to decode on `threads` threads."""
    if not container.streams.video:
        raise DecodeError(ExtractFailure.NO_VIDEO_STREAM, path, "the file has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.thread_count = threads
    return stream


def _plan(path: Path, container: av.container.InputContainer, stream: av.VideoStream, fps: Fraction,
          report: DecodeReport) -> Plan | None:
    """The selective plan, or None (the reason in `report.fallback`) when decoding must be full."""
    planned = plan_selection(path, container.format.name, stream.index, stream.codec_context.name, stream.start_time,
                             stream.time_base, fps)
    if isinstance(planned, Plan):
        report.frames = len(planned.frames)
        return planned
    report.fallback = planned
    return None


def _sample(path: Path, container: av.container.InputContainer, stream: av.VideoStream, plan: Plan | None,
            fps: Fraction, deadline: Deadline, report: DecodeReport) -> Iterator[tuple[float, np.ndarray]]:
    """The 1-fps frames: tick k shows the last frame that starts at or before k / fps, up to the stream's end."""
    import av

    time_base = stream.time_base
    start = stream.start_time
    default_duration = 1 / stream.average_rate if stream.average_rate else None
    tick, unit = tick_units(fps, time_base)  # integer tick arithmetic, cheaper than Fractions
    to_rgb = RgbConverter()  # one per video: the ffmpeg CLI's conversion (10-bit sources included)

    candidate: av.VideoFrame | None = None
    cand_d = 0
    cand_rgb: np.ndarray | None = None
    prev_d: int | None = None
    k = 0
    n_read = 0
    try:
        for frame in _frames(container, stream, plan):
            deadline.check()
            n_read += 1
            if plan is not None:
                plan.check(frame.pts, None if candidate is None else candidate.pts)
            if frame.pts is None:
                continue  # no timestamp: it cannot be placed on the timeline
            if start is None:
                start = frame.pts
            d = frame.pts - start
            if candidate is not None:
                while k * tick < d * unit:  # ticks before this frame show the candidate
                    if cand_rgb is None:
                        cand_rgb = _to_rgb(candidate, to_rgb)
                    yield float(k / fps), cand_rgb
                    k += 1
                prev_d = cand_d
            else:
                k = max(k, first_tick(d, tick, unit))  # no frame is shown before the first one
            candidate, cand_d, cand_rgb = frame, d, None
    except av.FFmpegError as exc:
        raise DecodeError(ExtractFailure.CORRUPT, path, f"decoder error after {n_read} frames ({exc})") from exc
    finally:
        report.decoded = n_read
    if plan is not None:
        plan.check_end(None if candidate is None else candidate.pts)
    if candidate is None:
        raise DecodeError(ExtractFailure.EMPTY, path, f"no decodable frame ({n_read} read)")
    cand_t = cand_d * time_base
    prev_t = None if prev_d is None else prev_d * time_base
    end = cand_t + _last_duration(candidate, time_base, default_duration, cand_t, prev_t)
    _check_complete(path, container, stream, end, start, n_read)
    while k / fps < end:
        deadline.check()
        if cand_rgb is None:
            cand_rgb = _to_rgb(candidate, to_rgb)
        yield float(k / fps), cand_rgb
        k += 1


def _check_complete(path: Path, container: av.container.InputContainer, stream: av.VideoStream, end: Fraction,
                    start: int, n_read: int) -> None:
    """A `corrupt` DecodeError if the stream ends (`end`, from its first frame) more than `_TRUNCATION_SLACK`
    before the end its header declares."""
    declared = _declared_end(container, stream)
    if declared is not None:
        ends = (end, end + max(Fraction(0), start * stream.time_base)) if declared[1] else (end,)
        if max(ends) + _TRUNCATION_SLACK < declared[0]:
            raise DecodeError(ExtractFailure.CORRUPT, path, f"stream ends at {float(end):.2f} s of "
                              f"{declared[0]:.2f} s declared after {n_read} frames")


def _frames(container: av.container.InputContainer, stream: av.VideoStream,
            plan: Plan | None) -> Iterator[av.VideoFrame]:
    """The stream's frames in presentation order; with a plan, the decoder discards every
    non-reference frame the plan does not keep (skip_frame, set per packet)."""
    if plan is None:
        yield from container.decode(stream)
        return
    codec = stream.codec_context
    skipping = False
    for packet in container.demux(stream):
        skip = packet.size > 0 and not plan.wanted(packet.pts)
        if skip != skipping:
            codec.skip_frame = "NONREF" if skip else "DEFAULT"
            skipping = skip
        yield from codec.decode(packet)


def _declared_end(container: av.container.InputContainer, stream: av.VideoStream) -> tuple[float, bool] | None:
    """Where the header says the video stream ends, and whether that may be counted from zero.

    A stream's own duration counts from its first frame. A container's duration is counted from
    zero by some demuxers (Matroska and WebM report the segment's end time) and from the first
    timestamp by others, so a stream that starts late is truncated only if it ends early by both
    counts (a valid file with a start offset must not be taken for a cut download).
    """
    if stream.duration:
        return float(stream.duration * stream.time_base), False
    if container.duration and len(container.streams) == 1:
        return container.duration / 1_000_000, True  # AV_TIME_BASE
    return None


def _last_duration(
    frame: av.VideoFrame,
    time_base: Fraction,
    default: Fraction | None,
    t: Fraction,
    prev_t: Fraction | None,
) -> Fraction:
    """The last frame's duration: its own, else 1 / average rate, else the previous interval."""
    if frame.duration:
        return frame.duration * time_base
    if default:
        return Fraction(default)
    return t - prev_t if prev_t is not None else Fraction(0)


def _to_rgb(frame: av.VideoFrame, converter: RgbConverter) -> np.ndarray:
    return autorotate(converter(frame), frame.rotation)
