"""The download stage: fetch videos by ID with yt-dlp's embedded API, paced, resumable, classified.

`fetch_one` fetches one video into `videos/<2 chars>/<id>.<ext>` (temp name first, then an atomic
rename) and returns a `FetchResult`; it never raises for a video's own failure. `download_pending`
runs it over the manifest's pending videos with a few worker threads sharing one `TokenBucket` and
one `CircuitBreaker`, recording every attempt as it finishes. See `reference/download.md`.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
from collections import Counter, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yt_dlp
from tqdm import tqdm
from yt_dlp.utils import DownloadError

from videolt.data.failures import RETRYABLE, DownloadFailure, classify
from videolt.data.ids import is_valid_id
from videolt.data.manifest import Manifest, VideoRow
from videolt.data.pacing import CircuitBreaker, TokenBucket
from videolt.data.workdir import Workdir
from videolt.errors import ConfigError, StageError, UsageError

log = logging.getLogger(__name__)

STAGE = "download"
PARTIAL_DIR = ".partial"  # under videos/: one folder per running process, never a final path
YTDLP_VERSION: str = yt_dlp.version.__version__

YdlFactory = Callable[[dict[str, Any]], yt_dlp.YoutubeDL]


@dataclass(frozen=True)
class DownloadConfig:
    """How videos are fetched and paced; the yt-dlp params are derived from it in `ydl_params`."""

    url_template: str = "https://www.youtube.com/watch?v={id}"  # `{id}` is replaced by the video ID
    max_short_side: int = 360  # prefer streams whose shorter side is at most this (yt-dlp `res:` sort)
    codec: str = "h264"  # preferred video codec (yt-dlp `vcodec:` sort)
    format: str = "bv*/b"  # one video-only stream (or the best combined one): no merge, no ffmpeg
    retries: int = 3  # yt-dlp's own retries of 5xx/transport errors within one attempt
    socket_timeout: float = 30.0  # seconds before a silent connection counts as failed
    max_attempts: int = 5  # attempts per video for retryable classes, over all runs
    backoff_base_s: float = 30.0  # wait after a video's first transient failure; doubles per attempt
    backoff_cap_s: float = 600.0  # longest wait between two attempts at one video
    rate_per_hour: float = 250.0  # videos started per hour (YouTube allows a guest ~300/h per IP)
    burst: int = 2  # videos that may start back to back after an idle spell
    jitter_s: float = 5.0  # up to this many random seconds added to each start
    pause_s: float = 900.0  # pause of all workers after a rate-limit answer
    pause_factor: float = 2.0  # each further rate-limit answer in a row multiplies the pause by this
    max_trips: int = 3  # rate-limit pauses in a row before the run stops
    min_free_gb: float = 5.0  # stop cleanly when the videos folder has less free disk than this
    workers: int = 2  # concurrent downloads (threads)

    def __post_init__(self) -> None:
        if "{id}" not in self.url_template:
            raise ConfigError(f"download.url_template {self.url_template!r} must contain {{id}}")
        positive = ("max_short_side", "retries", "socket_timeout", "max_attempts", "rate_per_hour", "burst", "workers",
                    "pause_s", "max_trips")
        for name in positive:
            if getattr(self, name) <= 0 and name != "retries":
                raise ConfigError(f"download.{name} must be > 0, got {getattr(self, name)}")
        for name in ("retries", "backoff_base_s", "backoff_cap_s", "jitter_s", "min_free_gb"):
            if getattr(self, name) < 0:
                raise ConfigError(f"download.{name} must be >= 0, got {getattr(self, name)}")

    def url(self, video_id: str) -> str:
        return self.url_template.format(id=video_id)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after the `attempt`-th (1-based) transient failure of one video."""
        return min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1))


