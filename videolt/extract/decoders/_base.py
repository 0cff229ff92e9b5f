"""The decoder registry, its entry type, and what every backend shares: errors, time limit, rotation.

A decoder turns (path, fps, deadline, options, report) into an iterator of (t seconds, uint8
[H, W, 3] RGB), one item per tick t = k / fps, each the frame shown at t (see
`videolt.extract.decoders`), and says in the `DecodeReport` which path it took. Each entry names
the distribution it decodes with, so a feature set's provenance records that package's version.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

import numpy as np

from videolt.data.protocol import FPS
from videolt.errors import UsageError, VideoFailure
from videolt.extract.failures import ExtractFailure
from videolt.registry import Registry, docstring_summary

# A backend: (path, fps, deadline, options, report) -> iterator of (t seconds, uint8 [H, W, 3]) in
# tick order; it fills `report` as it goes.
DecodeFn = Callable[[Path, Fraction, "Deadline", "DecodeOptions", "DecodeReport"], Iterator[tuple[float, np.ndarray]]]


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode; no option changes a single output pixel."""

    selective: bool = True  # discard the frames no tick shows and no frame references, where that is exact
    threads: int = 0  # decoder threads (0: the library's choice, for FFmpeg one per core plus one)


@dataclass
class DecodeReport:
    """What a decoder did with one video, filled in while it decodes (complete once the frames are out)."""

    decoder: str
    selective: bool = False  # True: the frames no tick needs were discarded before decoding (exact)
    fallback: str | None = None  # why the full path ran although `selective` was asked
    frames: int | None = None  # frames in the stream (its timestamped packets), when the path counted them
    decoded: int | None = None  # frames decoded to pixels, where the backend counts them

    def to_info(self) -> dict[str, object]:
        """The manifest's record of the path taken (each count and `fallback` only when known)."""
        info: dict[str, object] = {"selective": self.selective}
        for key, value in (("frames", self.frames), ("decoded_frames", self.decoded), ("fallback", self.fallback)):
            if value is not None:
                info[key] = value
        return info


@dataclass(frozen=True)
class Decoder:
    """A registered decoding backend: its name, its decode function, and the distribution it uses."""

    name: str
    decode: DecodeFn
    package: str  # e.g. "av" for PyAV: its version is recorded with every feature set

    def version(self) -> str:
        return package_version(self.package)


DECODERS: Registry[Decoder] = Registry("decoder", summary=lambda d: f"with {d.package}: {docstring_summary(d.decode)}")


def register_decoder(name: str, *, package: str) -> Callable[[DecodeFn], DecodeFn]:
    """Decorator filing a decode function as decoder `name`, decoding with distribution `package`."""

    def deco(fn: DecodeFn) -> DecodeFn:
        DECODERS.register(name)(Decoder(name, fn, package))
        return fn

    return deco


def package_version(dist: str) -> str:
    """The installed version of distribution `dist`, or "not installed"."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def require(module: str, extra: str) -> ModuleType:
    """Import an optional decoder's module; missing, it is a `UsageError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(f"decoder {extra!r} is not installed: pip install videolt[{extra}]") from exc


class DecodeError(VideoFailure):
    """One video could not be decoded; `failure` is its `ExtractFailure` class. Recorded, and the batch goes on."""

    def __init__(self, failure: ExtractFailure | str, path: str | Path, message: str):
        failure = ExtractFailure(failure)
        self.path = str(path)
        super().__init__(failure, f"[decode] {self.path}: {failure}: {message}")


def start_full_decode(name: str, path: Path, options: DecodeOptions, report: DecodeReport) -> None:
    """The opening of a decoder that always decodes every frame: say so when selective decoding was
    asked for, and refuse a missing or empty file before the library tries it."""
    if options.selective:
        report.fallback = f"decoder {name} decodes every frame"
    if not path.is_file() or path.stat().st_size == 0:
        raise DecodeError(ExtractFailure.UNREADABLE, path, "missing or empty file")


def open_error(path: Path, exc: Exception) -> DecodeError:
    """A library's refusal to open `path`, as the failure class it means."""
    failure = ExtractFailure.NO_VIDEO_STREAM if "video stream" in str(exc).lower() else ExtractFailure.UNREADABLE
    return DecodeError(failure, path, f"cannot open ({exc})")


@dataclass(frozen=True)
class DecodedVideo:
    """Frames at native (display) resolution and the tick time of each."""

    frames: np.ndarray  # uint8 [n, H, W, 3] RGB
    timestamps: np.ndarray  # float64 [n], seconds from the stream start
    report: DecodeReport | None = None  # the path the decoder took

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
            raise DecodeError(ExtractFailure.TIMEOUT, self.path, f"not decoded within {self.seconds:g} s")


def as_fps(fps: float | Fraction) -> Fraction:
    """A positive rate as an exact fraction (`ValueError` otherwise)."""
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


class FrameStream(Iterator[tuple[float, np.ndarray]]):
    """The (t, frame) items of one video, and `report`: the path its decoder took (complete at the end)."""

    def __init__(self, items: Iterator[tuple[float, np.ndarray]], report: DecodeReport):
        self._items = items
        self.report = report

    def __next__(self) -> tuple[float, np.ndarray]:
        return next(self._items)

    def close(self) -> None:
        """Stop early: the decoder closes its file now."""
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


def iter_frames(
    path: str | Path, fps: float | Fraction = FPS, *, backend: str = "pyav", timeout: float | None = None,
    selective: bool = True, threads: int = 0,
) -> FrameStream:
    """Yield (t seconds, uint8 [H, W, 3] RGB) for each tick as soon as its frame is known.

    Memory stays bounded by one frame plus the decoder's own buffers. A frame shown for several
    ticks is yielded once per tick (as the same array object). The backend name and `fps` are
    checked now; decoding errors are raised while iterating, after the frames before them.
    `selective` lets the decoder discard frames that no tick shows and no other frame references
    (exact; backends and codecs that cannot do it decode everything and say so in `.report`);
    `threads` is the decoder's thread count (0: its own choice).
    """
    path = Path(path)
    decoder = DECODERS.get(backend)
    if threads < 0:
        raise ValueError(f"decoder threads must be >= 0, got {threads}")
    report = DecodeReport(decoder.name)
    options = DecodeOptions(selective=selective, threads=threads)
    return FrameStream(decoder.decode(path, as_fps(fps), Deadline(path, timeout), options, report), report)


def read_frames(
    path: str | Path, fps: float | Fraction = FPS, *, backend: str = "pyav", timeout: float | None = None,
    selective: bool = True, threads: int = 0,
) -> DecodedVideo:
    """Decode the whole video at `fps` into one array (see `videolt.extract.decoders` for the rule)."""
    times: list[float] = []
    frames: list[np.ndarray] = []
    stream = iter_frames(path, fps, backend=backend, timeout=timeout, selective=selective, threads=threads)
    for t, image in stream:
        times.append(t)
        frames.append(image)
    if not frames:
        raise DecodeError(ExtractFailure.EMPTY, path, "no frame before the end of the stream")
    return DecodedVideo(frames=np.stack(frames), timestamps=np.asarray(times, dtype=np.float64), report=stream.report)
