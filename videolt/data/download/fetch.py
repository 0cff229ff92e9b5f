"""One video: yt-dlp's params from the config, the fetch into a temp folder, the result as data.

`fetch_one` fetches one video into `videos/<2 chars>/<id>.<ext>` (temp name first, then an atomic
rename) and returns a `FetchResult`; it never raises for a video's own failure. `ydl_params` is
the one place yt-dlp's untyped params dict is built. Every line yt-dlp logs and every message a
result carries passes the config's redactor: the user's cookies and tokens never leave yt-dlp.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yt_dlp
from yt_dlp.utils import DownloadError

from videolt.data import session as _session
from videolt.data import tooling
from videolt.data.download.config import PARTIAL_DIR, DownloadConfig
from videolt.data.failures import NOT_THE_VIDEOS_FAULT, DownloadFailure, classify, retry_after, unreachable
from videolt.data.ids import invalid_id_message, is_valid_id
from videolt.data.workdir import Workdir
from videolt.errors import write_traceback

log = logging.getLogger(__name__)

YTDLP_VERSION: str = yt_dlp.version.__version__

YdlFactory = Callable[[dict[str, Any]], yt_dlp.YoutubeDL]


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
    unreachable: bool = False  # failed before any answer from the host (`failures.unreachable`)

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

    def failed(failure: DownloadFailure, message: str, wait_s: float | None = None, *,
               offline: bool = False) -> FetchResult:
        return FetchResult(video_id, "failed", failure, redact(f"[download] {video_id}: {message}"),
                           session=config.session, retry_after_s=wait_s, unreachable=offline)

    if not is_valid_id(video_id):
        return FetchResult(video_id, "failed", DownloadFailure.INVALID_ID, invalid_id_message(video_id),
                           session=config.session)
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
            return failed(failure, _clean(str(e)), wait_s,
                          offline=failure is DownloadFailure.TRANSIENT and unreachable(e))
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


def fetch_guarded(video_id: str, videos_dir: Path, config: DownloadConfig, tmp_root: Path,
                  ydl_factory: YdlFactory | None = None) -> FetchResult:
    """`fetch_one`, with a bug on our side turned into an `internal` failure: one video never stops a batch."""
    try:
        return fetch_one(video_id, videos_dir, config, tmp_root=tmp_root, ydl_factory=ydl_factory)
    except Exception as e:
        redact = config.redactor()
        log_path = Workdir(videos_dir.parent).log_path  # the workdir's log: its traceback, masked
        try:
            write_traceback(log_path, e, f"download {video_id}", redact=redact)
        except OSError:
            log_path = None
        log.error("%s", redact(f"{video_id}: unexpected error {e!r}" + (f" (traceback in {log_path})" if log_path else "")))
        return FetchResult(video_id, "failed", DownloadFailure.INTERNAL, redact(f"[download] {video_id}: {e!r}"),
                           session=config.session)
