"""Importers: bring existing data into a workdir instead of producing it.

- `import_features`: the official VideoLT release (`<id>.npy`, float32 [150, D] per video) into a
  feature set, row i = manifest index i, each file's outcome recorded in stage `features:<name>`.
- `import_videos`: a folder of `<id>.<ext>` video files registered as downloaded.

Both are resumable and idempotent: the feature store's `status` and the manifest's `download`
stage are the record of what is done, and a rerun only touches what is not.
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import av
import numpy as np
from tqdm import tqdm

from videolt import atomic
from videolt.config import field
from videolt.data.integrity import redo_damaged
from videolt.data.manifest import Manifest, VideoRow
from videolt.data.protocol import FRAMES
from videolt.data.store import STATUS_DONE, FeatureStore
from videolt.data.workdir import VIDEOS_LOCK, Workdir
from videolt.errors import ConfigError, UsageError

__all__ = ["ImportFailure", "ImportFeaturesConfig", "ImportVideosConfig", "import_features", "import_videos"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")


class ImportFailure(str, enum.Enum):
    """Why an imported file was not accepted; the value is what the manifest stores."""

    MISSING = "missing"  # no file for this video
    UNREADABLE = "unreadable"  # truncated, not an .npy / not a media file
    WRONG_SHAPE = "wrong_shape"  # not a float array [frames, dim]
    NON_FINITE = "non_finite"  # NaN or Inf (or beyond the store's float range)
    NO_VIDEO_STREAM = "no_video_stream"  # a media file without a video stream

    def __str__(self) -> str:
        return self.value


class _Rejected(Exception):
    """One file's failure class and reason (raised and caught inside this module only)."""

    def __init__(self, failure: ImportFailure, reason: str):
        super().__init__(reason)
        self.failure = failure


@dataclass(frozen=True, kw_only=True)
class ImportFeaturesConfig:
    """One official feature release (`<id>.npy`, float32 [frames, D] per video) into one feature set."""

    name: str = field("", "feature set name (WORKDIR/features/<name>.zarr); required")
    npy_dir: str = field("", "the release folder: <id>.npy float32 [150, D]; required")
    dtype: Literal["float16", "float32"] = field("float16", "storage dtype")
    compression: Literal["none", "zstd"] = field("none", "feature chunks: none (raw, read without zarr: faster "
                                                 "to stream in training) or zstd (smaller)")
    workers: int = field(4, "parallel file readers")
    splits: tuple[str, ...] = field((), "only these splits (train, val, test); default all")
    frames: int = field(FRAMES, "frames per video in the release")
    dim: int | None = field(None, "feature size D (default: from the first good file)")

    def __post_init__(self) -> None:
        if not (self.name and self.npy_dir):
            raise ConfigError("import_features: give name (--name) and npy_dir (--npy-dir)")


@dataclass(frozen=True, kw_only=True)
class ImportVideosConfig:
    """A folder of `<id>.<ext>` video files obtained elsewhere, registered as downloaded."""

    dir: str = field("", "folder of <id>.<ext> video files; required")
    mode: Literal["link", "copy", "symlink"] = field("link", "hard link, copy or symlink into the workdir")

    def __post_init__(self) -> None:
        if not self.dir:
            raise ConfigError("import_videos: give dir (--dir), the folder of video files")
        if self.mode not in ("link", "copy", "symlink"):
            raise ConfigError(f"import_videos.mode must be 'link', 'copy' or 'symlink', got {self.mode!r}")


def _as_workdir(workdir: Workdir | str | Path) -> Workdir:
    return workdir if isinstance(workdir, Workdir) else Workdir.open(workdir)


def _bounded_map(fn: Callable[[_T], _R], items: Iterable[_T], workers: int) -> Iterator[_R]:
    """`fn` over `items` on a thread pool, results as they finish, a few tasks in flight at a time.

    Submitting 256k tasks at once would hold 256k futures; a window keeps memory flat.
    """
    window = max(1, workers) * 4
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="import") as pool:
        pending: set[Future[_R]] = set()
        for item in items:
            pending.add(pool.submit(fn, item))
            if len(pending) >= window:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in done)
        for f in pending:
            yield f.result()


# -- features ------------------------------------------------------------------------------------