@dataclass(frozen=True)
class FetchResult:
    """The outcome of one attempt at one video."""

    video_id: str
    status: str  # "done" or "failed"
    failure: DownloadFailure | None = None
    message: str | None = None
    path: Path | None = None
    bytes: int = 0
    format_id: str | None = None
    height: int | None = None
    width: int | None = None
    duration: float | None = None
    ytdlp_version: str = YTDLP_VERSION

    def info(self, root: Path) -> dict[str, Any]:
        """What the manifest keeps for a done video (`path` relative to the workdir `root`)."""
        return {"path": str(self.path.relative_to(root)) if self.path else None, "bytes": self.bytes,
                "format": self.format_id, "height": self.height, "width": self.width,
                "duration": self.duration, "ytdlp_version": self.ytdlp_version}


class _YdlLog:
    """yt-dlp's `logger`: chatter to debug, warnings kept (they may explain a later failure).

    Errors are demoted to debug too: `fetch_one` returns them and the manifest records them, so a
    batch with thousands of unavailable videos does not flood the terminal.
    """

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self._log = logging.getLogger(f"{__name__}.ytdlp")

    def debug(self, msg: str) -> None:
        self._log.debug(msg)

    info = debug
    error = debug

    def warning(self, msg: str) -> None:
        self.warnings.append(msg)
        self._log.info(msg)


def ydl_params(config: DownloadConfig, tmp_dir: Path, video_id: str,
               logger: _YdlLog | None = None) -> dict[str, Any]:
    """The one place the untyped yt-dlp params dict is built (from the typed config)."""
    def same_id(info: dict, *, incomplete: bool = False) -> str | None:  # refuse before downloading
        got = info.get("id")
        return None if got == video_id else f"returned id {got!r} is not the requested {video_id!r}"

    return {
        "format": config.format,
        "format_sort": [f"res:{config.max_short_side}", f"vcodec:{config.codec}", "+size"],
        "paths": {"home": str(tmp_dir), "temp": str(tmp_dir)},
        "outtmpl": {"default": "%(id)s.%(ext)s"},
        "retries": config.retries,
        "fragment_retries": config.retries,
        "extractor_retries": config.retries,
        "socket_timeout": config.socket_timeout,
        "skip_unavailable_fragments": False,
        "noplaylist": True,
        "ignoreerrors": False,
        "match_filter": same_id,
        "logger": logger or _YdlLog(),
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "overwrites": True,
    }


def _default_factory(params: dict[str, Any]) -> yt_dlp.YoutubeDL:
    return yt_dlp.YoutubeDL(params)


def _clean(message: str) -> str:
    return message.replace("\r", "").removeprefix("ERROR: ").strip()


def fetch_one(video_id: str, videos_dir: Path, config: DownloadConfig, *, tmp_root: Path | None = None,
              ydl_factory: YdlFactory | None = None) -> FetchResult:
    """Fetch one video into `videos_dir/<id[:2]>/<id>.<ext>`; a failure is returned, never raised.

    yt-dlp writes into a fresh folder under `tmp_root` (default `videos_dir/.partial`), removed
    whatever happens, and the finished file is renamed into place, so a final path always holds a
    whole file.
    """
    def failed(failure: DownloadFailure, message: str) -> FetchResult:
        return FetchResult(video_id, "failed", failure, f"[download] {video_id}: {message}")

    if not is_valid_id(video_id):
        return failed(DownloadFailure.INVALID_ID, "not a YouTube ID (11 characters of A-Z a-z 0-9 _ -); not fetched")
    tmp_root = tmp_root or videos_dir / PARTIAL_DIR
    tmp_root.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f"{video_id}.", dir=tmp_root))
    ydl_log = _YdlLog()
    try:
        try:
            with (ydl_factory or _default_factory)(ydl_params(config, tmp_dir, video_id, ydl_log)) as ydl:
                info = ydl.extract_info(config.url(video_id), download=True)
        except DownloadError as e:
            failure = classify(e)
            if failure is DownloadFailure.UNKNOWN and classify(" | ".join(ydl_log.warnings)) is DownloadFailure.TOOLING:
                failure = DownloadFailure.TOOLING  # e.g. "nsig extraction failed" warned, then "format not available"
            return failed(failure, _clean(str(e)))
        return _finish(video_id, info, tmp_dir, videos_dir, failed)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _finish(video_id: str, info: dict | None, tmp_dir: Path, videos_dir: Path,
            failed: Callable[[DownloadFailure, str], FetchResult]) -> FetchResult:
    """Check what yt-dlp returned and move the file into place."""
    info = info or {}
    if info.get("id") != video_id:
        return failed(DownloadFailure.INVALID_ID, f"yt-dlp returned id {info.get('id')!r}, not the requested one")
    downloads = info.get("requested_downloads") or []
    src = Path(downloads[0]["filepath"]) if downloads and downloads[0].get("filepath") else None
    if src is None or not src.is_file():
        return failed(DownloadFailure.UNKNOWN, "yt-dlp returned without a file (skipped by a filter?)")
    size = src.stat().st_size
    if size == 0:
        return failed(DownloadFailure.TRANSIENT, "empty file")
    ext = src.suffix.lstrip(".")
    if not ext.isalnum():
        return failed(DownloadFailure.UNKNOWN, f"unexpected file name {src.name!r}")
    dest = videos_dir / video_id[:2] / f"{video_id}.{ext}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dest)
    chosen = downloads[0]
    return FetchResult(
        video_id, "done", path=dest, bytes=size, format_id=chosen.get("format_id"),
        height=chosen.get("height") or info.get("height"), width=chosen.get("width") or info.get("width"),
        duration=info.get("duration"))


