"""Optional decoders ("decord", "torchcodec") with the same tick rule as the PyAV decoder.

Both are imported lazily: a missing package is a `UsageError` naming the extra to install.
Known differences from "pyav" (pinned by tests/test_decode.py):
- decord and torchcodec report timestamps as floats; ticks are compared with a 1 µs tolerance.
- decord fails on some rotated videos (a buffer size check when the rotated width is not
  aligned, e.g. 64×48 turned by 90°): reported as "corrupt".
- torchcodec needs the system's FFmpeg libraries. Its stream end can be the last frame's pts
  without that frame's duration (seen on a variable-rate mp4), which drops a final tick that
  falls inside the last frame.
- Neither notices a truncated stream (they decode what is there), and both call a file that
  declares a video stream without any packet "unreadable" rather than "empty".
Both apply rotation metadata; on every other test video their frames equal ffmpeg's byte for byte.
"""

from __future__ import annotations

import importlib
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Iterator, Sequence

import numpy as np

from videolt.errors import UsageError
from videolt.extract.decode import DECODERS, DecodeError, Deadline

# Frames fetched per backend call: bounds memory at native resolution (16 × 1080p ≈ 100 MB).
_CHUNK = 16
# Float timestamps from decord/torchcodec: a frame within 1 µs of a tick counts as at the tick.
_EPS = 1e-6


def _require(module: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(f"decoder {extra!r} is not installed: pip install videolt[{extra}]") from exc


def _tick_times(end: float, fps: Fraction) -> np.ndarray:
    """Tick times k / fps < end (seconds from the stream start)."""
    n_ticks = max(int(np.ceil(end * float(fps) - _EPS)), 0)
    return np.arange(n_ticks, dtype=np.float64) / float(fps)


def _ticks(starts: np.ndarray, end: float, fps: Fraction) -> tuple[np.ndarray, np.ndarray]:
    """Tick times and, per tick, the index of the last frame starting ≤ the tick."""
    times = _tick_times(end, fps)
    idx = np.searchsorted(starts, times + _EPS, side="right") - 1
    keep = idx >= 0  # no frame is shown before the first one
    return times[keep], idx[keep]


def _chunks(times: np.ndarray, idx: np.ndarray) -> Iterator[tuple[Sequence[float], np.ndarray]]:
    for lo in range(0, len(times), _CHUNK):
        yield times[lo:lo + _CHUNK].tolist(), idx[lo:lo + _CHUNK]


@DECODERS.register("decord")
def _decode_decord(path: Path, fps: Fraction, deadline: Deadline) -> Iterator[tuple[float, np.ndarray]]:
    decord = _require("decord", "decord")
    if not path.is_file() or path.stat().st_size == 0:
        raise DecodeError("unreadable", path, "missing or empty file")
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=0)
    except (decord.DECORDError, RuntimeError) as exc:
        failure = "no_video_stream" if "video stream" in str(exc).lower() else "unreadable"
        raise DecodeError(failure, path, f"cannot open ({exc})") from exc
    if len(reader) == 0:
        raise DecodeError("empty", path, "no frame in the stream")
    spans = reader.get_frame_timestamp(np.arange(len(reader)))  # [n, 2] start, end seconds
    times, idx = _ticks(spans[:, 0], float(spans[-1, 1]), fps)
    for chunk_times, chunk_idx in _chunks(times, idx):
        deadline.check()
        try:
            batch = reader.get_batch(chunk_idx.tolist()).asnumpy()
        except (decord.DECORDError, RuntimeError) as exc:
            raise DecodeError("corrupt", path, f"decoder error near frame {chunk_idx[0]} ({exc})") from exc
        yield from zip(chunk_times, batch)


@DECODERS.register("torchcodec")
def _decode_torchcodec(path: Path, fps: Fraction, deadline: Deadline) -> Iterator[tuple[float, np.ndarray]]:
    decoders = _require("torchcodec.decoders", "torchcodec")
    if not path.is_file() or path.stat().st_size == 0:
        raise DecodeError("unreadable", path, "missing or empty file")
    try:
        decoder = decoders.VideoDecoder(str(path), seek_mode="exact", dimension_order="NHWC")
    except (RuntimeError, ValueError) as exc:
        failure = "no_video_stream" if "video stream" in str(exc).lower() else "unreadable"
        raise DecodeError(failure, path, f"cannot open ({exc})") from exc
    meta = decoder.metadata
    if not meta.num_frames:
        raise DecodeError("empty", path, "no frame in the stream")
    begin = float(meta.begin_stream_seconds)
    # "Played at" is the tick rule itself; the stream begins with its first frame.
    times = _tick_times(float(meta.end_stream_seconds) - begin, fps)
    for chunk_times, _ in _chunks(times, np.arange(len(times))):
        deadline.check()
        try:
            batch = decoder.get_frames_played_at(seconds=[begin + t + _EPS for t in chunk_times])
        except (RuntimeError, IndexError, ValueError) as exc:
            raise DecodeError("corrupt", path, f"decoder error near t={chunk_times[0]:g} s ({exc})") from exc
        yield from zip(chunk_times, batch.data.numpy())
