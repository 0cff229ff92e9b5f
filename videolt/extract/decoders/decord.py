"""The "decord" decoder (extra `videolt[decord]`), with the same tick rule as "pyav".

Known differences from "pyav" (pinned by tests/test_decode.py): it fails on some rotated videos (a
buffer size check when the rotated width is not aligned, e.g. 64×48 turned by 90°), reported as
`corrupt`; on an open-GOP H.264 stream its seeks decode leading B-frames without the frame they
reference, so some ticks get wrong pixels; it does not notice a truncated stream (it decodes what
is there); and it calls a file that declares a video stream without any packet `unreadable` rather
than `empty`. It applies rotation metadata; on every other test video its frames equal ffmpeg's
byte for byte. It always decodes every frame (no selective path).
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
from videolt.extract.decoders._float_ticks import chunks, ticks
from videolt.extract.failures import ExtractFailure


@register_decoder("decord", package="decord")
def decode_decord(path: Path, fps: Fraction, deadline: Deadline, options: DecodeOptions,
                  report: DecodeReport) -> Iterator[tuple[float, np.ndarray]]:
    """decord's VideoReader, every frame decoded (extra videolt[decord]); differs from pyav on a few files."""
    decord = require("decord", "decord")
    start_full_decode("decord", path, options, report)
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=options.threads)
    except (decord.DECORDError, RuntimeError) as exc:
        raise open_error(path, exc) from exc
    if len(reader) == 0:
        raise DecodeError(ExtractFailure.EMPTY, path, "no frame in the stream")
    report.frames = len(reader)
    spans = reader.get_frame_timestamp(np.arange(len(reader)))  # [n, 2] start, end seconds
    times, idx = ticks(spans[:, 0], float(spans[-1, 1]), fps)
    for chunk_times, chunk_idx in chunks(times, idx):
        deadline.check()
        try:
            batch = reader.get_batch(chunk_idx.tolist()).asnumpy()
        except (decord.DECORDError, RuntimeError) as exc:
            raise DecodeError(ExtractFailure.CORRUPT, path,
                              f"decoder error near frame {chunk_idx[0]} ({exc})") from exc
        yield from zip(chunk_times, batch)
