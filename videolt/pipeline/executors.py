"""Executors: where stage functions run. They schedule and bound work; they hold no stage logic.

Every stage is expressed as `work(job) -> partial` (CPU work: decoding, downloading; picklable, run
in parallel) followed by `sink.consume(partial) -> result` (one stateful consumer per device: model
inference and the rows it writes). The local executor runs `work` in a process pool and the sink in
the calling process; the Ray executor runs `work` as Ray tasks and the sink as a Ray actor (on a GPU
when asked), passing task results to the actor by reference. Both yield results as they finish, so
the caller records each outcome at once.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator, Protocol

from videolt.errors import UsageError
from videolt.registry import Registry


class Sink(Protocol):
    def consume(self, partial: Any) -> Any: ...


SinkFactory = Callable[[], Sink]


class Executor(Protocol):
    def run(self, work: Callable[[Any], Any], jobs: Iterable[Any], sink_factory: SinkFactory | None = None,
            *, sink_gpus: float = 0) -> Iterator[Any]: ...

    def close(self) -> None: ...


EXECUTORS: Registry[Callable[..., Executor]] = Registry("executor")


def create_executor(name: str, **opts: Any) -> Executor:
    return EXECUTORS.get(name)(**opts)


@EXECUTORS.register("local")
class LocalExecutor:
    """`workers` processes for `work` (0: in this process); the sink runs in this process."""

    def __init__(self, workers: int = 1, in_flight: int | None = None):
        if workers < 0:
            raise UsageError(f"--workers must be >= 0, got {workers}")
        self.workers = workers
        self.in_flight = in_flight or max(2 * workers, 1)
        self._pool: ProcessPoolExecutor | None = None

    def run(self, work, jobs, sink_factory=None, *, sink_gpus=0):
        sink = sink_factory() if sink_factory else None
        finish = sink.consume if sink else (lambda p: p)
        if self.workers == 0:
            for job in jobs:
                yield finish(work(job))
            return
        if self._pool is None:
            # forkserver: workers never inherit the parent's torch threads or open files.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("forkserver"))
        pending: set[Future] = set()
        it = iter(jobs)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < self.in_flight:
                try:
                    pending.add(self._pool.submit(work, next(it)))
                except StopIteration:
                    exhausted = True
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield finish(fut.result())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


@EXECUTORS.register("ray")
class RayExecutor:
    """Ray tasks for `work` (`num_cpus=1` each) and a Ray actor for the sink (`num_gpus=sink_gpus`)."""

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

    def run(self, work, jobs, sink_factory=None, *, sink_gpus=0):
        ray = self._ray
        remote_work = ray.remote(num_cpus=1)(work)
        actor = None
        if sink_factory is not None:
            actor = ray.remote(num_cpus=1, num_gpus=sink_gpus)(_SinkActor).remote(sink_factory)
        pending: list = []
        it = iter(jobs)
        exhausted = False
        try:
            while pending or not exhausted:
                while not exhausted and len(pending) < self.in_flight:
                    try:
                        ref = remote_work.remote(next(it))
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append(actor.consume.remote(ref) if actor is not None else ref)
                if not pending:
                    break
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    yield ray.get(ref)
        finally:  # also when the caller stops early or a task raised: no actor outlives its run
            if actor is not None:
                ray.kill(actor)

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
