"""The workdir: one folder holding a dataset's label lists, manifest, videos, features, runs, reports."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Iterator, Sequence

from videolt import __version__, atomic
from videolt.data.ids import INVALID_ID, LIST_ID, invalid_id_message
from videolt.data.labels import COUNT_FILE, SPLIT_FILES, LabelSet, load_labels
from videolt.data import locks
from videolt.data.manifest import Manifest, backup_path
from videolt.errors import LOG_NAME, UsageError, VideoltError, WorkdirError

log = logging.getLogger(__name__)

WORKDIR_FILE = "videolt.json"
VIDEOS_LOCK = ("videos", "the workdir's videos (download, import-videos)")  # see Workdir.lock
DOWNLOAD_STAGE = "download"  # the download stage's name in the manifest (data.download.STAGE)
WORKDIR_SCHEMA = 1
LABEL_FILES = (COUNT_FILE, *SPLIT_FILES.values())


class Workdir:
    """Paths and entry points of one workdir; no state beyond its root."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    # -- creation -------------------------------------------------------------------------------
    @classmethod
    def init(cls, root: str | Path, labels_dir: str | Path) -> "Workdir":
        """Create the layout, copy the lists and fill the manifest; a rerun with the same lists is a no-op."""
        wd = cls(root)
        labels = load_labels(labels_dir)
        digest = labels_digest(Path(labels_dir))
        if (wd.root / WORKDIR_FILE).is_file():
            meta = wd.meta()
            if meta.get("labels_sha256") != digest:
                raise WorkdirError(
                    f"{wd.root}: already a workdir made from other label lists "
                    f"({meta.get('labels_source')}); use a new workdir for {Path(labels_dir).resolve()}")
            return wd
        if wd.root.exists() and not wd.root.is_dir():
            raise WorkdirError(f"{wd.root}: a file, not a folder; name a new or empty folder")
        wd.root.mkdir(parents=True, exist_ok=True)
        # A half-made workdir from a killed init is ours to finish; a folder holding anything else is not.
        foreign = {p.name for p in wd.root.iterdir() if not p.name.startswith("manifest.sqlite")} - _LAYOUT
        if foreign:
            raise WorkdirError(f"{wd.root}: not empty and not a videolt workdir ({sorted(foreign)[0]}, ...)")
        for d in (wd.labels_dir, wd.videos_dir, wd.features_dir, wd.runs_dir, wd.reports_dir):
            d.mkdir(exist_ok=True)
        for name in LABEL_FILES:
            shutil.copyfile(Path(labels_dir) / name, wd.labels_dir / name)
        tmp = wd.root / "manifest.sqlite.tmp"
        for stale in wd.root.glob("manifest.sqlite.tmp*"):
            stale.unlink()
        with Manifest.create(tmp, _rows(labels)) as m:
            _record_invalid_ids(m)
        for suffix in ("-wal", "-shm"):
            Path(str(tmp) + suffix).unlink(missing_ok=True)
        tmp.replace(wd.manifest_path)
        meta = {"schema_version": WORKDIR_SCHEMA, "videolt_version": __version__,
                "labels_source": str(Path(labels_dir).resolve()), "labels_sha256": digest,
                "videos": sum(len(s) for s in labels.splits.values()), "created": time.time()}
        atomic.write_text(wd.root / WORKDIR_FILE, json.dumps(meta, indent=2) + "\n")
        for name, split in labels.splits.items():
            if not len(split):
                log.warning("%s lists no videos: split %s is empty, so training or scoring on it will fail",
                            wd.labels_dir / SPLIT_FILES[name], name)
        wd.backup_manifest()
        return wd

    @classmethod
    def open(cls, root: str | Path) -> "Workdir":
        wd = cls(root)
        if not (wd.root / WORKDIR_FILE).is_file():
            raise WorkdirError(f"{wd.root}: not a videolt workdir (run `videolt init {root} --labels DIR`)")
        meta = wd.meta()
        if meta.get("schema_version") != WORKDIR_SCHEMA:
            raise WorkdirError(f"{wd.root}/{WORKDIR_FILE}: schema {meta.get('schema_version')} is not "
                               f"{WORKDIR_SCHEMA}")
        return wd

    def meta(self) -> dict:
        path = self.root / WORKDIR_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise WorkdirError(f"{path}: unreadable ({e})") from None

    # -- paths ----------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.sqlite"

    @property
    def labels_dir(self) -> Path:
        return self.root / "labels"

    @property
    def videos_dir(self) -> Path:
        return self.root / "videos"

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def manifest_backup_path(self) -> Path:
        return backup_path(self.manifest_path)

    @property
    def log_path(self) -> Path:
        """`logs/videolt.log`: the tracebacks behind the one-line errors a command printed."""
        return self.root / "logs" / LOG_NAME

    def manifest(self) -> Manifest:
        """A new connection (one per thread or process)."""
        return Manifest(self.manifest_path)

    def backup_manifest(self, *, quiet: bool = False) -> Path | None:
        """Back up the manifest (SQLite backup API) to `manifest.sqlite.bak`, as every stage does when it
        ends; a failure is logged (`quiet`: at debug level) and the previous backup kept, never raised."""
        try:
            with self.manifest() as m:
                return m.backup()
        except (OSError, VideoltError, sqlite3.Error) as e:
            log.log(logging.DEBUG if quiet else logging.WARNING, "manifest not backed up (the previous backup "
                    "is kept): %s", e)
            return None

    @contextlib.contextmanager
    def stage(self, command: str, held: Sequence[tuple[str, str]], *, wait: bool = False) -> Iterator[None]:
        """Run a stage that records into the manifest: hold its locks (`lock`), and back the manifest
        up when it ends, however it ends (an interrupted stage's outcomes are kept too)."""
        with self.lock(command, held, wait=wait):
            try:
                yield
            except BaseException:  # the stage's own error is the one line; a failed backup only logs
                self.backup_manifest(quiet=True)
                raise
            self.backup_manifest()

    @contextlib.contextmanager
    def lock(self, command: str, held: Sequence[tuple[str, str]], *, wait: bool = False) -> Iterator[None]:
        """Hold the locks `held` ((name, what) pairs from `features_lock`, `run_lock`, `VIDEOS_LOCK`) for
        `command`, taken in name order so that two waiting drivers never hold one each."""
        with contextlib.ExitStack() as stack:
            for name, what in sorted(held):
                stack.enter_context(locks.hold(self.lock_path(name), what, command, wait=wait))
            yield

    def features_lock(self, name: str) -> tuple[str, str]:
        """The lock of feature set `name`: one process extracts or imports it at a time."""
        self.features_path(name)  # the name is checked
        return f"features-{name}", f"feature set {name!r}"

    def run_lock(self, run: str) -> tuple[str, str]:
        """The lock of run folder `run`: one process trains, decouples into or evaluates it at a time."""
        self.run_dir(run)
        return f"run-{run}", f"run {run!r}"

    def lock_path(self, name: str) -> Path:
        """The lock file of a stage or run (`videolt.data.locks`): `.locks/<name>.lock`."""
        return locks.lock_path(self.root, name)

    def labels(self) -> LabelSet:
        return load_labels(self.labels_dir)

    def video_path(self, video_id: str, ext: str) -> Path:
        """`videos/<first 2 chars>/<id>.<ext>`; the ID is checked so it can never escape the folder."""
        if not LIST_ID.match(video_id) or not ext.isalnum():
            raise UsageError(f"video id {video_id!r} / extension {ext!r} cannot name a file")
        return self.videos_dir / video_id[:2] / f"{video_id}.{ext}"

    def find_video(self, video_id: str) -> Path | None:
        folder = self.video_path(video_id, "x").parent
        hits = sorted(p for p in folder.glob(f"{video_id}.*") if p.suffix[1:].isalnum()) if folder.is_dir() else []
        return hits[0] if hits else None

    def features_path(self, name: str) -> Path:
        return self.inside(self.features_dir / f"{_safe_name(name, 'feature set')}.zarr")

    def run_dir(self, run: str) -> Path:
        return self.inside(self.runs_dir / _safe_name(run, "run"))

    def inside(self, path: str | Path) -> Path:
        """Make `path` absolute and refuse anything outside the workdir.

        The check is lexical (`..` is normalised away, links are not followed): a link that
        `import-videos --mode symlink` placed inside the workdir on the user's request is inside.
        """
        p = Path(path)
        p = Path(os.path.normpath(p if p.is_absolute() else self.root / p))
        if p != self.root and self.root not in p.parents:
            raise UsageError(f"{path}: outside the workdir {self.root}")
        return p