# -- the batch runner ---------------------------------------------------------------------------
# `download_pending` (threads) and `videolt.pipeline.download.run_download` (any executor) only
# schedule; which videos to fetch and what each outcome means are the functions below.

def process_dir_name() -> str:
    """This process's folder under `videos/.partial`: host and pid, so a later run can tell it is dead."""
    return f"{socket.gethostname()}-{os.getpid()}"


def remove_stale_partials(videos_dir: Path) -> list[Path]:
    """Remove temp folders left by killed runs of this host (others' may still be running)."""
    root = videos_dir / PARTIAL_DIR
    removed = []
    host = socket.gethostname()
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        owner, _, pid = d.name.rpartition("-")
        if owner == host and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a leftover of an earlier process that had our pid: it is not running now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def select_pending(workdir: Workdir, max_attempts: int, *, splits: Sequence[str] | None = None,
                   limit: int | None = None, recheck: Collection[str] = ()) -> list[tuple[VideoRow, int]]:
    """(video, attempts so far) for the first `limit` videos a run should fetch, in manifest order.

    Pending means: never tried, failed with a retryable class below `max_attempts`, failed with a
    class named in `recheck` (a user's explicit choice), or done but its file is gone. Checks the
    user's `recheck` and `limit` first (`UsageError`).
    """
    known = {f.value for f in DownloadFailure}
    if set(recheck) - known:
        bad = sorted(set(recheck) - known)[0]
        raise UsageError(f"--recheck {bad!r}: not a failure class ({', '.join(sorted(known))})")
    if limit is not None and limit < 0:
        raise UsageError(f"--limit {limit}: must be >= 0")
    with workdir.manifest() as m:
        rows = {v.index: v for v in m.todo(STAGE, splits, retry={f.value for f in RETRYABLE},
                                            max_attempts=max_attempts)}
        if recheck:
            rows.update((v.index, v) for v in m.todo(STAGE, splits, retry=set(recheck)))
        states = m.states(STAGE)
        for v in m.videos(splits):
            s = states.get(v.index)
            if s is not None and s.status == "done" and not _file_present(workdir, v.video_id, s.info):
                log.info("%s: recorded as downloaded but its file is gone; fetching it again", v.video_id)
                rows[v.index] = v
    return [(rows[i], states[i].attempts if i in states else 0) for i in sorted(rows)][:limit]


def _file_present(workdir: Workdir, video_id: str, info: dict[str, Any]) -> bool:
    path = info.get("path")
    return (workdir.root / path).is_file() if path else workdir.find_video(video_id) is not None


