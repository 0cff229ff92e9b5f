"""The download stage's configuration: which videos, how, how fast, and with whose session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from videolt.config import field
from videolt.data import session as _session
from videolt.data import tooling
from videolt.data.failures import DownloadFailure
from videolt.data.workdir import DOWNLOAD_STAGE
from videolt.errors import ConfigError

STAGE = DOWNLOAD_STAGE
PARTIAL_DIR = ".partial"  # under videos/: one folder per running process, never a final path


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
    max_unreachable: int = field(5, "attempts in a row that get no answer from the host (offline, or a host that "
                                    "is not there) before the run stops; it stops sooner when none got one")
    max_pause_s: float = field(21600.0, "longest wait a 429's Retry-After may impose; a longer one stops the run")
    preflight: bool = field(True, "check runtime, cookies and disk first; refuse a run in which every fetch would fail")

    def __post_init__(self) -> None:
        if "{id}" not in self.url_template:
            raise ConfigError(f"download.url_template {self.url_template!r} must contain {{id}}")
        positive = ("max_short_side", "socket_timeout", "max_attempts", "rate_per_hour", "burst", "workers",
                    "pause_s", "max_trips", "max_bot_checks", "max_pause_s", "max_unreachable")
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
