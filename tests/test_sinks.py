"""Several sinks behind one executor (`videolt.pipeline.sinks`): the work goes to whichever sink has
room, every sink process gets some, a sink process that dies loses nothing (what it held goes to the
others, once), and when every sink dies the jobs they held are named in `SinksLost`.

The sinks here are small picklable classes (no model), so each test costs a process start or two."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from videolt.errors import StageError
from videolt.executor import SinkLost, SinkPlace, SinkPlan, SinksLost
from videolt.pipeline.executors import create_executor


def ident(x: int) -> int:
    return x


class Slow:
    """Answers (job, sink index, pid) after `delay` seconds, on a thread (a sink overlaps its work)."""

    def __init__(self, place: SinkPlace, delay: float = 0.05, die_after: int | None = None,
                 mark: str | None = None):
        self.place, self.delay, self.die_after, self.mark = place, delay, die_after, mark
        self.seen = 0

    def submit(self, x: int) -> Future:
        self.seen += 1
        if self.die_after is not None and self.seen > self.die_after:
            if self.mark:
                Path(self.mark).write_text(str(x))
            os._exit(9)  # as if killed, holding this and anything queued
        future: Future = Future()

        def answer() -> None:
            time.sleep(self.delay)
            future.set_result((x, self.place.index, os.getpid()))

        threading.Thread(target=answer, daemon=True).start()
        return future

    def close(self) -> None:
        time.sleep(self.delay)


class SlowRecipe:
    """A picklable factory: sinks whose index is in `dying` die after `die_after` partials."""

    def __init__(self, dying: tuple[int, ...] = (), die_after: int = 1, mark: str | None = None):
        self.dying, self.die_after, self.mark = dying, die_after, mark

    def __call__(self, place: SinkPlace) -> Slow:
        dies = place.index in self.dying
        return Slow(place, die_after=self.die_after if dies else None, mark=self.mark if dies else None)


@pytest.fixture
def local():
    ex = create_executor("local", workers=1)
    yield ex
    ex.close()


@pytest.fixture
def inline():
    """Sink processes that decode in themselves: one that dies leaves no decode process of its own behind
    (a sink process killed outright cannot stop its decoders, as a driver killed outright cannot)."""
    ex = create_executor("local", workers=0)
    yield ex
    ex.close()


def test_two_sink_processes_share_the_work(local):
    results = list(local.run(ident, range(12), SinkPlan(SlowRecipe(), ("cpu", "cpu"), room=2)))
    assert sorted(r[0] for r in results) == list(range(12))  # each job once
    by_sink = {k: [r for r in results if r[1] == k] for k in (0, 1)}
    assert by_sink[0] and by_sink[1], "a sink got no work"
    pids = {r[2] for r in results}
    assert len(pids) == 2 and os.getpid() not in pids  # one process per sink, not this one


def test_a_dying_sink_process_loses_nothing(inline, tmp_path):
    mark = tmp_path / "died"
    plan = SinkPlan(SlowRecipe(dying=(0,), die_after=2, mark=str(mark)), ("cpu", "cpu"), room=2)
    results = list(inline.run(ident, range(10), plan))
    assert mark.exists(), "the sink never died: the test proves nothing"
    assert sorted(r[0] for r in results) == list(range(10))  # nothing lost, nothing twice
    assert int(mark.read_text()) in [r[0] for r in results if r[1] == 1]  # what it held went to the other


def test_when_every_sink_dies_the_jobs_they_held_are_named(inline):
    plan = SinkPlan(SlowRecipe(dying=(0, 1), die_after=0), ("cpu", "cpu"), room=2)
    with pytest.raises(SinksLost) as info:
        list(inline.run(ident, range(10), plan))
    # a sink process holds at most its room: 2 jobs per decode process of its own (none here) + the sink's 2
    assert info.value.jobs and len(set(info.value.jobs)) == len(info.value.jobs) <= 2 * 2
    assert "every sink died" in str(info.value)


class Failing:
    """A sink whose device fails (every video it takes comes back SinkLost), or a healthy one answering (x, index)."""

    def __init__(self, place: SinkPlace, fails: bool):
        self.place, self.fails = place, fails
        self.broken = None

    def submit(self, x: int) -> Future:
        future: Future = Future()
        if self.fails:
            self.broken = RuntimeError("device gone")
            future.set_exception(SinkLost(f"sink {self.place.name} lost: AcceleratorError: device gone"))
        else:
            future.set_result((x, self.place.index))
        return future

    def close(self) -> None:
        pass


class FailingRecipe:
    """Sinks whose index is in `failing` fail on their device (picklable, for sink processes and Ray actors)."""

    def __init__(self, failing: tuple[int, ...]):
        self.failing = failing

    def __call__(self, place: SinkPlace) -> Failing:
        return Failing(place, place.index in self.failing)


class Broken:
    """An in-process sink whose device fails on the first partial (as FeatureSink on a CUDA error)."""

    def __init__(self, place: SinkPlace):
        self.broken = None

    def submit(self, x: int) -> Future:
        if self.broken is not None:
            raise SinkLost("broken")
        self.broken = RuntimeError("device gone")
        future: Future = Future()
        future.set_exception(SinkLost("sink cpu lost: device gone"))
        return future

    def close(self) -> None:
        pass


def test_an_in_process_sink_that_breaks_stops_the_run_naming_its_job():
    ex = create_executor("local", workers=0)
    try:
        with pytest.raises(SinksLost) as info:
            list(ex.run(ident, range(5), SinkPlan(Broken, ("cpu",), room=1)))
    finally:
        ex.close()
    assert info.value.jobs == [0]  # the one it held; the others were never handed to a sink


class Refuse:
    """A factory whose sinks cannot be built (as a sink that cannot see the workdir)."""

    def __call__(self, place: SinkPlace) -> Slow:
        raise StageError(f"sink {place.name} cannot see the workdir /x (.sink-check is missing): mount it\ntrace")


def test_sink_processes_that_cannot_be_built_fail_before_any_work_in_one_line(local):
    given: list[int] = []

    def jobs():
        for i in range(3):
            given.append(i)
            yield i

    with pytest.raises(StageError) as info:
        list(local.run(ident, jobs(), SinkPlan(Refuse(), ("cpu", "cpu"))))
    assert str(info.value).startswith("sink ") and "cannot see the workdir /x" in str(info.value)
    assert "\n" not in str(info.value)


_DRIVER = """
from tests.test_sinks import SlowRecipe, ident
from videolt.executor import SinkPlan
from videolt.pipeline.executors import create_executor

if __name__ == "__main__":
    executor = create_executor("local", workers=0)
    for _, _, pid in executor.run(ident, range(100000), SinkPlan(SlowRecipe(), ("cpu", "cpu"), room=2)):
        print(pid, flush=True)
"""


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_sink_processes_exit_when_the_driver_is_killed(tmp_path):
    """Killed outright (SIGKILL, no cleanup), the driver leaves no sink process behind."""
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script)], cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    sinks: set[int] = set()
    try:
        while len(sinks) < 2:
            line = proc.stdout.readline()
            assert line, "the driver ended before both sinks answered"
            sinks.add(int(line))
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in sinks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in sinks if _running(pid)], "a sink process outlived its driver"
