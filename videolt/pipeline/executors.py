"""Executors: where stage functions run. They schedule and bound work; they hold no stage logic.

Every stage is expressed as `work(job) -> partial` (CPU or I/O work: decoding, downloading;
picklable, run in parallel) followed, optionally, by sinks (`SinkPlan`: one stateful consumer per
device, model inference and the rows it writes); the contract is `videolt.executor`'s. `threads`
runs `work` on threads of this process, `local` in a process pool, both with one sink in this
process, or one sink process per device that decodes its share of the jobs on processes of its
own (`videolt.pipeline.sinks`); `ray` runs `work` as Ray tasks
and each sink as a Ray actor (one GPU each when its device is one), passing task results to the
actors by reference (`videolt.pipeline.ray_sinks`). All yield results as they finish, so the
caller records each outcome at once.

All three honour the same stops. Ctrl-C (`KeyboardInterrupt`): no further job is taken, the jobs in
flight finish and their results are yielded, then the interrupt is re-raised (process-pool workers
ignore SIGINT, so the terminal's Ctrl-C reaches only this process). An early close of the
generator (the consumer raised, e.g. a `StageError`): unstarted jobs are cancelled and running ones
waited for, so nothing runs on after `run` returns. With `workers=0` the `local` executor runs
`work` in the calling thread, where Ctrl-C abandons the job in progress.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import os
import signal
from concurrent.futures import Executor as _Pool, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable, Iterator

from videolt.errors import ConfigError, UsageError
from videolt.executor import Executor, SinkPlan
from videolt.pipeline.lifeline import exit_with
from videolt.pipeline.ray_sinks import drive_on_ray
from videolt.pipeline.sinks import InlinePool, drive, drive_sink_processes
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
                   ray_address: str | None = None, nice: int = 0, sinks: int = 1) -> Executor:
    """The executor a stage config names, with its `workers` (and `ray_address`, the cluster to join;
    `nice`, the priority increment of local work processes: other executors ignore it; `sinks`, the
    sink actors a local Ray instance must make room for)."""
    opts: dict[str, Any] = {"address": ray_address} if ray_address is not None else {}
    if nice and name == "local":
        opts["nice"] = nice
    if sinks > 1 and name == "ray":
        opts["sinks"] = sinks
    return create_executor(name, workers=workers, in_flight=in_flight, **opts)


class _PoolExecutor:
    """`work` on a `concurrent.futures` pool of `workers`, created on first use; one sink in this process
    (several: one process each, with a share of the workers)."""

    jobs_per_worker = 1  # default `in_flight` per worker

    def __init__(self, workers: int = 1, in_flight: int | None = None):
        if workers < 0:
            raise ConfigError(f"workers (--workers) must be >= 0, got {workers}")
        self.workers = workers
        self.in_flight = in_flight or max(self.jobs_per_worker * workers, 1)
        self._pool: _Pool | None = None

    def _make_pool(self) -> _Pool:
        raise NotImplementedError

    def run(self, work, jobs, sinks: SinkPlan | None = None) -> Iterator[Any]:
        if sinks is not None and len(sinks.devices) > 1:  # a process per sink, each with its share of decoders
            yield from drive_sink_processes(work, jobs, sinks, self.workers, self._sink_pool)
            return
        in_flight = self.in_flight
        if sinks is not None:  # enough decoded partials to keep every sink full
            in_flight = max(in_flight, self.workers + sinks.room * len(sinks.devices))
        if self.workers == 0:  # in this thread
            yield from drive(InlinePool(), work, jobs, in_flight, sinks)
            return
        if self._pool is None:
            self._pool = self._make_pool()
        yield from drive(self._pool, work, jobs, in_flight, sinks)

    def _sink_pool(self, workers: int) -> Callable[[], _Pool]:
        """A picklable factory of a pool like this executor's, of `workers`, built inside a sink process."""
        return functools.partial(_pool_like, type(self), workers, getattr(self, "nice", 0))

    def gpus(self) -> int:
        """The GPUs of this machine that torch sees."""
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _pool_like(kind: type, workers: int, nice: int) -> _Pool:
    """The pool an executor of `kind` would make (in a sink process: its own decoders)."""
    return kind(workers, **({"nice": nice} if nice else {}))._make_pool()


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
    """Ray tasks for `work` (`num_cpus=1` each) and one Ray actor per sink (`videolt.pipeline.ray_sinks`).

    On an early close the tasks out (at most `in_flight`) are waited for, queued ones included:
    `ray.cancel` cannot tell a queued task from a running one, and would interrupt the latter.
    `sinks`: how many sink actors a local instance it starts must hold beside the decoders.
    `sink_device` (tests): the device GPU sink actors compute on instead of their GPU, so that a
    cluster of simulated nodes declaring GPUs runs on the CPU.
    """

    def __init__(self, address: str | None = None, in_flight: int | None = None, workers: int | None = None,
                 sinks: int = 1, sink_device: str | None = None):
        try:
            import ray
        except ImportError:
            raise ConfigError("executor ray (--executor ray) needs the ray extra: pip install 'videolt[ray]'") from None
        self._ray = ray
        self._owned = not ray.is_initialized()  # an instance someone else started is theirs to stop
        if self._owned:
            # A local instance gets one CPU per sink more than the decode workers: each sink actor holds
            # one for its lifetime, and with `num_cpus=workers` no decode task could ever be scheduled.
            kwargs: dict[str, Any] = {"address": address} if address else {
                "num_cpus": workers + sinks if workers else None}
            ray.init(log_to_driver=False, include_dashboard=False, **kwargs)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.in_flight = in_flight or 2 * max(workers or cpus, 1)
        self.sink_device = sink_device

    def run(self, work, jobs, sinks: SinkPlan | None = None) -> Iterator[Any]:
        ray = self._ray
        if sinks is not None:
            yield from drive_on_ray(ray, work, jobs, sinks, self.in_flight, self.sink_device)
            return
        remote_work = ray.remote(num_cpus=1)(work)
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
                            pending.append(remote_work.remote(job))
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

    def _ready(self, pending: list) -> Iterator[Any]:
        """Yield the results that finish within one poll, removing them from `pending`."""
        done, rest = self._ray.wait(pending, num_returns=1, timeout=_POLL_S)
        pending[:] = rest
        for ref in done:
            yield self._ray.get(ref)

    def gpus(self) -> int:
        """The GPUs the Ray cluster declares."""
        return int(self._ray.cluster_resources().get("GPU", 0))

    def close(self) -> None:
        """Disconnect from what this executor connected to (a joined cluster keeps running; a local
        instance it started stops); leave alone an instance that was running before it."""
        if self._owned:
            self._ray.shutdown()
            self._owned = False

