"""One exception tree for videolt; only `videolt.cli.main` maps it to exit codes.

`UsageError` (exit 2) is bad input from the user: one line naming the file and line, the key or
the video ID. Everything else that is a `VideoltError` is a runtime failure (exit 1). Errors also
derive from the matching builtin so callers can catch by Python category. A caller's bug, ours and
not the user's (a row index out of range, a mis-shaped array), raises the plain builtin error: an
internal error (exit 1, its traceback logged). `describe` turns any exception, ours or not, into its
exit code and its one line; `write_traceback` keeps the traceback behind that line in a log file
(WORKDIR/logs/videolt.log).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable


class VideoltError(Exception):
    """Root of every error videolt raises on purpose."""

    exit_code = 1


class UsageError(VideoltError, ValueError):
    """Bad usage or bad input: exit code 2, one line naming what is wrong and where."""

    exit_code = 2


class InputFileError(UsageError):
    """A malformed input file; renders as `path:line: message`."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ConfigError(UsageError):
    """An unknown, missing or mistyped configuration key."""


class UnknownNameError(UsageError, KeyError):
    """A name not in a registry; the message lists the known names and close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WorkdirError(UsageError):
    """A missing, foreign or inconsistent workdir."""


class FeatureSetNotFound(VideoltError, FileNotFoundError):
    """A feature set named by the user does not exist in the workdir."""

    exit_code = 2


class StageError(VideoltError, RuntimeError):
    """A stage could not go on (e.g. tooling broken, disk full, rate-limited too often)."""


class VideoFailure(VideoltError):
    """One video's failure: recorded in the manifest with its `failure` class, and the batch goes on.

    Raised and caught inside a stage's per-video work; it never reaches `cli.main` on its own.
    """

    def __init__(self, failure: str, message: str):
        self.failure = failure
        super().__init__(message)


class IntegrityError(VideoltError):
    """Data a record says is there is missing or damaged (a done feature row without its chunk, a
    damaged manifest): exit 1, one line naming the video or file and the command that repairs it."""


class LockedError(VideoltError):
    """Another process holds the stage's or the run's lock: exit 1, one line naming it (pid, host, command)."""
# -- how any exception reaches the user ------------------------------------------------------------
LOG_NAME = "videolt.log"  # under WORKDIR/logs/: the tracebacks of the failures a command printed in one line


def describe(exc: BaseException, *, manifest: str | Path | None = None) -> tuple[int, list[str]]:
    """The exit code and the line(s) for `exc`: one per reason of a `VideoltError` (a refused
    preflight may have several), exactly one for anything else.

    A damaged manifest (`sqlite3.DatabaseError` not already turned into a `VideoltError` where it
    was opened) is a runtime failure named after `manifest`; any other exception is an internal
    error, reported by its type and first line.
    """
    import sqlite3

    if isinstance(exc, VideoltError):
        return (2 if isinstance(exc, UsageError) else exc.exit_code), str(exc).splitlines() or [""]
    first = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, sqlite3.DatabaseError):
        return 1, [f"{manifest or 'the manifest'}: unreadable database ({first})"]
    if isinstance(exc, OSError):
        return 1, [f"{type(exc).__name__}: {first}" if first else type(exc).__name__]
    return 1, [f"internal error: {type(exc).__name__}: {first}" if first else f"internal error: {type(exc).__name__}"]


def write_traceback(path: str | Path, exc: BaseException, context: str, *, redact: Callable[[str], str] = str) -> Path:
    """Append `exc`'s traceback to the log file `path` under a dated `context` line, through `redact`
    (a download's masks the user's cookies and tokens); returns the path."""
    import datetime as dt
    import traceback

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    with path.open("a", encoding="utf-8") as f:
        f.write(redact(f"--- {stamp} {context}\n{''.join(traceback.format_exception(exc))}\n"))
    return path
