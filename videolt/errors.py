"""One exception tree for videolt; only `videolt.cli.main` maps it to exit codes.

`UsageError` (exit 2) is bad input from the user: one line naming the file and line, the key or
the video ID. Everything else that is a `VideoltError` is a runtime failure (exit 1). Errors also
derive from the matching builtin so callers can catch by Python category.
"""

from __future__ import annotations

from pathlib import Path


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
