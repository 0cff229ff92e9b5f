"""VideoLT's fixed protocol, the default of every option that can change it: frames decoded at 1 fps,
150 of them per video (uniform over the video), and the class groups by train videos: head > 500,
tail <= 100, medium in between. Free of numpy, so the CLI's parser can use it."""

from __future__ import annotations

__all__ = ["FPS", "FRAMES", "GROUPS", "GROUP_HEAD", "GROUP_TAIL"]

FPS = 1.0  # decoding rate, frames per second
FRAMES = 150  # feature rows per video
GROUP_HEAD = 500  # head classes have more train videos than this
GROUP_TAIL = 100  # tail classes have at most this many train videos
GROUPS = ("head", "medium", "tail")