def adopt_existing(manifest: Manifest, workdir: Workdir, row: VideoRow) -> bool:
    """Record `row` as done, costing no attempt, if its file is already in place; True if it was.

    Such a file was moved into place by a run killed before it could record it.
    """
    existing = workdir.find_video(row.video_id) if row.id_valid else None
    if existing is None:
        return False
    manifest.record(STAGE, row.index, "done", info={
        "path": str(existing.relative_to(workdir.root)), "bytes": existing.stat().st_size}, attempt=False)
    return True


def check_disk(videos_dir: Path, min_free_gb: float) -> None:
    """Raise `StageError` before a start that could fill the disk (checked per video, not per run)."""
    free_gb = shutil.disk_usage(videos_dir).free / 1e9
    if free_gb < min_free_gb:
        raise StageError(f"{videos_dir}: {free_gb:.1f} GB free, below download.min_free_gb = "
                         f"{min_free_gb}; free some space and rerun (nothing is lost)")


def fetch_guarded(video_id: str, videos_dir: Path, config: DownloadConfig, tmp_root: Path,
                  ydl_factory: YdlFactory | None = None) -> FetchResult:
    """`fetch_one`, with a bug on our side turned into an `internal` failure: one video never stops a batch."""
    try:
        return fetch_one(video_id, videos_dir, config, tmp_root=tmp_root, ydl_factory=ydl_factory)
    except Exception as e:
        log.exception("%s: unexpected error", video_id)
        return FetchResult(video_id, "failed", DownloadFailure.INTERNAL, f"[download] {video_id}: {e!r}")


def settle(manifest: Manifest, workdir: Workdir, index: int, result: FetchResult, attempts: int,
           config: DownloadConfig, breaker: CircuitBreaker) -> float | None:
    """Record one attempt at video `index` (`attempts` made before it); returns the seconds until its
    next try, or None once it is settled (tallied as `outcome(result)`).

    A rate-limit answer is not the video's fault: no attempt, every worker pauses, retry at once
    behind the pause. A tooling failure raises `StageError`: every later video would fail alike.
    """
    if result.failure is DownloadFailure.RATE_LIMITED:
        manifest.record(STAGE, index, "failed", failure=result.failure.value, message=result.message,
                        attempt=False)
        log.warning("rate-limited; every worker pauses for %.0f s (%s)", breaker.trip(), result.message)
        return 0.0
    manifest.record(STAGE, index, result.status, failure=result.failure and result.failure.value,
                    message=result.message, info=result.info(workdir.root) if result.status == "done" else None)
    if result.status == "done":
        breaker.success()
    elif result.failure is DownloadFailure.TOOLING:
        raise StageError(f"yt-dlp {YTDLP_VERSION} can no longer fetch videos ({result.message}); "
                         "upgrade it (pip install -U 'yt-dlp[default]') and rerun")
    elif result.failure is DownloadFailure.TRANSIENT and attempts + 1 < config.max_attempts:
        return config.backoff(attempts + 1)
    return None


def attempts_after(result: FetchResult, attempts: int) -> int:
    """The attempt count once `result` is recorded (a rate-limit answer costs none)."""
    return attempts + (result.failure is not DownloadFailure.RATE_LIMITED)


def outcome(result: FetchResult) -> str:
    """The key a settled result is counted under: "done" or its failure class."""
    return result.failure.value if result.failure else "done"


def summary(todo: int, tally: Counter[str]) -> dict[str, Any]:
    """A run's return value: `{"todo", "done", "failed": {class: n}}`."""
    failed = dict(tally)
    return {"todo": todo, "done": failed.pop("done", 0), "failed": failed}


