"""Failure classes of the extract stage; the value is what the manifest stores."""

from __future__ import annotations

import enum

__all__ = ["ExtractFailure"]


class ExtractFailure(str, enum.Enum):
    """Why a video got no features: a decode class (`DecodeError`), or one of the sink or of our code."""

    NO_VIDEO_STREAM = "no_video_stream"  # the file has no video stream
    EMPTY = "empty"  # a video stream without a decodable frame
    CORRUPT = "corrupt"  # decoding failed midway, or the stream ends before its declared duration
    UNREADABLE = "unreadable"  # missing, empty or not a media file
    TIMEOUT = "timeout"  # not decoded within the per-video time limit
    INFERENCE = "inference"  # a backbone failed on this video's frames (one feature set)
    INTERNAL = "internal"  # a bug or an unforeseen library error; traceback kept in the message

    def __str__(self) -> str:
        return self.value
