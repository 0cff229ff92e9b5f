"""Local sinks and the loop that feeds them: work goes to whichever sink has room.

`drive` runs `work` on a pool and hands each partial to the least-loaded live sink of the plan;
results are yielded as the sinks finish them. One sink runs in this process, fed by the
executor's decode pool (its own threads overlap copy, compute and writes). Several run one
process each (`drive_sink_processes`): each sink process decodes its own jobs on its own share
of the decode processes (`DecodingSink`), so decoded frames go from a decoder to its sink and
never through this process (relaying a clip through a queue costs the sender enough CPU that, at a
few dozen videos a second, it would bound every sink: benchmarks/RESULTS.md "## extract"). The driver hands
out jobs by room, through a queue per sink process, and a reader thread per process turns its
answers back into futures.

A sink that dies (its process exits, its device fails: `SinkLost`) loses only what it held: those
jobs go back to the front of the queue for the other sinks (a sink process's jobs are decoded
again; an in-process sink's partials are not). When no sink is left, `SinksLost` names the jobs
that no sink could finish (the caller records them as failed); jobs no sink ever held stay
unrecorded, for a rerun.

Sink processes never outlive the driver: each holds the read end of a pipe whose only write end is
the driver's, and exits when it reads end-of-file. (Their parent process is the forkserver, which
lives as long as any of its children, so `getppid` would never tell.)
"""

from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import os
import queue
import signal
import socket
import threading
import traceback
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Executor as _Pool, Future, wait
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait as wait_connections
from typing import Any, Callable, Iterable, Iterator

from videolt.errors import StageError, VideoltError
from videolt.extract.cores import one_malloc_arena
from videolt.executor import Sink, SinkLost, SinkPlace, SinkPlan, SinksLost

__all__ = ["DecodingSink", "InlinePool", "ProcessSink", "drive", "drive_sink_processes", "start_sinks"]

log = logging.getLogger(__name__)

_POLL_S = 0.2  # seconds between checks for Ctrl-C (see executors.py) and for a vanished parent
_END = object()


class InlinePool:
    """A pool that runs `work` in the calling thread at submit time (`workers=0`)."""

    def submit(self, fn: Callable[[Any], Any], job: Any) -> Future:
        future: Future = Future()
        future.set_result(fn(job))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass


