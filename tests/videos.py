"""Tiny synthetic videos for tests, written with PyAV (no downloads, no assets).

Every frame carries its index as a row of black/white blocks (a binary counter), so a test that
picks the wrong frame sees different pixels even after lossy compression. `pattern="class-<k>"`
adds a class-specific texture (hue and stripe period depend on k) so that generated videos of
different classes are visibly different for the demo and the extraction tests.

    make_video(tmp_path / "a.mp4", fps=29.97, seconds=2.0)
    make_video(tmp_path / "b.mkv", start_offset=0.7)
    make_video(tmp_path / "c.mp4", rotate=90, vfr=True)

10-bit sources (H.264 High 10, VP9 profile 2, AV1) are encoded by the ffmpeg CLI (`make_cli_video`):
PyAV's wheels lack some of those encoders (libvpx without high bit depth, no libaom).
"""

from __future__ import annotations

import colorsys
import functools
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Colorspace

__all__ = ["CODECS", "as_rate", "cli_encoder_formats", "frame_image", "make_cli_video", "make_video", "read_counter",
           "vfr_intervals_ms"]

CODECS = {"h264": "libx264", "vp9": "libvpx-vp9", "mpeg4": "mpeg4"}
_COUNTER_BITS = 8
# VFR: a repeating cycle of frame intervals in milliseconds (mean 50 ms, i.e. 20 fps on average).
_VFR_CYCLE_MS = (40, 40, 120, 20, 60, 33, 17, 70)


def as_rate(fps: float | Fraction) -> Fraction:
    """29.97 → 30000/1001, 25 → 25: the exact rate a float frame rate stands for."""
    if isinstance(fps, Fraction):
        return fps
    ntsc = Fraction(round(fps * 1.001) * 1000, 1001)
    if fps != int(fps) and abs(float(ntsc) - fps) < 5e-3:
        return ntsc
    return Fraction(fps).limit_denominator(1000)


def vfr_intervals_ms(n: int) -> list[int]:
    """Durations (ms) of the first n frames of a variable-frame-rate video."""
    return [_VFR_CYCLE_MS[i % len(_VFR_CYCLE_MS)] for i in range(n)]


