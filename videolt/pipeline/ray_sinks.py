"""Sinks on a Ray cluster: one actor per device of the plan, fed by decode tasks placed near them.

Each sink actor holds one GPU when its device is one (Ray makes that GPU the actor's `cuda:0`) and
one CPU for its threads. The driver keeps each actor's share of the jobs in flight; a job's decode
task is scheduled preferably on the node of the actor it feeds (soft node affinity, spilling to
other nodes when that one has no free CPU), and its result goes to the actor by reference, never
through the driver. An actor that dies (killed, its node lost, its device failed: `SinkLost`) loses
only the calls it held: they go to the other actors with the same decode result, not decoded again.
With no actor left, `SinksLost` names the jobs that no sink could finish.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import deque
from typing import Any, Callable, Iterable, Iterator

from videolt.errors import StageError
from videolt.executor import SinkLost, SinkPlace, SinkPlan, SinksLost
from videolt.pipeline.sinks import one_line

__all__ = ["drive_on_ray"]

log = logging.getLogger(__name__)

_POLL_S = 0.2
_END = object()


class SinkActor:
    """One sink inside a Ray actor; `consume` runs on one of the actor's threads per call."""

    def __init__(self, factory: Callable[[SinkPlace], Any], index: int, device: str):
        self.factory, self.index, self.device = factory, index, device
        self.sink = None
        self.node_id = ""
        self.decoded = {"here": 0, "elsewhere": 0}  # where the partials it took were decoded

    def start(self) -> tuple[SinkPlace, str] | str:
        """Build the sink: (its place, its node's id), or the one-line reason it could not be built."""
        import ray

        node_id = self.node_id = ray.get_runtime_context().get_node_id()
        gpus = ray.get_gpu_ids()
        place = SinkPlace(self.index, self.device, f"{ray.util.get_node_ip_address()}:{node_id[:6]}",
                          f"GPU {gpus[0]}" if gpus else "")
        try:
            self.sink = self.factory(place)
        except BaseException as e:  # noqa: BLE001 - reported to the driver as one line
            return one_line(e)
        return place, node_id

    def consume(self, located: tuple[str, Any]) -> Any:
        node_id, partial = located
        self.decoded["here" if node_id == self.node_id else "elsewhere"] += 1
        return self.sink.submit(partial).result()

    def placement(self) -> dict[str, int]:
        return dict(self.decoded)


def _located(work: Callable[[Any], Any]) -> Callable[[Any], tuple[str, Any]]:
    """`work`, answering also the node it ran on (so a sink can count the partials decoded on its own node)."""

    def run(job: Any) -> tuple[str, Any]:
        import ray

        return ray.get_runtime_context().get_node_id(), work(job)

    return run


def _actors(ray, plan: SinkPlan, per_sink: int, sink_device: str | None) -> tuple[list, list[SinkPlace], list[str]]:
    """Start one actor per device of the plan and wait until every sink is built (or fail in one line)."""
    have = ray.cluster_resources()
    gpus, cpus = int(have.get("GPU", 0)), int(have.get("CPU", 0))
    if plan.gpus > gpus:
        raise StageError(f"{plan.gpus} GPU sinks asked, but the Ray cluster has {gpus} GPUs")
    if len(plan.devices) + 1 > cpus:
        raise StageError(f"{len(plan.devices)} sinks hold a CPU each and decoding needs one more, but the Ray "
                         f"cluster has {cpus} CPUs")
    run = uuid.uuid4().hex[:8]
    actors = []
    for k, device in enumerate(plan.devices):
        gpu = device != "cpu"
        inside = sink_device or ("cuda:0" if gpu else "cpu")  # Ray makes the actor's GPU its cuda:0
        options = {"num_cpus": 1, "num_gpus": 1 if gpu else 0, "max_concurrency": per_sink + 2,
                   "name": f"videolt-sink-{run}-{k}"}
        actors.append(ray.remote(SinkActor).options(**options).remote(plan.factory, k, inside))
    log.info("waiting for %d sinks to be built", len(actors))
    started = ray.get([a.start.remote() for a in actors])
    failed = [s for s in started if isinstance(s, str)]
    if failed:
        for actor in actors:
            ray.kill(actor)
        raise StageError(failed[0])
    places, nodes = [s[0] for s in started], [s[1] for s in started]
    log.info("%d sinks: %s", len(places), ", ".join(p.name for p in places))
    return actors, places, nodes


