"""The batch runner: every pending video of a workdir on any executor, paced here, recorded as it ends.

`download_pending` runs `fetch_one` over the manifest's pending videos on any executor (threads,
processes, Ray): this process keeps the one `TokenBucket` and `CircuitBreaker` and hands a fetch to
the executor only when they allow a start, so a whole cluster keeps the rate, and it records every
attempt as it finishes. Before it starts, `preflight` checks what every fetch needs (a JavaScript
runtime for YouTube, a readable cookies file, writable and free disk) and refuses a run that could
fetch nothing.

Answers about the session rather than the video cost the video no attempt: a rate limit pauses
every worker (for the `Retry-After` the answer gave, if yt-dlp kept it), a bot check is counted and
stops the run after `max_bot_checks` in a row, and a session yt-dlp cannot use stops it at once.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import os
import shutil
import socket
import sys
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from videolt.data import tooling
from videolt.data.download.config import PARTIAL_DIR, STAGE, DownloadConfig
from videolt.data.download.fetch import YTDLP_VERSION, FetchResult, YdlFactory, fetch_guarded
from videolt.data.failures import NOT_THE_VIDEOS_FAULT, RETRYABLE, DownloadFailure
from videolt.data.ids import is_valid_id
from videolt.data.locks import pid_alive
from videolt.data.manifest import Manifest, VideoRow
from videolt.data.pacing import CircuitBreaker, Streak, TokenBucket
from videolt.data.workdir import Workdir
from videolt.errors import StageError
from videolt.executor import Executor

log = logging.getLogger(__name__)


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
    # our own pid: a leftover of an earlier process that had it, which is not running now
    return pid != os.getpid() and pid_alive(pid)


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
        return (f"{head}; {tail}. Sign in with your own account's cookies (cookies: --cookies FILE, or "
                f"cookies_from_browser: --cookies-from-browser NAME), lower rate_per_hour (--rate; now "
                f"{config.rate_per_hour:g}/h), or wait an hour")
    return (f"{head} with your {config.session} session; {tail}. Lower rate_per_hour (--rate; now "
            f"{config.rate_per_hour:g}/h), "
            "wait an hour or more, and check that the cookies are fresh (exported from a private window)")


def attempts_after(result: FetchResult, attempts: int) -> int:
    """The attempt count once `result` is recorded (an answer about the session costs none)."""
    return attempts + (result.failure not in NOT_THE_VIDEOS_FAULT)


def outcome(result: FetchResult) -> str:
    """The key a settled result is counted under: "done" or its failure class."""
    return result.failure.value if result.failure else "done"


def summary(todo: int, tally: Counter[str], examples: dict[str, str] | None = None) -> dict[str, Any]:
    """A run's return value: `{"todo", "done", "failed": {class: n}, "messages": {class: the last message}}`."""
    failed = dict(tally)
    return {"todo": todo, "done": failed.pop("done", 0), "failed": failed, "messages": dict(examples or {})}


