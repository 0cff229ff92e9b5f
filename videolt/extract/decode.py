"""Decode a video at a fixed rate (1 fps by default) into RGB frames.

The frame kept for tick k is the frame *shown* at t = k / fps: the last frame in presentation order
whose timestamp (relative to the stream start) is ≤ t, for every t before the end of the stream
(last frame's pts + its duration). This is exactly what
`ffmpeg -i V -an -vf fps=fps=1:round=up -f rawvideo -pix_fmt rgb24 -` produces; plain `fps=1`
rounds to the nearest tick and picks other frames.

The default "pyav" backend decodes the stream once, front to back, keeping only the current
candidate frame and converting to RGB only the frames it keeps (converting every frame would cost
as much as decoding). Rotation metadata is applied as ffmpeg's autorotate does. Other backends
("decord", "torchcodec") live in `_decode_backends` behind the same `DECODERS` registry.

Every failure is a `DecodeError` whose `failure` names one of `FAILURES`, so the caller can record
it per video and go on. A stream that ends more than a second before the duration its header
declares counts as `corrupt` (a cut download: demuxers report it as a normal end of stream). The
time limit is checked between decoded frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from videolt.errors import StageError
from videolt.registry import Registry

__all__ = [
    "DECODERS",
    "FAILURES",
    "DecodeError",
    "DecodedVideo",
    "Deadline",
    "autorotate",
    "iter_frames",
    "read_frames",
]

FAILURES = ("no_video_stream", "empty", "corrupt", "unreadable", "timeout")

# A stream that ends this much (seconds) before the duration its header declares is truncated;
# demuxers report a cut file as a normal end of stream.
_TRUNCATION_SLACK = 1.0

# A backend: (path, fps, deadline) -> iterator of (t seconds, uint8 [H, W, 3]) in tick order.
Backend = Callable[[Path, Fraction, "Deadline"], Iterator[tuple[float, np.ndarray]]]
DECODERS: Registry[Backend] = Registry("decoder")


class DecodeError(StageError):
    """One video could not be decoded; `failure` is one of `FAILURES`."""

    def __init__(self, failure: str, path: str | Path, message: str):
        if failure not in FAILURES:
            raise ValueError(f"unknown decode failure {failure!r}")
        self.failure = failure
        self.path = str(path)
        super().__init__(f"[decode] {self.path}: {failure}: {message}")


@dataclass(frozen=True)
class DecodedVideo:
    """Frames at native (display) resolution and the tick time of each."""

    frames: np.ndarray  # uint8 [n, H, W, 3] RGB
    timestamps: np.ndarray  # float64 [n], seconds from the stream start

    def __len__(self) -> int:
        return len(self.timestamps)


class Deadline:
    """A per-video time limit, checked between decoded frames (`seconds=None`: no limit)."""

    def __init__(self, path: Path, seconds: float | None):
        self.path = path
        self.seconds = seconds
        self._end = None if seconds is None else time.monotonic() + seconds

    def check(self) -> None:
        if self._end is not None and time.monotonic() > self._end:
            raise DecodeError("timeout", self.path, f"not decoded within {self.seconds:g} s")


def _as_fps(fps: float | Fraction) -> Fraction:
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not fps > 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1_000_000)


def autorotate(image: np.ndarray, rotation: float) -> np.ndarray:
    """Turn an [H, W, C] image by `rotation` degrees counter-clockwise (PyAV's `frame.rotation`).

    Like ffmpeg's autorotate, only multiples of 90° are applied (others are rounded to the
    nearest quarter turn); the result is made contiguous.
    """
    quarter_turns = int(round(rotation / 90.0)) % 4
    if quarter_turns == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=quarter_turns))


def iter_frames(
    path: str | Path, fps: float | Fraction = 1.0, *, backend: str = "pyav", timeout: float | None = None
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (t seconds, uint8 [H, W, 3] RGB) for each tick as soon as its frame is known.

    Memory stays bounded by one frame plus the decoder's own buffers. A frame shown for several
    ticks is yielded once per tick (as the same array object). The backend name and `fps` are
    checked now; decoding errors are raised while iterating, after the frames before them.
    """
    path = Path(path)
    decoder = DECODERS.get(backend)
    return decoder(path, _as_fps(fps), Deadline(path, timeout))


def read_frames(
    path: str | Path, fps: float | Fraction = 1.0, *, backend: str = "pyav", timeout: float | None = None
) -> DecodedVideo:
    """Decode the whole video at `fps` into one array (see the module docstring for the rule)."""
    times: list[float] = []
    frames: list[np.ndarray] = []
    for t, image in iter_frames(path, fps, backend=backend, timeout=timeout):
        times.append(t)
        frames.append(image)
    if not frames:
        raise DecodeError("empty", path, "no frame before the end of the stream")
    return DecodedVideo(frames=np.stack(frames), timestamps=np.asarray(times, dtype=np.float64))


@DECODERS.register("pyav")
def _decode_pyav(path: Path, fps: Fraction, deadline: Deadline) -> Iterator[tuple[float, np.ndarray]]:
    """One sequential pass; only the current candidate is kept, only kept frames become RGB."""
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DecodeError("unreadable", path, f"cannot open ({exc})") from exc
    with container:
        if not container.streams.video:
            raise DecodeError("no_video_stream", path, "the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        time_base = stream.time_base
        start = stream.start_time
        default_duration = 1 / stream.average_rate if stream.average_rate else None
        # Tick k precedes a frame at offset d (pts units) iff k / fps < d · time_base, i.e.
        # k · tick < d · unit in integers (25× cheaper than Fractions; ~0.5 % of a 360p decode).
        tick = fps.denominator * time_base.denominator
        unit = fps.numerator * time_base.numerator
        # One converter for the whole video: `frame.to_ndarray(format=...)` builds a new swscale
        # context for every frame (0.4 ms a frame, about half the conversion at 360p).
        to_rgb = VideoReformatter()

        candidate: av.VideoFrame | None = None
        cand_d = 0
        cand_rgb: np.ndarray | None = None
        prev_d: int | None = None
        k = 0
        n_read = 0
        try:
            for frame in container.decode(stream):
                deadline.check()
                n_read += 1
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
                    k = max(k, -(-d * unit // tick))  # no frame is shown before the first one
                candidate, cand_d, cand_rgb = frame, d, None
        except av.FFmpegError as exc:
            raise DecodeError("corrupt", path, f"decoder error after {n_read} frames ({exc})") from exc
        if candidate is None:
            raise DecodeError("empty", path, f"no decodable frame ({n_read} read)")
        cand_t = cand_d * time_base
        prev_t = None if prev_d is None else prev_d * time_base
        end = cand_t + _last_duration(candidate, time_base, default_duration, cand_t, prev_t)
        declared = _declared_seconds(container, stream)
        if declared is not None and end + _TRUNCATION_SLACK < declared:
            raise DecodeError(
                "corrupt", path, f"stream ends at {float(end):.2f} s of {declared:.2f} s declared after {n_read} frames"
            )
        while k / fps < end:
            deadline.check()
            if cand_rgb is None:
                cand_rgb = _to_rgb(candidate, to_rgb)
            yield float(k / fps), cand_rgb
            k += 1


def _declared_seconds(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    """The video stream's duration as the header states it (None when it does not)."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
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


def _to_rgb(frame: av.VideoFrame, reformatter: VideoReformatter) -> np.ndarray:
    return autorotate(reformatter.reformat(frame, format="rgb24").to_ndarray(), frame.rotation)


# Optional backends register themselves on import.
from videolt.extract import _decode_backends  # noqa: E402,F401