def drive_on_ray(ray, work: Callable[[Any], Any], jobs: Iterable[Any], plan: SinkPlan, in_flight: int,
                 sink_device: str | None = None) -> Iterator[Any]:
    """Decode tasks feeding the plan's sink actors; results yielded as they come (see the module doc).

    Ctrl-C: no further job is taken, the calls out finish and are yielded, then it propagates. An
    early close waits for the calls out (`ray.cancel` would interrupt a running one) and kills the actors.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    per_sink = max(plan.room, math.ceil(in_flight / len(plan.devices)))
    actors, places, nodes = _actors(ray, plan, per_sink, sink_device)
    remote_work = ray.remote(num_cpus=1)(_located(work))
    near = [NodeAffinitySchedulingStrategy(node, soft=True, _spill_on_unavailable=True) for node in nodes]
    pending: dict[Any, tuple[Any, Any, int]] = {}  # call → (job, decode result, actor)
    load = [0] * len(actors)
    alive = [True] * len(actors)
    retry: deque[tuple[Any, Any]] = deque()  # (job, decode result) a dead actor held
    orphans: set[int] = set()
    it: Iterator[Any] | None = iter(jobs)
    interrupted = False
    try:
        while True:
            try:
                while retry or it is not None:
                    free = [k for k in range(len(actors)) if alive[k] and load[k] < per_sink]
                    if not free:
                        break
                    k = min(free, key=lambda j: load[j])
                    if retry:
                        job, decoded = retry.popleft()
                    else:
                        job = next(it, _END)
                        if job is _END:
                            it = None
                            continue
                        decoded = remote_work.options(scheduling_strategy=near[k]).remote(job)
                    pending[actors[k].consume.remote(decoded)] = (job, decoded, k)
                    load[k] += 1
                if not pending and not retry and it is None:
                    break
                if not any(alive) and not pending:  # the calls out come back (failed) first
                    lost = [job for job, _ in retry if id(job) in orphans]
                    raise SinksLost(f"every sink died ({len(actors)} of {len(actors)}); {len(lost)} videos they "
                                    f"held could not go elsewhere", lost)
                done, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_S)
                for ref in done:
                    job, decoded, k = pending.pop(ref)
                    load[k] -= 1
                    try:
                        result = ray.get(ref)
                    except (ray.exceptions.RayActorError, SinkLost) as e:
                        if alive[k]:
                            alive[k] = False
                            log.warning("sink %s lost (%s); its videos go to the other sinks", places[k].name,
                                        type(e).__name__)
                            ray.kill(actors[k])
                        orphans.add(id(job))
                        retry.appendleft((job, decoded))
                        continue
                    orphans.discard(id(job))
                    yield result
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted, it = True, None
                retry.clear()
                log.warning("interrupted: finishing the %d jobs in flight, then stopping", len(pending))
        if interrupted:
            raise KeyboardInterrupt
        _log_placement(ray, actors, places, alive)
    finally:  # closed early or failed: wait for the calls out, then no actor outlives its run
        if pending:
            ray.wait(list(pending), num_returns=len(pending))
        for actor in actors:
            ray.kill(actor)


def _log_placement(ray, actors: list, places: list[SinkPlace], alive: list[bool]) -> None:
    """One line per live sink: how many of its videos were decoded on its own node."""
    live = [k for k in range(len(actors)) if alive[k]]
    for k, counts in zip(live, ray.get([actors[k].placement.remote() for k in live])):
        log.info("sink %s: %d videos decoded on its node, %d on others", places[k].name, counts["here"],
                 counts["elsewhere"])
