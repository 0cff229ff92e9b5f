"""The workdir manifest: one SQLite row per video plus one state row per (stage, video).

SQLite in WAL mode lets many processes and threads read while one writes; every update is its own
short `BEGIN IMMEDIATE` transaction with a generous busy timeout, so concurrent workers never lose an
outcome. Each thread or process opens its own `Manifest`.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from datetime import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Iterable, Sequence, TypeVar

from videolt import atomic
from videolt.errors import IntegrityError, WorkdirError

SCHEMA_VERSION = 1
STATUSES = ("pending", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    idx      INTEGER PRIMARY KEY,
    video_id TEXT NOT NULL UNIQUE,
    split    TEXT NOT NULL,
    labels   TEXT NOT NULL,
    id_valid INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    stage       TEXT NOT NULL,
    idx         INTEGER NOT NULL REFERENCES videos(idx),
    status      TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    failure     TEXT,
    message     TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    started_at  REAL,
    finished_at REAL,
    info        TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (stage, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS state_by_status ON state (stage, status, failure);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class VideoRow:
    index: int
    video_id: str
    split: str
    labels: tuple[int, ...]
    id_valid: bool


@dataclass(frozen=True)
class StageState:
    stage: str
    index: int
    status: str
    failure: str | None
    message: str | None
    attempts: int
    started_at: float | None
    finished_at: float | None
    info: dict


_F = TypeVar("_F", bound=Callable)
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def backup_path(path: str | Path) -> Path:
    """Where the manifest's backup lives: `manifest.sqlite.bak` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".bak")


def damaged(path: Path, error: Exception) -> IntegrityError:
    """The one-line error for a damaged manifest: what SQLite said, the backup and how to restore it."""
    bak = backup_path(path)
    if bak.is_file():
        when = datetime.fromtimestamp(bak.stat().st_mtime).isoformat(sep=" ", timespec="seconds")
        fix = (f"restore its backup from the end of the last stage ({bak.name}, {when}) with "
               f"`videolt check {path.parent} --restore-manifest`")
    else:
        fix = f"there is no backup ({bak.name}) to restore"
    return IntegrityError(f"{path}: the manifest is damaged ({error}); {fix}")


def quick_check(path: str | Path) -> str:
    """SQLite's `quick_check` of a database file opened read-only: "ok", or what is wrong."""
    try:
        db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        return str(e)
    try:
        return str(db.execute("PRAGMA quick_check").fetchone()[0])
    except sqlite3.DatabaseError as e:
        return str(e)
    finally:
        db.close()


