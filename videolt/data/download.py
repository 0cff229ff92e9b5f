"""The download stage: fetch videos by ID with yt-dlp's embedded API, paced, resumable, classified.

`fetch_one` fetches one video into `videos/<2 chars>/<id>.<ext>` (temp name first, then an atomic
rename) and returns a `FetchResult`; it never raises for a video's own failure. `download_pending`
runs it over the manifest's pending videos on any executor (threads, processes, Ray): this process
keeps the one `TokenBucket` and `CircuitBreaker` and hands a fetch to the executor only when they
allow a start, so a whole cluster keeps the rate, and it records every attempt as it finishes.
Before it starts, `preflight` checks what every fetch needs (a JavaScript runtime for YouTube, a
readable cookies file, writable and free disk) and refuses a run that could fetch nothing.

Answers about the session rather than the video cost the video no attempt: a rate limit pauses
every worker (for the `Retry-After` the answer gave, if yt-dlp kept it), a bot check is counted and
stops the run after `max_bot_checks` in a row, and a session yt-dlp cannot use stops it at once.
The user's cookies and extractor arguments reach yt-dlp's params and nothing else (`session`).
See `reference/download.md`.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yt_dlp
from tqdm import tqdm
from yt_dlp.utils import DownloadError

from videolt.config import field
from videolt.data import session as _session
from videolt.data import tooling
from videolt.data.failures import NOT_THE_VIDEOS_FAULT, RETRYABLE, DownloadFailure, classify, retry_after
from videolt.data.ids import is_valid_id
from videolt.data.manifest import Manifest, VideoRow
from videolt.data.pacing import CircuitBreaker, Streak, TokenBucket
from videolt.data.workdir import Workdir
from videolt.errors import ConfigError, StageError
from videolt.executor import Executor

log = logging.getLogger(__name__)

STAGE = "download"
PARTIAL_DIR = ".partial"  # under videos/: one folder per running process, never a final path
YTDLP_VERSION: str = yt_dlp.version.__version__

YdlFactory = Callable[[dict[str, Any]], yt_dlp.YoutubeDL]


@dataclass(frozen=True, kw_only=True)
class DownloadConfig:
    """Which videos to fetch, how, and how fast; the yt-dlp params are derived from it in `ydl_params`."""

    url_template: str = field("https://www.youtube.com/watch?v={id}", "URL of a video; {id} is replaced by its ID")
    max_short_side: int = field(360, "prefer streams whose shorter side is at most this (yt-dlp res: sort)")
    codec: str = field("h264", "preferred video codec (yt-dlp vcodec: sort)")
    format: str = field("bv*/b", "one video-only stream (or the best combined one): no merge, no ffmpeg")
    retries: int = field(3, "yt-dlp's own retries of 5xx/transport errors within one attempt")
    socket_timeout: float = field(30.0, "seconds before a silent connection counts as failed")
    max_attempts: int = field(5, "attempts per video for retryable failure classes, over all runs")
    backoff_base_s: float = field(30.0, "wait after a video's first transient failure; doubles per attempt")
    backoff_cap_s: float = field(600.0, "longest wait between two attempts at one video")
    rate_per_hour: float = field(250.0, "videos started per hour, all workers together (a guest gets ~300/h)")
    burst: int = field(2, "videos that may start back to back after an idle spell")
    jitter_s: float = field(5.0, "up to this many random seconds added before each start")
    pause_s: float = field(900.0, "pause of all workers after a rate-limit answer")
    pause_factor: float = field(2.0, "each further rate-limit answer in a row multiplies the pause by this")
    max_trips: int = field(3, "rate-limit pauses in a row before the run stops")
    min_free_gb: float = field(5.0, "stop cleanly when the videos folder has less free disk than this")
    workers: int = field(2, "concurrent downloads")
    executor: Literal["threads", "local", "ray"] = field(
        "threads", "where fetches run: threads of this process, local processes, or Ray tasks")
    ray_address: str | None = field(None, "Ray cluster to join (executor ray; default: start a local one)")
    splits: tuple[str, ...] = field((), "only these splits (train, val, test); default all")
    limit: int | None = field(None, "at most this many videos per run")
    recheck: tuple[str, ...] = field((), "also retry videos that failed with these (permanent) classes")
    js_runtimes: tuple[str, ...] = field(
        (), "JavaScript runtimes for YouTube as yt-dlp's RUNTIME[:PATH] (deno, node, quickjs, bun); "
            "default: every usable one found on the machine that fetches")
    cookies: str | None = field(
        None, "your own account's cookies.txt (Netscape format); read, never written, never recorded", secret=True)
    cookies_from_browser: str | None = field(
        None, "your own account's cookies from a browser: BROWSER[+KEYRING][:PROFILE][::CONTAINER] (never recorded)",
        secret=True)
    extractor_args: tuple[str, ...] = field(
        (), "yt-dlp --extractor-args, e.g. youtube:player_client=default,mweb, or a plugin's "
            "(youtubepot-bgutilhttp:base_url=URL); never recorded", secret=True)
    plugin_dirs: tuple[str, ...] = field(
        (), "extra folders of yt-dlp plugins (yt-dlp --plugin-dirs); pip-installed plugins are found anyway")
    max_bot_checks: int = field(3, "bot checks ('confirm you're not a bot') in a row before the run stops")
    max_pause_s: float = field(21600.0, "longest wait a 429's Retry-After may impose; a longer one stops the run")
    preflight: bool = field(True, "check runtime, cookies and disk first; refuse a run in which every fetch would fail")

    def __post_init__(self) -> None:
        if "{id}" not in self.url_template:
            raise ConfigError(f"download.url_template {self.url_template!r} must contain {{id}}")
        positive = ("max_short_side", "socket_timeout", "max_attempts", "rate_per_hour", "burst", "workers",
                    "pause_s", "max_trips", "max_bot_checks", "max_pause_s")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"download.{name} must be > 0, got {getattr(self, name)}")
        for name in ("retries", "backoff_base_s", "backoff_cap_s", "jitter_s", "min_free_gb"):
            if getattr(self, name) < 0:
                raise ConfigError(f"download.{name} must be >= 0, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"download.limit (--limit) must be >= 0, got {self.limit}")
        known = {f.value for f in DownloadFailure}
        for bad in sorted(set(self.recheck) - known):
            raise ConfigError(f"download.recheck (--recheck) {bad!r}: not a failure class ({', '.join(sorted(known))})")
        if self.ray_address is not None and self.executor != "ray":
            raise ConfigError(f"download.ray_address is for executor ray, not {self.executor}")
        if self.cookies and self.cookies_from_browser:
            raise ConfigError("download.cookies (--cookies) and download.cookies_from_browser "
                              "(--cookies-from-browser): choose one")
        if self.cookies_from_browser:
            _session.parse_browser(self.cookies_from_browser)
        _session.parse_extractor_args(self.extractor_args)
        runtimes = {name for name, _ in tooling.JS_RUNTIMES}
        for spec in self.js_runtimes:
            if spec.partition(":")[0].lower() not in runtimes:
                raise ConfigError(f"download.js_runtimes: {spec.partition(':')[0]!r} is not one of "
                                  f"{', '.join(sorted(runtimes))}")

    @property
    def session(self) -> str:
        """What is recorded about the session: guest, cookies-file or browser (never its content)."""
        return _session.session_kind(self.cookies, self.cookies_from_browser)

    def redactor(self) -> _session.Redactor:
        """Masks this config's secrets (cookie values, paths, extractor-argument values) in a text."""
        return _session.redactor(self.cookies, self.cookies_from_browser, self.extractor_args)

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
    session: str = "guest"  # guest, cookies-file or browser: never the session's content
    retry_after_s: float | None = None  # a 429's Retry-After, where yt-dlp kept it

    def info(self, root: Path) -> dict[str, Any]:
        """What the manifest keeps for this attempt (`path` relative to the workdir `root`)."""
        if self.status != "done":
            return {"ytdlp_version": self.ytdlp_version, "session": self.session}
        return {"path": str(self.path.relative_to(root)) if self.path else None, "bytes": self.bytes,
                "format": self.format_id, "height": self.height, "width": self.width,
                "duration": self.duration, "ytdlp_version": self.ytdlp_version, "session": self.session}