def download_pending(workdir: Workdir, config: DownloadConfig = DownloadConfig(), *,
                     splits: Sequence[str] | None = None, limit: int | None = None,
                     recheck: Collection[str] = (), progress: bool = True,
                     ydl_factory: YdlFactory | None = None) -> dict[str, Any]:
    """Download every pending video of `splits` (all by default, see `select_pending`) on threads.

    Returns counts of this run's outcomes (`summary`). Raises `StageError` when the run cannot go
    on (yt-dlp outdated, rate-limited too often, disk full) and re-raises `KeyboardInterrupt` once
    the downloads in flight are finished and recorded.
    """
    jobs = select_pending(workdir, config.max_attempts, splits=splits, limit=limit, recheck=recheck)
    for d in remove_stale_partials(workdir.videos_dir):
        log.info("removed %s, left by a killed run", d)
    run = _Run(workdir, config, ydl_factory, deque(jobs),
               tqdm(total=len(jobs), desc="download", unit="video", file=sys.stderr, disable=not progress))
    threads = [threading.Thread(target=run.work, name=f"download-{i}", daemon=True)
               for i in range(min(config.workers, len(jobs)))]
    run.running = len(threads)
    try:
        for t in threads:
            t.start()
        # Waiting on an Event, not Thread.join: a join interrupted by Ctrl-C can wrongly report the
        # thread finished (CPython gh-90882) and the run would exit with downloads in flight.
        while threads and not run.finished.wait(0.2):
            pass
    except KeyboardInterrupt:
        log.warning("interrupted: finishing the %d downloads in flight, then stopping", len(threads))
        run.stop.set()
        run.finished.wait()
        raise
    finally:
        run.bar.close()
        shutil.rmtree(run.tmp_root, ignore_errors=True)
    if run.error is not None:
        raise run.error
    return summary(len(jobs), run.tally)


class _Run:
    """What the worker threads of one `download_pending` call share."""

    def __init__(self, workdir: Workdir, config: DownloadConfig, ydl_factory: YdlFactory | None,
                 jobs: deque[tuple[VideoRow, int]], bar: tqdm):
        self.workdir, self.config, self.ydl_factory, self.jobs, self.bar = workdir, config, ydl_factory, jobs, bar
        self.stop = threading.Event()  # its `wait` is the sleep of every pause, so stopping wakes them
        self.bucket = TokenBucket(config.rate_per_hour, config.burst, jitter=config.jitter_s, sleep=self.stop.wait)
        self.breaker = CircuitBreaker(config.pause_s, factor=config.pause_factor, max_trips=config.max_trips,
                                      sleep=self.stop.wait)
        self.tmp_root = workdir.videos_dir / PARTIAL_DIR / process_dir_name()
        self.tally: Counter[str] = Counter()
        self.error: BaseException | None = None
        self.running = 0  # worker threads not yet finished
        self.finished = threading.Event()  # set when the last worker thread ends
        self._lock = threading.Lock()

    def work(self) -> None:
        """One worker thread: take videos until none are left or the run stops."""
        try:
            with self.workdir.manifest() as manifest:
                while not self.stop.is_set():
                    with self._lock:
                        if not self.jobs:
                            return
                        row, attempts = self.jobs.popleft()
                    self._video(manifest, row, attempts)
        except BaseException as e:  # a StageError (or a bug): stop every worker; the main thread re-raises
            with self._lock:
                self.error = self.error or e
            self.stop.set()
        finally:
            with self._lock:
                self.running -= 1
                if self.running == 0:
                    self.finished.set()

    def _video(self, manifest: Manifest, row: VideoRow, attempts: int) -> None:
        """Fetch one video, retrying as `settle` says; records every attempt."""
        if adopt_existing(manifest, self.workdir, row):
            self._count("done")
            return
        while not self.stop.is_set():
            if row.id_valid:  # invalid IDs never reach the network, so they cost no token
                check_disk(self.workdir.videos_dir, self.config.min_free_gb)
                while self.breaker.paused_for() > 0 and not self.stop.is_set():
                    self.breaker.wait()
                self.bucket.acquire()
                if self.stop.is_set():
                    return
            result = fetch_guarded(row.video_id, self.workdir.videos_dir, self.config, self.tmp_root,
                                   self.ydl_factory)
            retry_in = settle(manifest, self.workdir, row.index, result, attempts, self.config, self.breaker)
            if retry_in is None:
                self._count(outcome(result))
                return
            attempts = attempts_after(result, attempts)
            self.stop.wait(retry_in)

    def _count(self, key: str) -> None:
        with self._lock:
            self.tally[key] += 1
            self.bar.set_postfix(self.tally, refresh=False)
            self.bar.update(1)
