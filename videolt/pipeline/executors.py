"""Executors: where stage functions run. They schedule and bound work; they hold no stage logic.

Every stage is expressed as `work(job) -> partial` (CPU or I/O work: decoding, downloading;
picklable, run in parallel) followed by `sink.consume(partial) -> result` (one stateful consumer per
device: model inference and the rows it writes); the contract is `videolt.executor`'s. `threads`
runs `work` on threads of this process, `local` in a process pool, both with the sink in this
process; `ray` runs `work` as Ray tasks and the sink as a Ray actor (on a GPU when asked), passing
task results to the actor by reference. All yield results as they finish, so the caller records
each outcome at once.

All three honour the same stops. Ctrl-C (`KeyboardInterrupt`): no further job is taken, the jobs in
flight finish and their results are yielded, then the interrupt is re-raised (process-pool workers
ignore SIGINT, so the terminal's Ctrl-C reaches only this process). An early close of the
generator (the consumer raised, e.g. a `StageError`): unstarted jobs are cancelled and running ones
waited for, so nothing runs on after `run` returns. With `workers=0` the `local` executor runs
`work` in the calling thread, where Ctrl-C abandons the job in progress.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
from concurrent.futures import FIRST_COMPLETED, Executor as _Pool, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator

from videolt.errors import UsageError
from videolt.executor import Executor, SinkFactory
from videolt.pipeline.lifeline import exit_with
from videolt.registry import Registry

__all__ = ["EXECUTORS", "LocalExecutor", "RayExecutor", "ThreadExecutor", "create_executor", "stage_executor"]

log = logging.getLogger(__name__)

EXECUTORS: Registry[Callable[..., Executor]] = Registry("executor")

# Seconds between checks for Ctrl-C while waiting: a simulated interrupt (`_thread.interrupt_main`)
# does not wake a blocked wait, and a join interrupted by Ctrl-C can misreport (CPython gh-90882).
_POLL_S = 0.2
_END = object()  # the jobs iterator is exhausted


def create_executor(name: str, **opts: Any) -> Executor:
    """The executor registered as `name` (threads, local, ray), built with `opts`."""
    return EXECUTORS.get(name)(**opts)


def stage_executor(name: str, *, workers: int, in_flight: int | None = None,
                   ray_address: str | None = None, nice: int = 0) -> Executor:
    """The executor a stage config names, with its `workers` (and `ray_address`, the cluster to join;
    `nice`, the priority increment of local work processes: other executors ignore it)."""
    opts: dict[str, Any] = {"address": ray_address} if ray_address is not None else {}
    if nice and name == "local":
        opts["nice"] = nice
    return create_executor(name, workers=workers, in_flight=in_flight, **opts)


def _identity(partial: Any) -> Any:
    return partial


def _drive(pool: _Pool, work: Callable[[Any], Any], jobs: Iterable[Any], in_flight: int,
           sink_factory: SinkFactory | None) -> Iterator[Any]:
    """Run `work` over `jobs` on `pool`, at most `in_flight` at a time, pulling a job only when there is room.

    The sink is built once the first jobs are handed over, so that they run while it is built (a
    backbone takes seconds to construct, a worker pool seconds to start)."""
    pending: set[Future] = set()
    it = iter(jobs)
    finish: Callable[[Any], Any] | None = None
    try:
        try:
            while True:
                while it is not None and len(pending) < in_flight:
                    job = next(it, _END)
                    if job is _END:
                        it = None
                    else:
                        pending.add(pool.submit(work, job))
                if finish is None:
                    finish = sink_factory().consume if sink_factory else _identity
                if not pending:
                    return
                done, _ = wait(pending, timeout=_POLL_S, return_when=FIRST_COMPLETED)
                for fut in done:
                    pending.discard(fut)
                    yield finish(fut.result())
        except KeyboardInterrupt:
            if finish is None:  # interrupted while the sink was built: nothing can take the results
                raise
            log.warning("interrupted: finishing the %d jobs in flight, then stopping", len(pending))
            while pending:
                done, _ = wait(pending, timeout=_POLL_S, return_when=FIRST_COMPLETED)
                for fut in done:
                    pending.discard(fut)
                    yield finish(fut.result())
            raise
    finally:  # closed early or failed: cancel what has not started, wait for what has
        for fut in pending:
            fut.cancel()
        wait(pending)


class _PoolExecutor:
    """`work` on a `concurrent.futures` pool of `workers`, created on first use; the sink in this process."""

    jobs_per_worker = 1  # default `in_flight` per worker

    def __init__(self, workers: int = 1, in_flight: int | None = None):
        if workers < 0:
            raise UsageError(f"--workers must be >= 0, got {workers}")
        self.workers = workers
        self.in_flight = in_flight or max(self.jobs_per_worker * workers, 1)
        self._pool: _Pool | None = None

    def _make_pool(self) -> _Pool:
        raise NotImplementedError

    def run(self, work, jobs, sink_factory: SinkFactory | None = None, *, sink_gpus: float = 0) -> Iterator[Any]:
        if self.workers == 0:  # in this thread
            finish = sink_factory().consume if sink_factory else _identity
            for job in jobs:
                yield finish(work(job))
            return
        if self._pool is None:
            self._pool = self._make_pool()
        yield from _drive(self._pool, work, jobs, self.in_flight, sink_factory)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


@EXECUTORS.register("threads")
class ThreadExecutor(_PoolExecutor):
    """`workers` threads of this process for `work` (I/O-bound: downloads); one job in flight per thread."""

    def _make_pool(self) -> _Pool:
        return ThreadPoolExecutor(self.workers, thread_name_prefix="videolt-work")


@EXECUTORS.register("local")
class LocalExecutor(_PoolExecutor):
    """`workers` processes for `work` (0: in this thread); two jobs in flight per process. `nice` > 0
    lowers the processes' priority, so that they yield the cores to this process (e.g. a CPU backbone)."""

    jobs_per_worker = 2

    def __init__(self, workers: int = 1, in_flight: int | None = None, nice: int = 0):
        super().__init__(workers, in_flight)
        if nice < 0:
            raise UsageError(f"nice must be >= 0 (a lower priority), got {nice}")
        self.nice = nice

    def _make_pool(self) -> _Pool:
        # forkserver: workers never inherit the parent's torch threads or open files.
        return ProcessPoolExecutor(self.workers, mp_context=mp.get_context("forkserver"),
                                   initializer=_init_worker, initargs=(self.nice, os.getpid()))