class _YdlLog:
    """yt-dlp's `logger`: chatter to debug, warnings kept (they may explain a later failure).

    Errors are demoted to debug too: `fetch_one` returns them and the manifest records them, so a
    batch with thousands of unavailable videos does not flood the terminal. Every line passes
    through `redact` first: yt-dlp may print a URL carrying a token.
    """

    def __init__(self, redact: Callable[[str], str] = str) -> None:
        self.warnings: list[str] = []
        self._redact = redact
        self._log = logging.getLogger(f"{__name__}.ytdlp")

    def debug(self, msg: str) -> None:
        self._log.debug("%s", self._redact(msg))

    info = debug
    error = debug

    def warning(self, msg: str) -> None:
        msg = self._redact(msg)
        self.warnings.append(msg)
        self._log.info("%s", msg)


def ydl_params(config: DownloadConfig, tmp_dir: Path, video_id: str,
               logger: _YdlLog | None = None) -> dict[str, Any]:
    """The one place the untyped yt-dlp params dict is built (from the typed config).

    The user's session and extractor arguments come from `session.session_params` (a cookies file
    as an in-memory copy); `js_runtimes` lists every usable runtime found here (yt-dlp's own
    default is Deno alone), or the configured ones.
    """
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
        **({"js_runtimes": runtimes} if (runtimes := tooling.resolve_js_runtimes(config.js_runtimes)) else {}),
        **_session.session_params(config.cookies, config.cookies_from_browser, config.extractor_args),
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
    redact = config.redactor()

    def failed(failure: DownloadFailure, message: str, wait_s: float | None = None) -> FetchResult:
        return FetchResult(video_id, "failed", failure, redact(f"[download] {video_id}: {message}"),
                           session=config.session, retry_after_s=wait_s)

    if not is_valid_id(video_id):
        return failed(DownloadFailure.INVALID_ID, "not a YouTube ID (11 characters of A-Z a-z 0-9 _ -); not fetched")
    tmp_root = tmp_root or videos_dir / PARTIAL_DIR
    tmp_root.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f"{video_id}.", dir=tmp_root))
    ydl_log = _YdlLog(redact)
    use_plugin_dirs(config.plugin_dirs)
    try:
        try:
            with (ydl_factory or _default_factory)(ydl_params(config, tmp_dir, video_id, ydl_log)) as ydl:
                info = ydl.extract_info(config.url(video_id), download=True)
        except DownloadError as e:
            failure = _with_warnings(classify(e), ydl_log.warnings)
            wait_s = retry_after(e) if failure is DownloadFailure.RATE_LIMITED else None
            return failed(failure, _clean(str(e)), wait_s)
        return _finish(video_id, info, tmp_dir, videos_dir, failed, config.session)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _with_warnings(failure: DownloadFailure, warnings: list[str]) -> DownloadFailure:
    """Refine a failure by what yt-dlp warned before it: e.g. "nsig extraction failed" warned, then
    "format not available" (tooling), a 429 it demoted to a warning (rate limit), or "cookies are no
    longer valid" before a bot check or sign-in demand (the session, not the video)."""
    if not warnings:
        return failure
    warned = classify(" | ".join(warnings))
    if failure is DownloadFailure.UNKNOWN and warned in (DownloadFailure.TOOLING, *NOT_THE_VIDEOS_FAULT):
        return warned
    if failure in (DownloadFailure.BOT_CHECK, DownloadFailure.LOGIN_REQUIRED) and warned is DownloadFailure.SESSION:
        return warned
    return failure


