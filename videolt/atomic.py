"""Files written whole or not at all: to a temporary name beside the target, then `os.replace`.

A process killed at any moment leaves the old file or the new one, never half of one; a failed write
removes its temporary file and leaves the target as it was. The temporary name is hidden
(`.<name>...`), so listings and globs of the folder do not see it, and by default fixed, so the
leftover of a killed writer is overwritten by the next write; `unique` gives each write its own, where
two processes may write one target at once. The file gets the permissions a plain write would (the
umask's); nothing is fsynced (none of the writers this replaced did).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable

__all__ = ["replace", "write_text"]


def replace(path: str | Path, write: Callable[[Path], object], *, unique: bool = False, suffix: str = ".tmp") -> Path:
    """Put at `path` what `write(tmp)` writes at a temporary path, atomically; returns `path`.

    `suffix` ends the temporary name, for writers that choose the format by extension (e.g. ".tmp.mp4").
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}{f'.{uuid.uuid4().hex}' if unique else ''}{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str, *, unique: bool = False) -> Path:
    """`path` holding `text` (UTF-8), written atomically."""
    return replace(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), unique=unique)
