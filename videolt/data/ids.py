"""YouTube video IDs: checked before they become a URL or a path."""

from __future__ import annotations

import re

YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
# What may appear as an ID in a label list at all: letters, digits, '-' and '_' (paths stay safe).
LIST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def is_valid_id(video_id: str) -> bool:
    """True for a well-formed YouTube ID (11 characters of [A-Za-z0-9_-])."""
    return bool(YOUTUBE_ID.match(video_id))


INVALID_ID = "invalid_id"  # the download failure class of an ID no URL is made from (failures.DownloadFailure)


def invalid_id_message(video_id: str) -> str:
    """What the manifest says about such an ID (at `init`, and if a download ever meets one)."""
    return f"[download] {video_id}: not a YouTube ID (11 characters of A-Z a-z 0-9 _ -); not fetched"