_plugin_lock = threading.Lock()


def use_plugin_dirs(dirs: tuple[str, ...]) -> None:
    """Make yt-dlp load plugins from `dirs` as well as its default places (a process-wide setting)."""
    from yt_dlp.globals import all_plugins_loaded, plugin_dirs

    wanted = ["default", *map(str, dirs)]
    with _plugin_lock:
        if plugin_dirs.value == wanted:
            return
        plugin_dirs.value = wanted
        if all_plugins_loaded.value:  # loaded from other folders already: load again from these
            import importlib

            from yt_dlp.plugins import load_all_plugins

            importlib.invalidate_caches()
            load_all_plugins()


def _finish(video_id: str, info: dict | None, tmp_dir: Path, videos_dir: Path,
            failed: Callable[[DownloadFailure, str], FetchResult], session: str) -> FetchResult:
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
        duration=info.get("duration"), session=session)


# -- before a run -------------------------------------------------------------------------------

#: Assumed mean bitrate (Mbit/s) of YouTube's H.264 video-only streams by short side, for the disk
#: estimate before anything is downloaded; VideoLT's videos last 192 s on average.
BITRATE_MBPS = {144: 0.1, 240: 0.2, 360: 0.4, 480: 0.75, 720: 1.5, 1080: 3.0, 1440: 6.0, 2160: 12.0}
MEAN_DURATION_S = 192.0