class Reachability:
    """Stops a run that reaches no host: `max_unreachable` attempts in a row without an answer
    (`FetchResult.unreachable`), or, once only retries are left to wait for, every attempt so far
    without one. Backing off for minutes cannot help then, and each attempt costs its video one."""

    def __init__(self, config: DownloadConfig):
        self.limit = config.max_unreachable
        self.host = urllib.parse.urlsplit(config.url("x")).netloc or config.url_template
        self.attempts = self.unanswered = self.streak = 0
        self.last = ""

    def observe(self, result: FetchResult) -> None:
        """Count one settled attempt; raise `StageError` at `max_unreachable` unanswered in a row."""
        if result.failure is DownloadFailure.INVALID_ID:
            return  # never sent anywhere
        self.attempts += 1
        self.streak = self.streak + 1 if result.unreachable else 0
        if result.unreachable:
            self.unanswered += 1
            self.last = result.message or ""
        if self.streak >= self.limit:
            raise StageError(self._advice(self.streak, "in a row"))

    def before_waiting(self) -> None:
        """Raise `StageError` if no attempt of this run got an answer (rather than wait for a retry)."""
        if self.attempts and self.unanswered == self.attempts:
            raise StageError(self._advice(self.attempts, "of this run"))

    def _advice(self, n: int, which: str) -> str:
        reason = self.last.split(": ", 1)[-1] if self.last else "no answer"
        return (f"cannot reach {self.host}: {'all ' if n > 1 else ''}{n} attempt{'s' if n > 1 else ''} {which} got no "
                f"answer (last: {reason}); stopping instead of backing off. Check the network, or the URL template "
                f"(`videolt doctor` tests the host), and rerun: those videos stay retryable")


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
    _prepare(workdir, config, selected)
    tmp_root = workdir.videos_dir / PARTIAL_DIR / process_dir_name()
    tally = _Tally(len(selected), progress)
    pacing = _Pacing.from_config(config)
    try:
        with workdir.manifest() as m:
            queue = _Queue()
            for row, attempts in selected:
                if adopt_existing(m, workdir, row):
                    tally.count("done")
                else:
                    queue.new.append(FetchJob(row.index, row.video_id, attempts, str(workdir.videos_dir),
                                              str(tmp_root), config, ydl_factory))
            _drain(queue, m, workdir, config, executor, pacing, tally)
    finally:
        tally.close()
        shutil.rmtree(tmp_root, ignore_errors=True)  # after the executor finished every fetch it started
    return summary(len(selected), tally.counts, tally.examples)


def _prepare(workdir: Workdir, config: DownloadConfig, selected: list[tuple[VideoRow, int]]) -> None:
    """Before the first fetch: refuse a run that could fetch nothing (warnings logged), and remove the
    temp folders of killed runs."""
    if config.preflight:
        checks = preflight(workdir, config, pending=sum(v.id_valid for v, _ in selected))
        tooling.refuse(checks)
        for check in checks:
            if check.status == "warn":
                log.warning("%s", check.line())
    for d in remove_stale_partials(workdir.videos_dir):
        log.info("removed %s, left by a killed run", d)


class _Tally:
    """The settled videos of a run by outcome, the last message of each failure class, and the progress bar."""

    def __init__(self, total: int, progress: bool):
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self._bar = tqdm(total=total, desc="download", unit="video", file=sys.stderr, disable=not progress)

    def count(self, key: str, message: str | None = None) -> None:
        self.counts[key] += 1
        if message:
            self.examples[key] = message
        self._bar.set_postfix(self.counts, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


@dataclass(frozen=True)
class _Pacing:
    """What one run keeps in this process whatever executor fetches: the rate, the pauses, the streaks."""

    bucket: TokenBucket
    breaker: CircuitBreaker
    bot_checks: Streak
    reach: Reachability

    @classmethod
    def from_config(cls, config: DownloadConfig) -> _Pacing:
        return cls(TokenBucket(config.rate_per_hour, config.burst, jitter=config.jitter_s),
                   CircuitBreaker(config.pause_s, factor=config.pause_factor, max_trips=config.max_trips,
                                  max_pause_s=config.max_pause_s),
                   Streak(), Reachability(config))


def _drain(queue: _Queue, m: Manifest, workdir: Workdir, config: DownloadConfig, executor: Executor,
           pacing: _Pacing, tally: _Tally) -> None:
    """Hand out the queue's jobs as pacing allows and settle each result as it ends, until nothing is left."""
    while queue:
        if not queue.new:
            pacing.reach.before_waiting()
        queue.sleep_until_due()
        paced = _paced(queue, workdir, config, pacing.bucket, pacing.breaker)
        with closing(executor.run(fetch_job, paced)) as results:
            for job, result in results:
                retry_in = settle(m, workdir, job.index, result, job.attempts, config, pacing.breaker,
                                  pacing.bot_checks)
                pacing.reach.observe(result)
                if retry_in is None:
                    tally.count(outcome(result), result.message)
                else:
                    queue.retry(dataclasses.replace(job, attempts=attempts_after(result, job.attempts)), retry_in)


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