def _is_damage(error: sqlite3.DatabaseError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    return type(error) is sqlite3.DatabaseError


def _guarded(fn: _F) -> _F:
    """Turn SQLite's "malformed" and "not a database" into the one-line `damaged` error."""

    @functools.wraps(fn)
    def call(self: "Manifest", *args: object, **kwargs: object) -> object:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            if _is_damage(e):
                raise damaged(self.path, e) from e  # the log keeps SQLite's traceback
            raise

    return call  # type: ignore[return-value]


class Manifest:
    """A connection to `WORKDIR/manifest.sqlite`."""

    @_guarded
    def __init__(self, path: str | Path, *, timeout: float = 60.0):
        self.path = Path(path)
        if not self.path.is_file():
            if backup_path(self.path).is_file():  # a workdir whose manifest was lost
                raise damaged(self.path, FileNotFoundError("no such file"))
            raise WorkdirError(f"{self.path}: no manifest (is this folder a whole workdir?)")
        if self.path.stat().st_size == 0:  # SQLite would open it as a new, empty database
            raise damaged(self.path, sqlite3.DatabaseError("the file is empty"))
        self._db = _connect(self.path, timeout)

    @classmethod
    def create(cls, path: str | Path, rows: Iterable[tuple[str, str, Sequence[int], bool]]) -> "Manifest":
        """Create the manifest with `(video_id, split, labels, id_valid)` rows, indexed in order."""
        path = Path(path)
        db = _connect(path, 60.0)
        db.executescript(_SCHEMA)
        with _immediate(db):
            db.executemany(
                "INSERT INTO videos (idx, video_id, split, labels, id_valid) VALUES (?, ?, ?, ?, ?)",
                ((i, vid, split, ",".join(map(str, labels)), int(valid))
                 for i, (vid, split, labels, valid) in enumerate(rows)),
            )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        db.close()
        return cls(path)

    def close(self) -> None:
        self._db.close()

    @_guarded
    def quick_check(self) -> str:
        """SQLite's `quick_check`: "ok", or the first thing it found wrong."""
        return str(self._db.execute("PRAGMA quick_check").fetchone()[0])

    @_guarded
    def backup(self, dest: str | Path | None = None) -> Path:
        """Copy the manifest with SQLite's backup API (a consistent snapshot while others write) to
        `dest` (default `backup_path`), atomically, as one self-contained file. A copy that fails
        SQLite's `quick_check` replaces nothing and raises the `damaged` error."""
        dest = Path(dest) if dest is not None else backup_path(self.path)

        def write(tmp: Path) -> None:
            copy = sqlite3.connect(tmp, isolation_level=None)
            try:
                self._db.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
                result = copy.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                copy.close()
            if result != "ok":
                raise damaged(self.path, sqlite3.DatabaseError(result))

        return atomic.replace(dest, write, unique=True)

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- videos ---------------------------------------------------------------------------------
    @_guarded
    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM videos").fetchone()[0]

    @_guarded
    def videos(self, splits: Sequence[str] | None = None) -> list[VideoRow]:
        sql, args = "SELECT idx, video_id, split, labels, id_valid FROM videos", []
        if splits:
            sql += f" WHERE split IN ({','.join('?' * len(splits))})"
            args = list(splits)
        return [_video(r) for r in self._db.execute(sql + " ORDER BY idx", args)]

    @_guarded
    def video(self, index: int) -> VideoRow:
        row = self._db.execute(
            "SELECT idx, video_id, split, labels, id_valid FROM videos WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise KeyError(f"no video with index {index}")
        return _video(row)

    @_guarded
    def by_id(self, video_id: str) -> VideoRow | None:
        row = self._db.execute(
            "SELECT idx, video_id, split, labels, id_valid FROM videos WHERE video_id = ?", (video_id,)).fetchone()
        return None if row is None else _video(row)

    # -- stage state ----------------------------------------------------------------------------
    @_guarded
    def record(self, stage: str, index: int, status: str, *, failure: str | None = None,
               message: str | None = None, info: dict | None = None, attempt: bool = True) -> None:
        """Record one video's outcome for a stage in its own transaction; `info` is merged."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        now = time.time()
        with _immediate(self._db):
            old = self._db.execute("SELECT info, started_at FROM state WHERE stage = ? AND idx = ?",
                                   (stage, index)).fetchone()
            merged = {**(json.loads(old[0]) if old else {}), **(info or {})}
            self._db.execute(
                """INSERT INTO state (stage, idx, status, failure, message, attempts, started_at,
                                      finished_at, info)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (stage, idx) DO UPDATE SET
                     status = excluded.status, failure = excluded.failure, message = excluded.message,
                     attempts = state.attempts + ?, finished_at = excluded.finished_at,
                     info = excluded.info""",
                (stage, index, status, failure, message, int(attempt), now, now,
                 json.dumps(merged, sort_keys=True), int(attempt)),
            )

    @_guarded
    def record_many(self, stage: str, outcomes: Iterable[tuple[int, str, str | None, str | None, dict]]) -> None:
        """Record many `(index, status, failure, message, info)` outcomes in one transaction, one
        attempt each, replacing any earlier state of those videos (bulk registration, simulations)."""
        outcomes = list(outcomes)
        if any(o[1] not in STATUSES for o in outcomes):
            raise ValueError(f"status must be one of {STATUSES}")
        now = time.time()
        with _immediate(self._db):
            self._db.executemany(
                "INSERT OR REPLACE INTO state (stage, idx, status, failure, message, attempts, started_at, "
                "finished_at, info) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)",
                ((stage, i, status, failure, message, now, now, json.dumps(info, sort_keys=True))
                 for i, status, failure, message, info in outcomes))

    @_guarded
    def states(self, stage: str, indices: Collection[int] | None = None) -> dict[int, StageState]:
        rows = self._db.execute(
            "SELECT stage, idx, status, failure, message, attempts, started_at, finished_at, info "
            "FROM state WHERE stage = ?", (stage,))
        wanted = None if indices is None else set(indices)
        out = {}
        for r in rows:
            if wanted is None or r[1] in wanted:
                out[r[1]] = StageState(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]))
        return out

    def todo(self, stage: str, splits: Sequence[str] | None = None, retry: Collection[str] = (),
             max_attempts: int | None = None) -> list[VideoRow]:
        """Videos not done and not failed, plus failed ones whose class is in `retry` (below `max_attempts`)."""
        states = {i: (s.status, s.failure, s.attempts) for i, s in self.states(stage).items()}
        out = []
        for v in self.videos(splits):
            status, failure, attempts = states.get(v.index, ("pending", None, 0))
            if status == "done":
                continue
            if status == "failed":
                if failure not in retry or (max_attempts is not None and attempts >= max_attempts):
                    continue
            out.append(v)
        return out

    @_guarded
    def counts(self, stage: str) -> dict:
        """`{"done": n, "pending": n, "failed": {class: n}}` over all videos."""
        done, failed = 0, {}
        for status, failure, n in self._db.execute(
                "SELECT status, failure, COUNT(*) FROM state WHERE stage = ? GROUP BY status, failure", (stage,)):
            if status == "done":
                done += n
            elif status == "failed":
                failed[failure or "unknown"] = failed.get(failure or "unknown", 0) + n
        return {"done": done, "pending": len(self) - done - sum(failed.values()), "failed": failed}

    @_guarded
    def stages(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT stage FROM state ORDER BY stage")]

    @_guarded
    def meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta"))


def _connect(path: Path, timeout: float) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=True)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    return db


class _immediate:
    """`BEGIN IMMEDIATE ... COMMIT`: take the write lock up front so read-modify-write cannot race."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _video(r: tuple) -> VideoRow:
    try:
        labels = tuple(int(c) for c in r[3].split(",")) if r[3] else ()
    except (ValueError, AttributeError):
        raise WorkdirError(f"manifest.sqlite: video {r[1]} (index {r[0]}) has labels {r[3]!r}, not comma-separated "
                           "class ids; the manifest was edited or damaged") from None
    return VideoRow(r[0], r[1], r[2], labels, bool(r[4]))