def estimate_video_bytes(workdir: Workdir, config: DownloadConfig, *, min_sample: int = 20) -> tuple[float, str]:
    """Bytes one video will take at `max_short_side`, and how that was estimated: the mean of the
    workdir's fetched videos when there are `min_sample` of them, else an assumed bitrate."""
    with workdir.manifest() as m:
        sizes = [s.info["bytes"] for s in m.states(STAGE).values()
                 if s.status == "done" and s.info.get("ytdlp_version") and s.info.get("bytes")]
    if len(sizes) >= min_sample:
        return sum(sizes) / len(sizes), f"mean of {len(sizes):,} fetched videos"
    side = min((k for k in BITRATE_MBPS if k >= config.max_short_side), default=max(BITRATE_MBPS))
    mbps = BITRATE_MBPS[side]
    return MEAN_DURATION_S * mbps * 1e6 / 8, f"assumed {MEAN_DURATION_S:.0f} s at {mbps} Mbit/s ({side}p)"


def preflight(workdir: Workdir | None, config: DownloadConfig, *, pending: int | None = None,
              search_path: str | None = None) -> list[tooling.Check]:
    """The download stage's checks (`tooling`): yt-dlp, the JavaScript runtime, yt-dlp-ejs, plugins,
    the session, and with a workdir its write access and free disk against the pending videos' need."""
    checks = [tooling.check_ytdlp(), tooling.check_js_runtimes(config.url_template, config.js_runtimes, search_path),
              tooling.check_ejs(), tooling.check_plugins(),
              tooling.check_cookies(config.cookies, config.cookies_from_browser)]
    if workdir is not None:
        writable = tooling.check_writable(workdir.videos_dir / PARTIAL_DIR)
        checks.append(writable)
        if writable.status != "fail":
            if pending is None:
                pending = sum(v.id_valid for v, _ in select_pending(workdir, config))
            per_video, basis = estimate_video_bytes(workdir, config)
            checks.append(tooling.check_disk_need(workdir.videos_dir, pending, per_video, basis, config.min_free_gb))
    return checks


# -- the batch runner ---------------------------------------------------------------------------
# `download_pending` only schedules and paces; which videos to fetch and what each outcome means are
# the functions below.

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


def select_pending(workdir: Workdir, config: DownloadConfig) -> list[tuple[VideoRow, int]]:
    """(video, attempts so far) for the first `config.limit` videos a run should fetch, in manifest order.

    Pending means: never tried, failed with a retryable class below `max_attempts`, failed with a
    class named in `recheck` (a user's explicit choice), or done but its file is gone.
    """
    splits = list(config.splits) or None
    with workdir.manifest() as m:
        rows = {v.index: v for v in m.todo(STAGE, splits, retry={f.value for f in RETRYABLE},
                                            max_attempts=config.max_attempts)}
        if config.recheck:
            rows.update((v.index, v) for v in m.todo(STAGE, splits, retry=set(config.recheck)))
        states = m.states(STAGE)
        for v in m.videos(splits):
            s = states.get(v.index)
            if s is not None and s.status == "done" and not _file_present(workdir, v.video_id, s.info):
                log.info("%s: recorded as downloaded but its file is gone; fetching it again", v.video_id)
                rows[v.index] = v
    return [(rows[i], states[i].attempts if i in states else 0) for i in sorted(rows)][:config.limit]


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
        redact = config.redactor()
        log.error("%s: unexpected error: %s", video_id, redact("".join(traceback.format_exception(e))))
        return FetchResult(video_id, "failed", DownloadFailure.INTERNAL, redact(f"[download] {video_id}: {e!r}"),
                           session=config.session)


