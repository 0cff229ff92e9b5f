"""Decode a video at a fixed rate (1 fps by default) into RGB frames: one registry, one file per backend.

The frame kept for tick k is the frame *shown* at t = k / fps: the last frame in presentation order
whose timestamp (relative to the stream start) is ≤ t, for every t before the end of the stream
(last frame's pts + its duration). This is exactly what
`ffmpeg -i V -an -vf fps=fps=1:round=up -f rawvideo -pix_fmt rgb24 -` produces; plain `fps=1`
rounds to the nearest tick and picks other frames.

Backends: "pyav" (the default, `pyav.py`; selective decoding of H.264, exact, in `_selective.py`;
RGB as the CLI converts, 10-bit sources included, in `_rgb.py`),
"decord" and "torchcodec" (optional extras, imported only when used). Each says in its
`DecodeReport` which path ran (`FrameStream.report`, `DecodedVideo.report`). Every failure is a
`DecodeError`, a per-video `VideoFailure` whose `failure` is an `ExtractFailure`, so the caller
records it and goes on. Importing this package registers them all.
"""

from videolt.extract.decoders._base import (
    DECODERS,
    Deadline,
    DecodedVideo,
    DecodeError,
    DecodeOptions,
    Decoder,
    DecodeReport,
    FrameStream,
    autorotate,
    iter_frames,
    package_version,
    read_frames,
    register_decoder,
)
from videolt.registry import import_modules

__all__ = [
    "DECODERS",
    "Deadline",
    "DecodeError",
    "DecodedVideo",
    "DecodeOptions",
    "DecodeReport",
    "Decoder",
    "FrameStream",
    "autorotate",
    "iter_frames",
    "package_version",
    "read_frames",
    "register_decoder",
]

import_modules(__name__, __path__)  # every module registers its components: a new one is a new file