def frame_image(index: int, size: tuple[int, int] = (64, 48), pattern: str = "gradient") -> np.ndarray:
    """The RGB image (uint8 [H, W, 3]) of frame `index`; `size` is (width, height)."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    if pattern == "gradient":
        img = np.stack(
            [(x * 255 // max(width - 1, 1) + 3 * index) % 256, y * 255 // max(height - 1, 1),
             np.full_like(x, (37 * index) % 256)],
            axis=-1,
        )
    elif pattern.startswith("class-"):
        k = int(pattern.removeprefix("class-"))
        r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.8, 0.9)
        period = 4 + k % 7
        stripes = ((x + (y if k % 2 else 0) + index) // period) % 2
        shade = 0.55 + 0.45 * stripes
        img = np.stack([r * 255 * shade, g * 255 * shade, b * 255 * shade], axis=-1)
    else:
        raise ValueError(f"unknown pattern {pattern!r}; use 'gradient' or 'class-<k>'")
    img = img.astype(np.uint8)
    # Binary counter in the top rows: block b is white when bit b of the index is set.
    block = max(width // _COUNTER_BITS, 1)
    rows = max(height // 4, 4)
    for bit in range(_COUNTER_BITS):
        img[:rows, bit * block:(bit + 1) * block] = 255 if (index >> bit) & 1 else 0
    return img


def make_video(
    path: str | Path,
    *,
    codec: str = "h264",
    fps: float | Fraction = 25,
    seconds: float = 3.0,
    size: tuple[int, int] = (64, 48),
    bframes: bool = True,
    start_offset: float = 0.0,
    rotate: int | None = None,
    vfr: bool = False,
    pattern: str = "gradient",
    colorspace: str | None = None,
    encoder: dict[str, str] | None = None,
) -> Path:
    """Write a small video and return its path; the container follows the suffix (.mp4, .mkv, .webm).

    `rotate` stores a display rotation (degrees counter-clockwise, as PyAV reads it back) without
    touching the pixels; `start_offset` shifts every timestamp (the file's start time, rounded to a
whole frame of a constant-rate video: 0.7 s at 25 fps becomes 0.72 s); `vfr`
    uses the `vfr_intervals_ms` cycle instead of a constant rate; `colorspace` tags the stream
    (a `Colorspace` name such as "itu709") so RGB conversion must honour the tag; `encoder` adds or
    overrides encoder options, e.g. {"bf": "3", "x264-params": "b-pyramid=strict:open-gop=1"} (the
    H.264 default is a fixed qp 12; pass {"qp": None} to drop an option).
    """
    path = Path(path)
    rate = as_rate(fps)
    if vfr:
        time_base = Fraction(1, 1000)
        durations = vfr_intervals_ms(int(seconds * 1000 / 50))
        pts = np.concatenate([[0], np.cumsum(durations)[:-1]]).astype(int).tolist()
    else:
        time_base = 1 / rate
        pts = list(range(max(int(round(seconds * rate)), 1)))
    offset = int(round(start_offset / time_base))
    with av.open(str(path), "w") as container:
        stream = container.add_stream(CODECS.get(codec, codec), rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = time_base
        options = {"bf": "2" if bframes else "0", "g": "12"}
        if codec == "h264":
            options["qp"] = "12"
        elif codec == "vp9":
            options.update({"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8"})
        options.update(encoder or {})
        stream.options = {key: value for key, value in options.items() if value is not None}
        if colorspace is not None:
            stream.codec_context.colorspace = Colorspace[colorspace.upper()].value
        if rotate is not None:
            stream.set_display_rotation(rotate)
        for i, t in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(frame_image(i, size, pattern), format="rgb24")
            if colorspace is not None:
                frame = frame.reformat(format="yuv420p", dst_colorspace=colorspace)
            frame.pts = t + offset
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@functools.cache
def cli_encoder_formats(encoder: str) -> frozenset[str]:
    """The pixel formats the ffmpeg CLI's `encoder` takes (empty without the CLI or the encoder)."""
    if shutil.which("ffmpeg") is None:
        return frozenset()
    out = subprocess.run(["ffmpeg", "-hide_banner", "-h", f"encoder={encoder}"], capture_output=True, text=True).stdout
    found = re.search(r"Supported pixel formats:(.*)", out)
    return frozenset(found.group(1).split()) if found else frozenset()


def make_cli_video(path: str | Path, encoder: str, pix_fmt: str, *, fps: int = 25, seconds: float = 2.0,
                   size: tuple[int, int] = (64, 48), args: tuple[str, ...] = ()) -> Path:
    """`frame_image` frames encoded by the ffmpeg CLI's `encoder` in `pix_fmt` (e.g. yuv420p10le), with its `args`.

    Callers skip first when `pix_fmt not in cli_encoder_formats(encoder)`.
    """
    path = Path(path)
    frames = b"".join(frame_image(i, size).tobytes() for i in range(int(round(seconds * fps))))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}",
                    "-r", str(fps), "-i", "-", "-c:v", encoder, "-pix_fmt", pix_fmt, "-g", "12", *args, str(path)],
                   input=frames, check=True, capture_output=True)
    return path


def read_counter(image: np.ndarray) -> int:
    """The frame index written by `frame_image` into an (unrotated) decoded RGB image."""
    height, width = image.shape[:2]
    block = max(width // _COUNTER_BITS, 1)
    rows = max(height // 4, 4)
    bits = [image[1:rows - 1, b * block + 1:(b + 1) * block - 1].mean() > 127 for b in range(_COUNTER_BITS)]
    return sum(1 << b for b, on in enumerate(bits) if on)


def h264_references(path: str | Path) -> dict[int, bool]:
    """pts → whether that H.264 frame is a reference picture (`nal_ref_idc` of its first slice ≠ 0).

    Reads an AVCC stream (mp4, mkv: length-prefixed NAL units) packet by packet, independently of
    the decoder, so tests can tell which selected frames the decoder must not discard.
    """
    out: dict[int, bool] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        length_size = (stream.codec_context.extradata[4] & 3) + 1
        for packet in container.demux(stream):
            data, i = bytes(packet), 0
            while i + length_size < len(data):
                size = int.from_bytes(data[i:i + length_size], "big")
                header = data[i + length_size]
                if header & 0x1F in (1, 5):  # a coded slice (non-IDR, IDR)
                    out[packet.pts] = bool(header >> 5 & 3)
                    break
                i += length_size + size
    return out