def settle(manifest: Manifest, workdir: Workdir, index: int, result: FetchResult, attempts: int,
           config: DownloadConfig, breaker: CircuitBreaker, bot_checks: Streak | None = None) -> float | None:
    """Record one attempt at video `index` (`attempts` made before it); returns the seconds until its
    next try, or None once it is settled for this run (tallied as `outcome(result)`).

    An answer about the session (`NOT_THE_VIDEOS_FAULT`) costs the video no attempt. A rate limit
    pauses every worker (for its Retry-After, if it gave one) and the video is retried behind the
    pause. A bot check leaves the video for a later run; `max_bot_checks` of them in a row stop the
    run. A session yt-dlp cannot use, or a tooling failure, stops the run at once (`StageError`):
    every later video would fail alike.
    """
    failure = result.failure
    manifest.record(STAGE, index, result.status, failure=failure and failure.value, message=result.message,
                    info=result.info(workdir.root), attempt=failure not in NOT_THE_VIDEOS_FAULT)
    if result.status == "done":
        breaker.success()
        if bot_checks is not None:
            bot_checks.reset()
    elif failure is DownloadFailure.RATE_LIMITED:
        pause = breaker.trip(result.retry_after_s)
        said = " (its Retry-After)" if result.retry_after_s is not None else ""
        log.warning("rate-limited; every worker pauses for %.0f s%s (%s)", pause, said, result.message)
        return 0.0
    elif failure is DownloadFailure.BOT_CHECK:
        n = bot_checks.hit() if bot_checks is not None else 1
        log.warning("bot check %d of at most %d in a row (%s)", n, config.max_bot_checks, result.message)
        if n >= config.max_bot_checks:
            raise StageError(bot_check_advice(config, n))
    elif failure is DownloadFailure.SESSION:
        raise StageError(f"yt-dlp cannot use your session ({result.message}); export fresh cookies of your own "
                         "account (see the README) and rerun: the videos stay pending")
    elif failure is DownloadFailure.TOOLING:
        raise StageError(f"yt-dlp {YTDLP_VERSION} can no longer fetch videos ({result.message}); "
                         "upgrade it (pip install -U 'yt-dlp[default]'), check `videolt doctor`, and rerun")
    elif failure is DownloadFailure.TRANSIENT and attempts + 1 < config.max_attempts:
        return config.backoff(attempts + 1)
    return None


def bot_check_advice(config: DownloadConfig, n: int) -> str:
    """The one line a run stopped by bot checks ends with: what happened and what the user can do."""
    head = f"YouTube asked to confirm this is not a bot {n} times in a row"
    tail = "stopping; the videos stay pending and a rerun resumes (videolt never rotates IPs or accounts)"
    if config.session == "guest":
        return (f"{head}; {tail}. Sign in with your own account's cookies (--cookies FILE or "
                f"--cookies-from-browser NAME), lower --rate (now {config.rate_per_hour:g}/h), or wait an hour")
    return (f"{head} with your {config.session} session; {tail}. Lower --rate (now {config.rate_per_hour:g}/h), "
            "wait an hour or more, and check that the cookies are fresh (exported from a private window)")


def attempts_after(result: FetchResult, attempts: int) -> int:
    """The attempt count once `result` is recorded (an answer about the session costs none)."""
    return attempts + (result.failure not in NOT_THE_VIDEOS_FAULT)


def outcome(result: FetchResult) -> str:
    """The key a settled result is counted under: "done" or its failure class."""
    return result.failure.value if result.failure else "done"


def summary(todo: int, tally: Counter[str]) -> dict[str, Any]:
    """A run's return value: `{"todo", "done", "failed": {class: n}}`."""
    failed = dict(tally)
    return {"todo": todo, "done": failed.pop("done", 0), "failed": failed}


@dataclass(frozen=True)
class FetchJob:
    """One attempt at one video, as plain picklable data for a worker anywhere."""

    index: int
    video_id: str
    attempts: int  # attempts recorded before this one
    videos_dir: str
    tmp_root: str
    config: DownloadConfig
    ydl_factory: YdlFactory | None = None


def fetch_job(job: FetchJob) -> tuple[FetchJob, FetchResult]:
    """An executor's `work`: `fetch_guarded` for one job, which never raises for the video's own failure."""
    return job, fetch_guarded(job.video_id, Path(job.videos_dir), job.config, Path(job.tmp_root), job.ydl_factory)


