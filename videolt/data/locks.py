"""Advisory locks: one coordinating process per stage and feature set, one per run folder.

A lock is an exclusive `flock` on `WORKDIR/.locks/<name>.lock`, taken by the driver of a stage
(`extract` of a feature set, `download`, `import-*`) or of a run (`train`, `decouple`, `evaluate`)
and by nothing it starts: decode workers, sinks and Ray actors write only rows their driver gave
them. The file holds a small JSON (pid, host, command, argv, start time) so that a refused second
driver can say who holds it.

- A second driver is refused at once (`LockedError`, one line naming the holder) or, with `wait`,
  waits until the lock is free.
- The kernel releases a `flock` when its holder dies, however it dies; the info file stays behind.
  The next driver gets the lock, logs that it takes over from the dead process, and rewrites the
  file. A driver that ends normally removes the file while it still holds the lock (a process that
  opened the old file in the meantime sees it gone and opens the new one).
- On a shared filesystem `flock` may not reach from one host to another. A lock file whose info
  names another host is therefore never taken over: the driver is refused naming that host, and the
  message says which file to remove once nothing of videolt runs there.
- The same process may take a lock it already holds (e.g. `videolt run` chaining stages); the lock
  is released when the outermost holder ends. Locks are not inherited across `fork`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator

from videolt.errors import LockedError

__all__ = ["LOCK_DIR", "Holder", "hold", "holders", "lock_path", "pid_alive"]

log = logging.getLogger(__name__)

LOCK_DIR = ".locks"
_POLL_S = 0.5  # seconds between tries while waiting
_GRACE_S = 0.2  # a driver refused is refused only after this long (a `holders` peek or a release in flight)
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_held: dict[tuple[int, str], list[int]] = {}  # (pid, lock path) -> [fd, depth]: the locks this process holds


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a lock, as its info file says."""

    pid: int
    host: str
    command: str
    started: float

    def describe(self) -> str:
        if self.pid < 0:
            return "another process (its lock file does not say which)"
        since = datetime.fromtimestamp(self.started).isoformat(sep=" ", timespec="seconds") if self.started else "?"
        return f"pid {self.pid} on {self.host} ({self.command}, since {since})"

    def to_dict(self) -> dict:
        return {"pid": self.pid, "host": self.host, "command": self.command, "started": self.started}


_UNKNOWN = Holder(-1, "?", "an unknown process", 0.0)
_GONE = Holder(-1, "?", "", 0.0)  # the lock file was replaced while we opened it


def lock_path(root: Path, name: str) -> Path:
    """`root/.locks/<name>.lock`; `name` is built from already validated feature-set and run names."""
    return Path(root) / LOCK_DIR / f"{name}.lock"


@contextlib.contextmanager
def hold(path: Path, what: str, command: str, *, wait: bool = False) -> Iterator[None]:
    """Hold the lock at `path` while the block runs; `what` names the locked thing in messages
    ("feature set 'r50'"), `command` the holder ("videolt extract")."""
    key = (os.getpid(), str(path))  # a forked child holds nothing of its parent's
    mine = _held.get(key)
    if mine is not None:  # this process holds it already
        mine[1] += 1
        try:
            yield
        finally:
            mine[1] -= 1
        return
    fd = _acquire(Path(path), what, command, wait)
    _held[key] = [fd, 1]
    try:
        yield
    finally:
        del _held[key]
        _release(Path(path), fd)


def holders(root: Path) -> dict[str, Holder]:
    """The locks under `root/.locks` that a live process holds now: {lock name: holder}."""
    out = {}
    for path in sorted((Path(root) / LOCK_DIR).glob("*.lock")):
        if (os.getpid(), str(path)) in _held:
            out[path.stem] = _holder_of(path) or _me("this process")
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            holder = _holder_of(path)
            if holder is not None and holder.host != socket.gethostname():
                out[path.stem] = holder  # another host's: its process may run (see the module docstring)
        except BlockingIOError:
            out[path.stem] = _holder_of(path) or _UNKNOWN
        finally:
            os.close(fd)
    return out


def _acquire(path: Path, what: str, command: str, wait: bool) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    told = False
    grace = time.monotonic() + _GRACE_S
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        busy = _try(fd, path, what, command)
        if busy is None:
            return fd
        os.close(fd)
        if busy is _GONE:
            continue
        other_host = busy.host not in ("?", socket.gethostname())
        if not wait and not other_host and time.monotonic() < grace:
            time.sleep(_GRACE_S / 4)
            continue
        if not wait:
            fix = (f"if nothing of videolt runs on {busy.host}, remove {path}" if other_host
                   else "wait for it to end, or pass --wait")
            raise LockedError(f"{what} is in use by {busy.describe()}; {fix}")
        if not told:
            log.info("waiting for %s, in use by %s", what, busy.describe())
            told = True
        time.sleep(_POLL_S)


def _try(fd: int, path: Path, what: str, command: str) -> Holder | None:
    """Take the lock on `fd` and write our info (None), or say who holds it (`_GONE`: the file was replaced)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        flocked = True
    except BlockingIOError:
        return (_holder_of(path) or _UNKNOWN) if _same_file(fd, path) else _GONE
    except OSError as e:
        if e.errno not in _UNSUPPORTED:
            raise
        log.warning("%s: this filesystem has no flock; relying on the lock's info file alone", path)
        flocked = False
    if not _same_file(fd, path):  # its holder removed it as we opened it: open the new one
        return _GONE
    previous = _holder_of(path)
    if previous is not None and previous.pid != os.getpid():
        if previous.host != socket.gethostname():
            return previous  # flock may not reach across hosts: it may still run there
        if not flocked and pid_alive(previous.pid):
            return previous
        log.warning("%s: taking over the lock of %s, which ended without releasing it", what, previous.describe())
    _write_info(fd, _me(command))
    return None


def _release(path: Path, fd: int) -> None:
    try:
        if _same_file(fd, path):
            path.unlink()
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (a zombie counts until it is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _me(command: str) -> Holder:
    return Holder(os.getpid(), socket.gethostname(), command, time.time())


def _write_info(fd: int, holder: Holder) -> None:
    data = json.dumps({**holder.to_dict(), "argv": sys.argv}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data + b"\n", 0)


def _holder_of(path: Path) -> Holder | None:
    """The info file's holder; None when it is empty, unreadable or gone."""
    try:
        info = json.loads(path.read_text() or "null")
        return Holder(int(info["pid"]), str(info["host"]), str(info["command"]), float(info["started"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None
