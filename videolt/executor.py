"""The executor protocol: how stage code runs its per-video work without knowing where.

A stage expresses its work as `work(job) -> partial` (picklable, CPU-bound: decoding, downloading)
and, optionally, sinks that take partials (stateful consumers, one per device: inference and the
rows it writes). An executor runs `work` somewhere (threads, local processes, a Ray cluster),
hands each partial to a sink with room, and yields the results as they finish.

Stage code takes an executor as a parameter typed with these protocols; the implementations live in
`videolt.pipeline.executors` and are chosen by the caller (the CLI, `videolt run`, a test), so stage
code never imports `pipeline`.

Every executor honours the same contract: jobs are pulled lazily from the iterable (a job is only
taken when there is room for it, so a generator can pace them), at most `in_flight` are outstanding,
and on `KeyboardInterrupt` no further job is taken, the jobs in flight are finished and their
results yielded, and then the interrupt is re-raised.

Sinks (`SinkPlan`): one per device of the plan. A sink takes a partial with `submit`, which returns
a future, so it can overlap its own steps (copy, compute, write) across partials. A sink that dies
(its process or actor is killed, its device fails) loses only the partials it held: the executor
hands them to the surviving sinks. When none survives, the executor raises `SinksLost` naming the
jobs that no sink could finish.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol

from videolt.errors import StageError

__all__ = ["Executor", "Sink", "SinkFactory", "SinkLost", "SinkPlace", "SinkPlan", "SinksLost"]


class Sink(Protocol):
    """One stateful consumer of partial results (e.g. a model on a device writing feature rows)."""

    def submit(self, partial: Any) -> Future:
        """Take `partial`; the future gives its result. Blocks while the sink holds `room` partials."""
        ...

    def close(self) -> None:
        """Finish what was submitted, then release the device."""
        ...


@dataclass(frozen=True)
class SinkPlace:
    """Where one sink runs: its index in the plan, the device it computes on, and the node it is on."""

    index: int
    device: str  # as torch names it in the sink's process ("cpu", "cuda:0"; on Ray the actor's own GPU)
    node: str = ""  # host name or Ray node address
    label: str = ""  # the device as the user knows it ("cuda:3", "GPU 3"); default `device`

    @property
    def name(self) -> str:
        return f"{self.node}/{self.label or self.device}" if self.node else (self.label or self.device)


SinkFactory = Callable[[SinkPlace], Sink]


@dataclass(frozen=True)
class SinkPlan:
    """The sinks a run wants: one per entry of `devices` ("cpu", "cuda:N"), each built by `factory`.

    `room`: partials one sink may hold at once (enough to fill a forward and overlap its steps).
    A `factory` handed to process or Ray sinks must be picklable.
    """

    factory: SinkFactory
    devices: tuple[str, ...] = ("cpu",)
    room: int = 2

    @property
    def gpus(self) -> int:
        """The GPU sinks of the plan."""
        return sum(d != "cpu" for d in self.devices)


class SinkLost(StageError):
    """A sink can take no more work (its process or actor died, its device failed)."""


class SinksLost(StageError):
    """Every sink of a run died; `jobs` were held by them and could not be given to another."""

    def __init__(self, message: str, jobs: list[Any]):
        super().__init__(message)
        self.jobs = jobs


class Executor(Protocol):
    """Runs `work` over `jobs` (and their partials through the plan's sinks); yields results as they finish."""

    def run(self, work: Callable[[Any], Any], jobs: Iterable[Any], sinks: SinkPlan | None = None) -> Iterator[Any]: ...

    def gpus(self) -> int:
        """The GPUs this executor can give sinks (this machine's, or the Ray cluster's)."""
        ...

    def close(self) -> None: ...
