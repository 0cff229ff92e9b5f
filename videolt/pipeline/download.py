"""The download stage on any executor (Ray included), paced cluster-wide by the driver.

`videolt.data.download.download_pending` paces worker threads of one process. Here each fetch
(`fetch_one`) runs wherever the executor puts it, one per downloader slot, while the token bucket
and the circuit breaker stay in the driver: a job is handed to the executor only after it took a
token and no rate-limit pause is in force, so the whole cluster starts at most `rate_per_hour`
videos an hour. Outcomes are recorded in the manifest as they arrive, with the same rules as
`download_pending`: a rate-limit answer costs no attempt and pauses everyone, transient failures
are retried with backoff up to `max_attempts`, a tooling failure stops the run.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter, deque
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videolt.data.download import (
    PARTIAL_DIR, STAGE, YTDLP_VERSION, DownloadConfig, FetchResult, YdlFactory, _select, fetch_one,
    process_dir_name, remove_stale_partials)
from videolt.data.failures import Failure
from videolt.data.ids import is_valid_id
from videolt.data.manifest import Manifest
from videolt.data.pacing import CircuitBreaker, TokenBucket
from videolt.data.workdir import Workdir
from videolt.errors import StageError, UsageError
from videolt.pipeline.executors import Executor, create_executor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchJob:
    """One attempt at one video, as plain picklable data for a remote worker."""

    index: int
    video_id: str
    attempts: int  # attempts recorded before this one
    videos_dir: str
    tmp_root: str
    config: DownloadConfig
    ydl_factory: YdlFactory | None = None


def fetch_job(job: FetchJob) -> tuple[FetchJob, FetchResult]:
    """Run `fetch_one` for a job; a bug on our side becomes an `internal` failure, never an exception."""
    try:
        result = fetch_one(job.video_id, Path(job.videos_dir), job.config, tmp_root=Path(job.tmp_root),
                           ydl_factory=job.ydl_factory)
    except Exception as e:
        log.exception("%s: unexpected error", job.video_id)
        result = FetchResult(job.video_id, "failed", Failure.INTERNAL, f"[download] {job.video_id}: {e!r}")
    return job, result


def run_download(workdir: Workdir, config: DownloadConfig = DownloadConfig(), executor: Executor | None = None, *,
                 splits: Sequence[str] | None = None, limit: int | None = None, recheck: Collection[str] = (),
                 ydl_factory: YdlFactory | None = None) -> dict[str, Any]:
    """Download every pending video (as `download_pending` selects them) on `executor`.

    Give the executor `in_flight=config.workers` (one fetch per downloader slot); by default a
    local process pool of that size is used. A token is taken when the executor asks for the next
    job, so the k-th fetch never starts before the k-th token; a worker the executor starts late
    (e.g. a fresh Ray worker process) may begin right after the one before, so a burst is at most
    `burst + in_flight`. Returns `{"todo", "done", "failed": {class: n}}`.
    """
    known = {f.value for f in Failure}
    if set(recheck) - known:
        raise UsageError(f"--recheck {sorted(set(recheck) - known)[0]!r}: not a failure class "
                         f"({', '.join(sorted(known))})")
    if limit is not None and limit < 0:
        raise UsageError(f"--limit {limit}: must be >= 0")
    for d in remove_stale_partials(workdir.videos_dir):
        log.info("removed %s, left by a killed run", d)
    own = executor is None
    executor = executor or create_executor("local", workers=config.workers, in_flight=config.workers)
    tmp_root = workdir.videos_dir / PARTIAL_DIR / process_dir_name()
    selected = _select(workdir, splits, recheck, config.max_attempts)[:limit]
    tally: Counter[str] = Counter()
    queue: deque[FetchJob] = deque()
    retries: list[tuple[float, FetchJob]] = []  # (monotonic time due, job)
    bucket = TokenBucket(config.rate_per_hour, config.burst, jitter=config.jitter_s)
    breaker = CircuitBreaker(config.pause_s, factor=config.pause_factor, max_trips=config.max_trips)
    try:
        with workdir.manifest() as m:
            for row, attempts in selected:
                existing = workdir.find_video(row.video_id) if row.id_valid else None
                if existing is not None:  # moved into place by a run killed before it could record it
                    m.record(STAGE, row.index, "done", info={"path": str(existing.relative_to(workdir.root)),
                                                              "bytes": existing.stat().st_size}, attempt=False)
                    tally["done"] += 1
                else:
                    queue.append(FetchJob(row.index, row.video_id, attempts, str(workdir.videos_dir),
                                          str(tmp_root), config, ydl_factory))
            while queue or retries:
                if not queue:
                    retries.sort(key=lambda r: r[0])
                    time.sleep(max(0.0, retries[0][0] - time.monotonic()))
                    now = time.monotonic()
                    queue.extend(job for due, job in retries if due <= now)
                    retries = [(due, job) for due, job in retries if due > now]
                for job, result in executor.run(fetch_job, _paced(queue, workdir, config, bucket, breaker)):
                    retry_in = _settle(m, job, result, workdir, config, breaker)
                    if retry_in is None:
                        tally[result.failure.value if result.failure else "done"] += 1
                    else:
                        attempts = job.attempts + (result.failure is not Failure.RATE_LIMITED)
                        retries.append((time.monotonic() + retry_in, FetchJob(
                            job.index, job.video_id, attempts, job.videos_dir, job.tmp_root, job.config,
                            job.ydl_factory)))
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
        if own:
            executor.close()
    done = tally.pop("done", 0)
    return {"todo": len(selected), "done": done, "failed": dict(tally)}


def _paced(queue: deque[FetchJob], workdir: Workdir, config: DownloadConfig, bucket: TokenBucket,
           breaker: CircuitBreaker) -> Iterator[FetchJob]:
    """Hand out jobs only when the driver's pacing allows a start (invalid IDs cost no token)."""
    while queue:
        job = queue.popleft()
        if is_valid_id(job.video_id):
            free_gb = shutil.disk_usage(workdir.videos_dir).free / 1e9
            if free_gb < config.min_free_gb:
                raise StageError(f"{workdir.videos_dir}: {free_gb:.1f} GB free, below download.min_free_gb = "
                                 f"{config.min_free_gb}; free some space and rerun (nothing is lost)")
            while breaker.paused_for() > 0:
                breaker.wait()
            bucket.acquire()
        yield job


def _settle(m: Manifest, job: FetchJob, result: FetchResult, workdir: Workdir, config: DownloadConfig,
            breaker: CircuitBreaker) -> float | None:
    """Record one attempt; returns seconds until the video should be tried again, or None if settled."""
    if result.failure is Failure.RATE_LIMITED:  # not the video's fault: costs no attempt
        m.record(STAGE, job.index, "failed", failure=result.failure.value, message=result.message, attempt=False)
        log.warning("rate-limited; every worker pauses for %.0f s (%s)", breaker.trip(), result.message)
        return 0.0
    m.record(STAGE, job.index, result.status, failure=result.failure and result.failure.value,
             message=result.message, info=result.info(workdir.root) if result.status == "done" else None)
    if result.status == "done":
        breaker.success()
    elif result.failure is Failure.TOOLING:
        raise StageError(f"yt-dlp {YTDLP_VERSION} can no longer fetch videos ({result.message}); "
                         "upgrade it (pip install -U 'yt-dlp[default]') and rerun")
    elif result.failure is Failure.TRANSIENT and job.attempts + 1 < config.max_attempts:
        return config.backoff(job.attempts + 1)
    return None