def download_pending(workdir: Workdir, config: DownloadConfig, executor: Executor, *, progress: bool = True,
                     ydl_factory: YdlFactory | None = None) -> dict[str, Any]:
    """Download every pending video (`select_pending`) on `executor`; returns this run's counts (`summary`).

    Give the executor `in_flight=config.workers`: a job is handed out only when the executor has
    room for it and after it took a token with no rate-limit pause in force, so the k-th fetch never
    starts before the k-th token. A retry that is due goes before new videos. Raises
    `PreflightError` (`tooling.refuse`) before anything starts if every fetch would fail,
    `StageError` when the run cannot go on (yt-dlp outdated, rate-limited or bot-checked too often,
    the session refused, disk full) and re-raises `KeyboardInterrupt` once the fetches in flight are
    finished and recorded.
    """
    selected = select_pending(workdir, config)
    if config.preflight:
        checks = preflight(workdir, config, pending=sum(v.id_valid for v, _ in selected))
        tooling.refuse(checks)
        for check in checks:
            if check.status == "warn":
                log.warning("%s", check.line())
    for d in remove_stale_partials(workdir.videos_dir):
        log.info("removed %s, left by a killed run", d)
    tmp_root = workdir.videos_dir / PARTIAL_DIR / process_dir_name()
    tally: Counter[str] = Counter()
    bar = tqdm(total=len(selected), desc="download", unit="video", file=sys.stderr, disable=not progress)

    def count(key: str) -> None:
        tally[key] += 1
        bar.set_postfix(tally, refresh=False)
        bar.update(1)

    bucket = TokenBucket(config.rate_per_hour, config.burst, jitter=config.jitter_s)
    breaker = CircuitBreaker(config.pause_s, factor=config.pause_factor, max_trips=config.max_trips,
                             max_pause_s=config.max_pause_s)
    bot_checks = Streak()
    try:
        with workdir.manifest() as m:
            queue = _Queue()
            for row, attempts in selected:
                if adopt_existing(m, workdir, row):
                    count("done")
                else:
                    queue.new.append(FetchJob(row.index, row.video_id, attempts, str(workdir.videos_dir),
                                              str(tmp_root), config, ydl_factory))
            while queue:
                queue.sleep_until_due()
                paced = _paced(queue, workdir, config, bucket, breaker)
                with closing(executor.run(fetch_job, paced)) as results:
                    for job, result in results:
                        retry_in = settle(m, workdir, job.index, result, job.attempts, config, breaker, bot_checks)
                        if retry_in is None:
                            count(outcome(result))
                        else:
                            queue.retry(dataclasses.replace(job, attempts=attempts_after(result, job.attempts)),
                                        retry_in)
    finally:
        bar.close()
        shutil.rmtree(tmp_root, ignore_errors=True)  # after the executor finished every fetch it started
    return summary(len(selected), tally)


class _Queue:
    """The jobs a run has yet to hand out: retries, each due at a time, before new videos."""

    def __init__(self) -> None:
        self.new: deque[FetchJob] = deque()
        self._retries: list[tuple[float, int, FetchJob]] = []  # a heap of (monotonic time due, seq, job)
        self._seq = 0

    def __bool__(self) -> bool:
        return bool(self.new or self._retries)

    def retry(self, job: FetchJob, delay_s: float) -> None:
        self._seq += 1
        heapq.heappush(self._retries, (time.monotonic() + delay_s, self._seq, job))

    def pop_ready(self) -> FetchJob | None:
        """A due retry, else the next new video, else None (nothing can start now)."""
        if self._retries and self._retries[0][0] <= time.monotonic():
            return heapq.heappop(self._retries)[2]
        return self.new.popleft() if self.new else None

    def sleep_until_due(self) -> None:
        """With no new video left, wait for the first retry."""
        if not self.new and self._retries:
            time.sleep(max(0.0, self._retries[0][0] - time.monotonic()))


def _paced(queue: _Queue, workdir: Workdir, config: DownloadConfig, bucket: TokenBucket,
           breaker: CircuitBreaker) -> Iterator[FetchJob]:
    """Hand out jobs while one can start now, each once pacing allows (invalid IDs cost no token)."""
    while (job := queue.pop_ready()) is not None:
        if is_valid_id(job.video_id):
            check_disk(workdir.videos_dir, config.min_free_gb)
            while breaker.paused_for() > 0:
                breaker.wait()
            bucket.acquire()
        yield job