_LAYOUT = {"labels", "videos", "features", "runs", "reports", "logs"}


def labels_digest(labels_dir: Path) -> str:
    """sha256 over the four list files, so `init` can tell the same lists from different ones."""
    h = hashlib.sha256()
    for name in LABEL_FILES:
        h.update(name.encode() + b"\0" + (labels_dir / name).read_bytes())
    return h.hexdigest()


def _rows(labels: LabelSet):
    from videolt.data.ids import is_valid_id

    for name, split in labels.splits.items():
        for vid, lab in zip(split.ids, split.labels):
            yield vid, name, lab, is_valid_id(vid)


def _record_invalid_ids(manifest: Manifest) -> None:
    """Record the IDs no URL can be made from as failed `invalid_id` downloads, costing no attempt:
    they are never fetched, so they are never pending."""
    for v in manifest.videos():
        if not v.id_valid:
            manifest.record(DOWNLOAD_STAGE, v.index, "failed", failure=INVALID_ID,
                            message=invalid_id_message(v.video_id), attempt=False)


def _safe_name(name: str, what: str) -> str:
    if not name or not all(c.isalnum() or c in "-_.=+" for c in name) or name.startswith("."):
        raise UsageError(f"{what} name {name!r}: use letters, digits and - _ . = + only")
    return name


