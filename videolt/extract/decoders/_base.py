"""The decoder registry, its entry type, and what every backend shares: errors, time limit, rotation.

A decoder turns (path, fps, deadline) into an iterator of (t seconds, uint8 [H, W, 3] RGB), one item
per tick t = k / fps, each the frame shown at t (see `videolt.extract.decoders`). Each entry names
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

from videolt.errors import UsageError, VideoFailure
from videolt.extract.failures import ExtractFailure
from videolt.registry import Registry

# A backend: (path, fps, deadline) -> iterator of (t seconds, uint8 [H, W, 3]) in tick order.
DecodeFn = Callable[[Path, Fraction, "Deadline"], Iterator[tuple[float, np.ndarray]]]


@dataclass(frozen=True)
class Decoder:
    """A registered decoding backend: its name, its decode function, and the distribution it uses."""

    name: str
    decode: DecodeFn
    package: str  # e.g. "av" for PyAV: its version is recorded with every feature set

    def version(self) -> str:
        return package_version(self.package)


DECODERS: Registry[Decoder] = Registry("decoder")


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
    return decoder.decode(path, as_fps(fps), Deadline(path, timeout))


def read_frames(
    path: str | Path, fps: float | Fraction = 1.0, *, backend: str = "pyav", timeout: float | None = None
) -> DecodedVideo:
    """Decode the whole video at `fps` into one array (see `videolt.extract.decoders` for the rule)."""
    times: list[float] = []
    frames: list[np.ndarray] = []
    for t, image in iter_frames(path, fps, backend=backend, timeout=timeout):
        times.append(t)
        frames.append(image)
    if not frames:
        raise DecodeError(ExtractFailure.EMPTY, path, "no frame before the end of the stream")
    return DecodedVideo(frames=np.stack(frames), timestamps=np.asarray(times, dtype=np.float64))
