"""The "torchcodec" decoder (extra `videolt[torchcodec]`), with the same tick rule as "pyav".

Known differences from "pyav" (pinned by tests/test_decode.py): it needs the system's FFmpeg
libraries; its stream end can be the last frame's pts without that frame's duration (seen on a
variable-rate mp4), which drops a final tick that falls inside the last frame; it does not notice a
truncated stream; and it calls a file that declares a video stream without any packet `unreadable`
rather than `empty`. It applies rotation metadata; on every other test video its frames equal
ffmpeg's byte for byte. It always decodes every frame (no selective path); its own default of one
FFmpeg thread holds unless `threads` asks for more.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from videolt.extract.decoders._base import (
    Deadline,
    DecodeError,
    DecodeOptions,
    DecodeReport,
    open_error,
    register_decoder,
    require,
    start_full_decode,
)
from videolt.extract.decoders._float_ticks import EPS, chunks, tick_times
from videolt.extract.failures import ExtractFailure


@register_decoder("torchcodec", package="torchcodec")
def decode_torchcodec(path: Path, fps: Fraction, deadline: Deadline, options: DecodeOptions,
                      report: DecodeReport) -> Iterator[tuple[float, np.ndarray]]:
    """torchcodec's VideoDecoder, every frame decoded (extra videolt[torchcodec]); differs from pyav on a few files."""
    decoders = require("torchcodec.decoders", "torchcodec")
    start_full_decode("torchcodec", path, options, report)
    try:
        threads = {"num_ffmpeg_threads": options.threads} if options.threads else {}
        decoder = decoders.VideoDecoder(str(path), seek_mode="exact", dimension_order="NHWC", **threads)
    except (RuntimeError, ValueError) as exc:
        raise open_error(path, exc) from exc
    meta = decoder.metadata
    report.frames = meta.num_frames
    if not meta.num_frames:
        raise DecodeError(ExtractFailure.EMPTY, path, "no frame in the stream")
    begin = float(meta.begin_stream_seconds)
    # "Played at" is the tick rule itself; the stream begins with its first frame.
    times = tick_times(float(meta.end_stream_seconds) - begin, fps)
    for chunk_times, _ in chunks(times, np.arange(len(times))):
        deadline.check()
        try:
            batch = decoder.get_frames_played_at(seconds=[begin + t + EPS for t in chunk_times])
        except (RuntimeError, IndexError, ValueError) as exc:
            raise DecodeError(ExtractFailure.CORRUPT, path,
                              f"decoder error near t={chunk_times[0]:g} s ({exc})") from exc
        yield from zip(chunk_times, batch.data.numpy())