def drive_sink_processes(work: Callable[[Any], Any], jobs: Iterable[Any], plan: SinkPlan, workers: int,
                         pool: Callable[[int], Callable[[], _Pool]]) -> Iterator[Any]:
    """One process per device of the plan, each decoding its jobs on `workers / len(devices)` processes of
    its own (`pool(n)` makes a picklable factory of them; 0 workers: in the sink process) and feeding its sink."""
    each = max(workers // len(plan.devices), 1) if workers else 0
    room = 2 * each + plan.room  # jobs one sink process holds: decoding, and in its sink
    factory = DecodingSinks(work, plan.factory, pool(each) if each else None)
    yield from drive(InlinePool(), _passthrough, jobs, room * len(plan.devices), SinkPlan(factory, plan.devices, room))


def _passthrough(job: Any) -> Any:
    return job


@dataclass(frozen=True)
class DecodingSinks:
    """A picklable sink factory: the plan's sink, fed by a decode pool of its own (`pool()`; None: inline)."""

    work: Callable[[Any], Any]
    factory: Callable[[SinkPlace], Sink]
    pool: Callable[[], _Pool] | None

    def __call__(self, place: SinkPlace) -> DecodingSink:
        return DecodingSink(self.work, self.factory(place), self.pool() if self.pool else InlinePool())


class DecodingSink:
    """A sink that takes jobs: `work` on its own pool, then each partial to `inner`, the real sink."""

    def __init__(self, work: Callable[[Any], Any], inner: Sink, pool: Any):
        self.work, self.inner, self.pool = work, inner, pool
        self._decoded: queue.Queue = queue.Queue()
        self._feeder = threading.Thread(target=self._feed, name="sink-feed", daemon=True)
        self._feeder.start()

    @property
    def broken(self) -> BaseException | None:
        return getattr(self.inner, "broken", None)

    def submit(self, job: Any) -> Future:
        out: Future = Future()
        self.pool.submit(self.work, job).add_done_callback(lambda f: self._decoded.put((f, out)))
        return out

    def _feed(self) -> None:
        """Hand each decoded partial to the sink (which may block while it is full), then relay its result."""
        while (item := self._decoded.get()) is not None:
            decoded, out = item
            try:
                future = self.inner.submit(decoded.result())
            except BaseException as e:  # noqa: BLE001 - a broken decode pool or sink: the job goes elsewhere
                out.set_exception(e if isinstance(e, SinkLost) else SinkLost(one_line(e)))
                continue
            future.add_done_callback(functools.partial(_relay, out))

    def close(self) -> None:
        self.pool.shutdown(wait=True)  # the jobs taken are decoded and queued
        self._decoded.put(None)
        self._feeder.join()
        self.inner.close()


def _relay(out: Future, done: Future) -> None:
    error = done.exception()
    if error is None:
        out.set_result(done.result())
    else:
        out.set_exception(error)


def one_line(e: BaseException) -> str:
    """An error as the one line a user reads: videolt's own message, or its type and first line."""
    if isinstance(e, VideoltError):
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def start_sinks(plan: SinkPlan) -> list[Any]:
    """The plan's sinks: one in this process, or one process per device (waiting until all are built)."""
    node = socket.gethostname()
    places = [SinkPlace(k, device, node) for k, device in enumerate(plan.devices)]
    if len(places) == 1:
        return [plan.factory(places[0])]
    ctx = mp.get_context("forkserver")
    sinks = [ProcessSink(plan, place, ctx) for place in places]
    try:
        for sink in sinks:
            sink.wait_ready()
    except BaseException:
        for sink in sinks:
            sink.kill()
        raise
    log.info("%d sinks: %s", len(sinks), ", ".join(s.place.name for s in sinks))
    return sinks


def drive(pool: _Pool, work: Callable[[Any], Any], jobs: Iterable[Any], in_flight: int,
          plan: SinkPlan | None) -> Iterator[Any]:
    """Run `work` over `jobs` on `pool`, at most `in_flight` jobs outstanding, and their partials
    through the plan's sinks; yield each result as it comes (the partial itself without a plan).

    The sinks are built once the first jobs are handed over, so that they run meanwhile (a backbone
    takes seconds to construct, a worker pool seconds to start). Ctrl-C: no further job is taken,
    the jobs in flight finish and are yielded, then the interrupt propagates."""
    decoding: dict[Future, Any] = {}
    ready: deque[tuple[Any, Any]] = deque()  # decoded, waiting for a sink with room
    held: dict[Future, tuple[Any, Any, Any]] = {}  # sink future → (job, partial, sink)
    orphans: set[int] = set()  # ids of jobs a dead sink held, until another finishes them
    reported: set[int] = set()  # ids of the sinks said to be lost
    sinks: list[Any] | None = None
    it: Iterator[Any] | None = iter(jobs)
    interrupted = False
    try:
        while True:
            try:
                while it is not None and len(decoding) + len(ready) + len(held) < in_flight:
                    job = next(it, _END)
                    if job is _END:
                        it = None
                    else:
                        decoding[pool.submit(work, job)] = job
                if sinks is None:
                    sinks = start_sinks(plan) if plan is not None else []
                _dispatch(ready, held, sinks, plan.room if plan else 0, reported)
                if not (decoding or ready or held):
                    break
                if plan is not None and not held and not any(_alive(s) for s in sinks):  # held: coming back
                    jobs_lost = [job for job, _ in ready if id(job) in orphans]
                    raise SinksLost(f"every sink died ({len(sinks)} of {len(sinks)}); "
                                    f"{len(jobs_lost)} videos they held could not go elsewhere", jobs_lost)
                done, _ = wait([*decoding, *held], timeout=_POLL_S, return_when=FIRST_COMPLETED)
                for fut in done:
                    if fut in decoding:
                        job = decoding.pop(fut)
                        if plan is None:
                            yield fut.result()
                        else:
                            ready.append((job, fut.result()))
                        continue
                    job, partial, sink = held.pop(fut)
                    try:
                        result = fut.result()
                    except SinkLost as e:
                        _lost(sink, e, reported)
                        orphans.add(id(job))
                        ready.appendleft((job, partial))
                        continue
                    orphans.discard(id(job))
                    yield result
            except KeyboardInterrupt:
                if sinks is None or interrupted:  # nothing can take the results, or a second Ctrl-C
                    raise
                interrupted, it = True, None
                log.warning("interrupted: finishing the %d jobs in flight, then stopping",
                            len(decoding) + len(ready) + len(held))
        if interrupted:
            raise KeyboardInterrupt
    finally:  # closed early or failed: cancel what has not started, wait for what has
        for fut in decoding:
            fut.cancel()
        wait(decoding)
        for sink in sinks or []:
            _close(sink)


def _alive(sink: Any) -> bool:
    return getattr(sink, "broken", None) is None


def _dispatch(ready: deque, held: dict, sinks: list[Any], room: int, reported: set[int]) -> None:
    """Hand ready partials to the live sinks with room, the least loaded first."""
    while ready:
        load = {id(s): 0 for s in sinks if _alive(s)}
        for _, _, sink in held.values():
            if id(sink) in load:
                load[id(sink)] += 1
        free = [s for s in sinks if id(s) in load and load[id(s)] < room]
        if not free:
            return
        sink = min(free, key=lambda s: load[id(s)])
        job, partial = ready.popleft()
        try:
            held[sink.submit(partial)] = (job, partial, sink)
        except SinkLost as e:
            _lost(sink, e, reported)
            ready.appendleft((job, partial))


def _lost(sink: Any, error: SinkLost, reported: set[int]) -> None:
    """Take no more work to `sink`; say so once."""
    if isinstance(sink, ProcessSink):
        sink.broken = sink.broken or error
    if id(sink) not in reported:
        reported.add(id(sink))
        log.warning("%s; its videos go to the other sinks", error)


def _close(sink: Sink) -> None:
    try:
        sink.close()
    except Exception as e:  # noqa: BLE001 - a broken sink must not hide the run's own error
        log.warning("closing a sink: %s", one_line(e))


class ProcessSink:
    """A sink in its own process: `submit` queues the partial, the result comes back through a pipe."""

    def __init__(self, plan: SinkPlan, place: SinkPlace, ctx: Any):
        self.place = place
        self.broken: BaseException | None = None
        self._inbox = ctx.Queue()
        self._results, send = ctx.Pipe(duplex=False)
        driver_alive, self._alive = ctx.Pipe(duplex=False)  # never written: its end-of-file is the driver's end
        # Not a daemon: it runs a decode pool of its own. It exits with the driver (see `_serve`).
        self._process = ctx.Process(target=_serve, args=(plan.factory, place, self._inbox, send, driver_alive),
                                    name=f"videolt-sink-{place.index}")
        self._process.start()
        send.close()
        driver_alive.close()
        self._futures: dict[int, Future] = {}
        self._seq = 0
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def wait_ready(self) -> None:
        """Block until the sink is built; its build error (e.g. the workdir unseen) is raised here, one line."""
        while not self._results.poll(_POLL_S):
            if not self._process.is_alive():
                raise StageError(f"sink {self.place.name}: its process exited with code {self._process.exitcode} "
                                 f"before it was built")
        kind, value = self._results.recv()
        if kind != "ready":
            raise StageError(value)
        self._reader = threading.Thread(target=self._read, name=f"sink-reader-{self.place.index}", daemon=True)
        self._reader.start()

    def submit(self, partial: Any) -> Future:
        future: Future = Future()
        with self._lock:
            if self.broken is not None:
                raise SinkLost(f"sink {self.place.name} is gone: {self.broken}")
            self._seq += 1
            self._futures[self._seq] = future
            self._inbox.put((self._seq, partial))
        return future

    def close(self) -> None:
        """Let the process finish what it holds and exit; what it could not finish fails with SinkLost."""
        if self._process.is_alive():
            self._inbox.put(None)
        self._process.join()
        if self._reader is not None:
            self._reader.join()
        self._fail_all(f"sink {self.place.name} closed")

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join()

    def _read(self) -> None:
        """Turn the process's messages into finished futures; its exit into SinkLost for the rest."""
        while True:
            ready = wait_connections([self._results, self._process.sentinel])
            if self._results in ready:
                try:
                    kind, seq, value = self._results.recv()
                except (EOFError, OSError):
                    break
                with self._lock:
                    future = self._futures.pop(seq, None)
                if future is None:
                    continue
                if kind == "result":
                    future.set_result(value)
                else:
                    future.set_exception(SinkLost(value))
            elif not self._results.poll():  # exited, and every message it sent is read
                break
        self._process.join(timeout=5)
        self._fail_all(f"sink {self.place.name} died (exit code {self._process.exitcode})")

    def _fail_all(self, why: str) -> None:
        with self._lock:
            if self.broken is None and self._futures:
                self.broken = SinkLost(why)
            elif self.broken is None:
                self.broken = StageError(why)
            futures, self._futures = list(self._futures.values()), {}
        for future in futures:
            if not future.done():
                future.set_exception(SinkLost(why))


def _serve(factory: Callable[[SinkPlace], Sink], place: SinkPlace, inbox: Any, results: Connection,
           driver_alive: Connection) -> None:
    """A sink process: build the sink, answer every partial through `results`, exit with the driver
    (`driver_alive` reads end-of-file once the driver is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C: the driver decides
    one_malloc_arena()  # before the sink's threads (videolt.extract.cores)
    lock = threading.Lock()

    def send(message: tuple) -> None:
        with lock:
            results.send(message)

    try:
        sink = factory(place)
    except BaseException as e:  # noqa: BLE001 - reported to the driver as one line
        log.debug("sink %s failed to build:\n%s", place.name, traceback.format_exc())
        send(("error", one_line(e)))
        return
    send(("ready", None))

    def answer(seq: int, future: Future) -> None:
        error = future.exception()
        send(("result", seq, future.result()) if error is None else ("lost", seq, one_line(error)))

    while True:
        try:
            item = inbox.get(timeout=_POLL_S)
        except queue.Empty:
            if driver_alive.poll() or getattr(sink, "broken", None) is not None:
                _abandon(sink)  # the driver is gone, or the device: nothing left to do here
            continue
        if item is None:
            break
        seq, partial = item
        try:
            sink.submit(partial).add_done_callback(lambda f, seq=seq: answer(seq, f))
        except SinkLost as e:
            send(("lost", seq, one_line(e)))
            _abandon(sink)
    sink.close()


def _abandon(sink: Any) -> None:
    """Leave at once; first stop the sink's own decode processes, which would not notice."""
    pool = getattr(sink, "pool", None)
    if pool is not None:
        for process in list(getattr(pool, "_processes", {}).values()):  # ProcessPoolExecutor's workers
            process.kill()
    os._exit(1)
