"""The download stage on any executor (Ray included), paced cluster-wide by the driver.

`videolt.data.download.download_pending` paces worker threads of one process. Here each fetch
(`fetch_one`) runs wherever the executor puts it, one per downloader slot, while the token bucket
and the circuit breaker stay in the driver: a job is handed to the executor only after it took a
token and no rate-limit pause is in force, so the whole cluster starts at most `rate_per_hour`
videos an hour. Selection and outcome rules are `download_pending`'s own (`select_pending`,
`adopt_existing`, `settle`), so both runners record the same manifest for the same answers.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections import Counter, deque
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videolt.data.download import (
    PARTIAL_DIR, DownloadConfig, FetchResult, YdlFactory, adopt_existing, attempts_after, check_disk, fetch_guarded,
    outcome, process_dir_name, remove_stale_partials, select_pending, settle, summary)
from videolt.data.ids import is_valid_id
from videolt.data.pacing import CircuitBreaker, TokenBucket
from videolt.data.workdir import Workdir
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
    return job, fetch_guarded(job.video_id, Path(job.videos_dir), job.config, Path(job.tmp_root), job.ydl_factory)


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
    selected = select_pending(workdir, config.max_attempts, splits=splits, limit=limit, recheck=recheck)
    for d in remove_stale_partials(workdir.videos_dir):
        log.info("removed %s, left by a killed run", d)
    own = executor is None
    executor = executor or create_executor("local", workers=config.workers, in_flight=config.workers)
    tmp_root = workdir.videos_dir / PARTIAL_DIR / process_dir_name()
    tally: Counter[str] = Counter()
    queue: deque[FetchJob] = deque()
    retries: list[tuple[float, FetchJob]] = []  # (monotonic time due, job)
    bucket = TokenBucket(config.rate_per_hour, config.burst, jitter=config.jitter_s)
    breaker = CircuitBreaker(config.pause_s, factor=config.pause_factor, max_trips=config.max_trips)
    try:
        with workdir.manifest() as m:
            for row, attempts in selected:
                if adopt_existing(m, workdir, row):
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
                    retry_in = settle(m, workdir, job.index, result, job.attempts, config, breaker)
                    if retry_in is None:
                        tally[outcome(result)] += 1
                    else:
                        retries.append((time.monotonic() + retry_in,
                                        dataclasses.replace(job, attempts=attempts_after(result, job.attempts))))
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
        if own:
            executor.close()
    return summary(len(selected), tally)


def _paced(queue: deque[FetchJob], workdir: Workdir, config: DownloadConfig, bucket: TokenBucket,
           breaker: CircuitBreaker) -> Iterator[FetchJob]:
    """Hand out jobs only when the driver's pacing allows a start (invalid IDs cost no token)."""
    while queue:
        job = queue.popleft()
        if is_valid_id(job.video_id):
            check_disk(workdir.videos_dir, config.min_free_gb)
            while breaker.paused_for() > 0:
                breaker.wait()
            bucket.acquire()
        yield job