def _read_npy(path: Path, frames: int, dim: int | None) -> np.ndarray:
    """Load one release file and check it is a finite float array [frames, dim]."""
    if not path.is_file():
        raise _Rejected(ImportFailure.MISSING, f"no file {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise _Rejected(ImportFailure.UNREADABLE, f"{path}: not a readable .npy file ({exc})") from None
    if not isinstance(data, np.ndarray):  # an .npz archive
        raise _Rejected(ImportFailure.UNREADABLE, f"{path}: not a single .npy array")
    want = f"[{frames}, {dim if dim is not None else 'D'}]"
    if data.dtype.kind != "f" or data.ndim != 2 or data.shape[0] != frames or dim not in (None, data.shape[1]):
        raise _Rejected(ImportFailure.WRONG_SHAPE, f"{path}: {data.dtype} {list(data.shape)}, expected float {want}")
    finite = np.isfinite(data).all(axis=1)
    if not finite.all():
        raise _Rejected(ImportFailure.NON_FINITE, f"{path}: NaN/Inf in frame {int(np.flatnonzero(~finite)[0])}")
    return data


def _infer_dim(videos: Sequence[VideoRow], npy_dir: Path, frames: int) -> int:
    """D of the first good file, in manifest order."""
    for v in videos:
        try:
            return int(_read_npy(npy_dir / f"{v.video_id}.npy", frames, None).shape[1])
        except _Rejected:
            continue
    raise UsageError(f"{npy_dir}: no readable <id>.npy float [{frames}, D] file for any of {len(videos)} videos")


def import_features(workdir: Workdir | str | Path, config: ImportFeaturesConfig, *,
                    progress: bool = True, wait: bool = False) -> dict[str, Any]:
    """Import `<npy_dir>/<id>.npy` files into feature set `config.name`; returns counts of what happened.

    The set has a row for every manifest video (only `splits`, if given, are imported); D is
    taken from the first good file unless given. Rows already done in the store are skipped, so
    a killed import resumes where it stopped. Each video's outcome goes to the manifest stage
    `features:<name>`: done, or failed as missing / unreadable / wrong_shape / non_finite (the
    store marks the latter three failed and leaves missing rows at status 0). `compression` is
    the store's: "none" or "zstd" (see `FeatureStore.create`). Done rows whose data is missing or
    short are imported again. One process writes a feature set at a time (`wait`: wait for it).
    """
    wd = _as_workdir(workdir)
    with wd.stage("videolt import-features", [wd.features_lock(config.name)], wait=wait):
        return _import_features(wd, config, progress)


def _import_features(wd: Workdir, config: ImportFeaturesConfig, progress: bool) -> dict[str, Any]:
    npy_dir = Path(config.npy_dir).resolve()
    if not npy_dir.is_dir():
        raise UsageError(f"{npy_dir}: not a directory of <id>.npy files")
    stage = f"features:{config.name}"
    path = wd.features_path(config.name)
    manifest = wd.manifest()
    try:
        everything = manifest.videos()
        selected = manifest.videos(list(config.splits)) if config.splits else everything
        store = _open_feature_set(path, config, npy_dir, everything, selected)
        redo_damaged(store, manifest, stage)
        status = store.status()
        skipped = _reconcile(manifest, stage, [v for v in selected if status[v.index] == STATUS_DONE])
        todo = [v for v in selected if status[v.index] != STATUS_DONE]
        counts: dict[str, Any] = {"videos": len(selected), "skipped": skipped, "done": 0, "failed": {}}
        one = functools.partial(_import_one, store, npy_dir, stage, config.frames)
        bar = tqdm(total=len(todo), desc=f"import {config.name}", unit="video", file=sys.stderr, disable=not progress)
        with bar:
            for v, failure, message in _bounded_map(one, todo, config.workers):
                _record_import(manifest, stage, v, failure, message, counts)
                bar.update()
    finally:
        manifest.close()
    logger.info("imported %s into %s: %s", npy_dir, path, counts)
    return counts


def _open_feature_set(path: Path, config: ImportFeaturesConfig, npy_dir: Path, everything: Sequence[VideoRow],
                      selected: Sequence[VideoRow]) -> FeatureStore:
    """The feature set with a row per manifest video; D is the config's, the existing set's or the first good
    file's."""
    dim = config.dim
    if dim is None:
        dim = FeatureStore.open(path).dim if path.exists() else _infer_dim(selected, npy_dir, config.frames)
    return FeatureStore.create(
        path, [v.video_id for v in everything], frames=config.frames, dim=dim, dtype=config.dtype,
        compression=config.compression,
        attrs={"source": "import", "npy_dir": str(npy_dir), "dtype": config.dtype},
    )


def _import_one(store: FeatureStore, npy_dir: Path, stage: str, frames: int,
                v: VideoRow) -> tuple[VideoRow, ImportFailure | None, str | None]:
    """Copy one video's file into its row; a rejected file comes back as (failure, message), its row marked
    failed unless the file is missing."""
    try:
        data = _read_npy(npy_dir / f"{v.video_id}.npy", frames, store.dim)
        try:
            store.write_row(v.index, data, frames)  # the release keeps no decoded-frame count
        except UsageError as exc:  # finite float32 beyond the float16 range
            raise _Rejected(ImportFailure.NON_FINITE, str(exc)) from None
    except _Rejected as rej:
        if rej.failure is not ImportFailure.MISSING:
            store.mark_failed(v.index)
        return v, rej.failure, f"[{stage}] {v.video_id}: {rej}"
    return v, None, None


def _record_import(manifest: Manifest, stage: str, v: VideoRow, failure: ImportFailure | None, message: str | None,
                   counts: dict[str, Any]) -> None:
    """One video's outcome into the manifest and the counts."""
    if failure is None:
        manifest.record(stage, v.index, "done", info={"source": "import"})
        counts["done"] += 1
    else:
        manifest.record(stage, v.index, "failed", failure=failure.value, message=message)
        counts["failed"][failure.value] = counts["failed"].get(failure.value, 0) + 1
        logger.debug("%s", message)


def _reconcile(manifest: Manifest, stage: str, done: Sequence[VideoRow]) -> int:
    """Record rows the store holds as done but the manifest does not (a run killed in between)."""
    states = manifest.states(stage, [v.index for v in done])
    for v in done:
        state = states.get(v.index)
        if state is None or state.status != "done":
            manifest.record(stage, v.index, "done", info={"source": "import"}, attempt=False)
    return len(done)


# -- videos --------------------------------------------------------------------------------------


def _check_video(path: Path) -> None:
    """Open with PyAV and decode the first frame of the first video stream."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise _Rejected(ImportFailure.NO_VIDEO_STREAM, f"{path}: no video stream")
            for _ in container.decode(video=0):
                return
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise _Rejected(ImportFailure.UNREADABLE, f"{path}: cannot be decoded ({exc})") from None
    raise _Rejected(ImportFailure.UNREADABLE, f"{path}: no video frame decodes")


def _place(src: Path, dst: Path, mode: str) -> None:
    """Put `src` at `dst` atomically (a temporary name, then a rename)."""
    dst.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        if mode == "link":
            try:
                os.link(src, tmp)
            except OSError as exc:
                raise UsageError(
                    f"{src}: cannot hard-link into {dst.parent} ({exc.strerror}); use mode 'copy' or 'symlink'"
                ) from None
        elif mode == "symlink":
            os.symlink(src.resolve(), tmp)
        else:
            shutil.copyfile(src, tmp)

    atomic.replace(dst, write, unique=True)


def import_videos(workdir: Workdir | str | Path, config: ImportVideosConfig, *,
                  progress: bool = True, wait: bool = False) -> dict[str, Any]:
    """Register the `<id>.<ext>` video files of `config.dir` as downloaded; returns counts.

    A file whose stem is a manifest ID is checked to open as a video (a video stream whose first
    frame decodes), then hard-linked (`link`), symlinked or copied to `videos/<2>/<id>.<ext>` and
    recorded in stage `download` as done with info {path, bytes, source: "import"}; a bad file is
    recorded failed (unreadable / no_video_stream). Videos already done are left alone; files
    whose stem is no manifest ID are only counted (`unknown_id`). It holds the download stage's
    lock (`wait`: wait for the process holding it, else refuse).
    """
    wd = _as_workdir(workdir)
    with wd.stage("videolt import-videos", [VIDEOS_LOCK], wait=wait):
        return _import_videos(wd, config, progress)


def _import_videos(wd: Workdir, config: ImportVideosConfig, progress: bool) -> dict[str, Any]:
    src_dir = Path(config.dir)
    if not src_dir.is_dir():
        raise UsageError(f"{src_dir}: not a directory of <id>.<ext> video files")
    files = sorted(p for p in src_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    counts: dict[str, Any] = {"files": len(files), "unknown_id": 0, "skipped": 0, "done": 0, "failed": {}}
    manifest = wd.manifest()
    try:
        rows = {v.video_id: v for v in manifest.videos()}
        states = manifest.states("download")
        for src in tqdm(files, desc="import videos", unit="file", file=sys.stderr, disable=not progress):
            video = rows.get(src.stem)
            ext = src.suffix[1:].lower()
            if video is None or not ext.isalnum():
                counts["unknown_id"] += 1
                continue
            state = states.get(video.index)
            if state is not None and state.status == "done" and (wd.root / state.info.get("path", "")).is_file():
                counts["skipped"] += 1
                continue
            try:
                _check_video(src)
            except _Rejected as rej:
                manifest.record("download", video.index, "failed", failure=rej.failure.value,
                                message=f"[download] {video.video_id}: {rej}", info={"source": "import"})
                counts["failed"][rej.failure.value] = counts["failed"].get(rej.failure.value, 0) + 1
                continue
            dst = wd.video_path(video.video_id, ext)
            _place(src, dst, config.mode)
            info = {"path": str(dst.relative_to(wd.root)), "bytes": src.stat().st_size, "source": "import"}
            manifest.record("download", video.index, "done", info=info)
            counts["done"] += 1
    finally:
        manifest.close()
    logger.info("imported videos from %s: %s", src_dir, counts)
    return counts
