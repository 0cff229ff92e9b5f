"""The executor contract (`videolt.executor`) for the threads and local-process executors: lazy job
pulling within `in_flight`, Ctrl-C finishes the jobs in flight and then propagates, an early close
leaves nothing running. The Ray executor runs the same checks in tests/test_ray.py."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from videolt.errors import UsageError
from videolt.executor import SinkPlace, SinkPlan
from videolt.pipeline.executors import create_executor

KINDS = ["threads", "local"]


def square(x: int) -> int:
    return x * x


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def sigint_ignored(_: object) -> bool:
    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def niceness(_: object) -> int:
    return os.nice(0)


def marked(job: tuple[str, int]) -> int:
    """Leave a start mark, work a little, leave an end mark."""
    folder, i = job
    Path(folder, f"{i}.start").touch()
    time.sleep(0.3)
    Path(folder, f"{i}.end").touch()
    return i


@pytest.fixture(params=KINDS)
def executor(request):
    ex = create_executor(request.param, workers=2, in_flight=2)
    yield ex
    ex.close()


def test_jobs_are_pulled_only_when_there_is_room(executor):
    pulled: list[int] = []

    def jobs():
        for i in range(8):
            pulled.append(i)
            yield i

    results = []
    for r in executor.run(square, jobs()):
        assert len(pulled) - len(results) <= 2  # outstanding: at most in_flight
        results.append(r)
    assert sorted(results) == [i * i for i in range(8)]


def test_ctrl_c_finishes_the_jobs_in_flight_then_propagates(executor):
    pulled = []

    def jobs():  # Ctrl-C arrives while the caller paces the third job
        for i in range(5):
            if i == 2:
                raise KeyboardInterrupt
            pulled.append(i)
            yield 0.3

    results = []
    with pytest.raises(KeyboardInterrupt):
        for r in executor.run(nap, jobs()):
            results.append(r)
    assert pulled == [0, 1] and results == [0.3, 0.3]


def test_local_workers_ignore_sigint():
    ex = create_executor("local", workers=1)
    try:
        assert list(ex.run(sigint_ignored, [None])) == [True]
    finally:
        ex.close()


def test_local_workers_run_at_the_priority_asked():
    """`nice` lowers the work processes' priority (the extract stage's decoders beside a CPU backbone)."""
    ex = create_executor("local", workers=1, nice=5)
    try:
        assert list(ex.run(niceness, [None])) == [os.nice(0) + 5]
    finally:
        ex.close()
    with pytest.raises(UsageError, match="nice"):
        create_executor("local", workers=1, nice=-1)


class _Doubler:
    def submit(self, x: int) -> Future:
        future: Future = Future()
        future.set_result(2 * x)
        return future

    def close(self) -> None:
        pass


@pytest.mark.parametrize("kind", KINDS)
def test_sink_is_built_while_the_first_jobs_run(tmp_path, kind):
    """Work starts before the sink is built (a backbone takes seconds to construct)."""
    ex = create_executor(kind, workers=1, in_flight=2)
    seen = []

    def factory(place: SinkPlace) -> _Doubler:
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob("*.start")) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(len(list(tmp_path.glob("*.start"))))
        return _Doubler()

    try:
        assert sorted(ex.run(marked, [(str(tmp_path), i) for i in range(3)], SinkPlan(factory))) == [0, 2, 4]
    finally:
        ex.close()
    assert seen and seen[0] >= 1


@pytest.mark.parametrize("kind", KINDS)
def test_early_close_waits_for_running_jobs_and_cancels_the_rest(tmp_path, kind):
    ex = create_executor(kind, workers=1, in_flight=4)
    try:
        results = ex.run(marked, ((str(tmp_path), i) for i in range(10)))
        assert next(results) == 0
        results.close()  # what a StageError in the consumer does to the for loop's generator
        started = {p.stem for p in tmp_path.glob("*.start")}
        assert started == {p.stem for p in tmp_path.glob("*.end")}  # nothing still running
        assert len(started) < 5  # jobs handed over but not started were cancelled
        time.sleep(0.5)
        assert {p.stem for p in tmp_path.glob("*.start")} == started
    finally:
        ex.close()
