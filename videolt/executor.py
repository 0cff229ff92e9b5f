"""The executor protocol: how stage code runs its per-video work without knowing where.

A stage expresses its work as `work(job) -> partial` (picklable, CPU-bound: decoding, downloading)
and, optionally, `sink.consume(partial) -> result` (one stateful consumer per device: inference and
the rows it writes). An executor runs `work` somewhere (threads, local processes, a Ray cluster),
feeds each partial to one sink built from `sink_factory`, and yields the results as they finish.

Stage code takes an executor as a parameter typed with these protocols; the implementations live in
`videolt.pipeline.executors` and are chosen by the caller (the CLI, `videolt run`, a test), so stage
code never imports `pipeline`.

Every executor honours the same contract: jobs are pulled lazily from the iterable (a job is only
taken when there is room for it, so a generator can pace them), at most `in_flight` are outstanding,
and on `KeyboardInterrupt` no further job is taken, the jobs in flight are finished and their
results yielded, and then the interrupt is re-raised.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Protocol

__all__ = ["Executor", "Sink", "SinkFactory"]


class Sink(Protocol):
    """One stateful consumer of partial results (e.g. a model on a device writing feature rows)."""

    def consume(self, partial: Any) -> Any: ...


SinkFactory = Callable[[], Sink]


class Executor(Protocol):
    """Runs `work` over `jobs` (and their partials through one sink); yields results as they finish."""

    def run(self, work: Callable[[Any], Any], jobs: Iterable[Any], sink_factory: SinkFactory | None = None,
            *, sink_gpus: float = 0) -> Iterator[Any]: ...

    def close(self) -> None: ...