def _init_worker(nice: int = 0, driver: int | None = None) -> None:
    """In a pool worker: the terminal's Ctrl-C goes to the whole process group; the driver decides.
    `nice` lowers this worker's priority; the worker ends when process `driver` does (no orphans)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if nice:
        os.nice(nice)
    if driver is not None:
        exit_with(driver)


@EXECUTORS.register("ray")
class RayExecutor:
    """Ray tasks for `work` (`num_cpus=1` each) and a Ray actor for the sink (`num_gpus=sink_gpus`).

    On an early close the tasks out (at most `in_flight`) are waited for, queued ones included:
    `ray.cancel` cannot tell a queued task from a running one, and would interrupt the latter.
    """

    def __init__(self, address: str | None = None, in_flight: int | None = None, workers: int | None = None):
        try:
            import ray
        except ImportError:
            raise UsageError("--executor ray needs the ray extra: pip install 'videolt[ray]'") from None
        self._ray = ray
        self._owned = not ray.is_initialized()  # an instance someone else started is theirs to stop
        if self._owned:
            # A local instance gets one CPU more than the decode workers: the sink actor holds one for
            # its lifetime, and with `num_cpus=workers` no decode task could ever be scheduled.
            kwargs: dict[str, Any] = {"address": address} if address else {
                "num_cpus": workers + 1 if workers else None}
            ray.init(log_to_driver=False, include_dashboard=False, **kwargs)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.in_flight = in_flight or 2 * max(workers or cpus, 1)

    def run(self, work, jobs, sink_factory: SinkFactory | None = None, *, sink_gpus: float = 0) -> Iterator[Any]:
        ray = self._ray
        remote_work = ray.remote(num_cpus=1)(work)
        actor = None
        if sink_factory is not None:
            actor = ray.remote(num_cpus=1, num_gpus=sink_gpus)(_SinkActor).remote(sink_factory)
        pending: list = []
        it = iter(jobs)
        try:
            try:
                while True:
                    while it is not None and len(pending) < self.in_flight:
                        job = next(it, _END)
                        if job is _END:
                            it = None
                        else:
                            ref = remote_work.remote(job)
                            pending.append(actor.consume.remote(ref) if actor is not None else ref)
                    if not pending:
                        return
                    yield from self._ready(pending)
            except KeyboardInterrupt:
                log.warning("interrupted: finishing the %d jobs in flight, then stopping", len(pending))
                while pending:
                    yield from self._ready(pending)
                raise
        finally:  # closed early or failed: wait for the tasks out (see the class docstring)
            if pending:
                ray.wait(pending, num_returns=len(pending))
            if actor is not None:  # no actor outlives its run
                ray.kill(actor)

    def _ready(self, pending: list) -> Iterator[Any]:
        """Yield the results that finish within one poll, removing them from `pending`."""
        done, rest = self._ray.wait(pending, num_returns=1, timeout=_POLL_S)
        pending[:] = rest
        for ref in done:
            yield self._ray.get(ref)

    def close(self) -> None:
        """Disconnect from what this executor connected to (a joined cluster keeps running; a local
        instance it started stops); leave alone an instance that was running before it."""
        if self._owned:
            self._ray.shutdown()
            self._owned = False


class _SinkActor:
    """Holds one sink inside a Ray actor process."""

    def __init__(self, sink_factory: SinkFactory):
        self.sink = sink_factory()

    def consume(self, partial: Any) -> Any:
        return self.sink.consume(partial)
