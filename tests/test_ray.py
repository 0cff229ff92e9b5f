"""The Ray executor: the extract stage on Ray writes the same bits as the local executor, one sink
actor per GPU of a cluster of simulated nodes (each sink gets work; a sink killed midway loses
nothing), a sink that cannot see the workdir stops the run before any work, a Ray run killed with
SIGKILL and rerun completes, and no Ray process outlives the test.

One small Ray cluster is started per module (`ray.cluster_utils.Cluster`): a head with one CPU and
two nodes with two CPUs and one declared GPU each; its startup dominates this file's run time. No GPU
is there: GPU sink actors hold a declared GPU each but compute on the CPU (the executor's
`sink_device`, a switch for tests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from tests.lists import small_lists  # noqa: E402
from tests.test_download import tally  # noqa: E402
from tests.videos import make_video  # noqa: E402
from videolt.data.store import FeatureStore  # noqa: E402
from videolt.data.workdir import Workdir  # noqa: E402
from videolt.extract.config import ExtractConfig  # noqa: E402
from videolt.extract.stage import extract_pending  # noqa: E402
from videolt.pipeline.executors import create_executor  # noqa: E402

N = 6
# One torch thread on every path: a convolution's float sums depend on how many threads split them, and
# "bit for bit" compares a run in this process with runs in Ray workers and in a CLI subprocess.
CFG = ExtractConfig(backbones=("resnet50",), weights="random", names=("r50",), workers=1, frames=6, resize=40,
                    crop=32, torch_threads=1, device="cpu")
# One sink per GPU the cluster declares, fp32, one video per forward (as CFG on the CPU: the same bits).
GPU_CFG = dataclasses.replace(CFG, device="auto", amp=False, pack_videos=False)
# Ray's sockets live under its temp dir and a Unix socket path is limited to ~107 bytes: keep it short.
_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def _processes() -> dict[int, tuple[int, int, bytes]]:
    """pid → (parent pid, session id, command line) of every live (non-zombie) process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            state, ppid, _, sid = stat[stat.rindex(")") + 2:].split()[:4]
            if state != "Z":
                out[int(entry.name)] = (int(ppid), int(sid), cmd)
    return out


def _ray_descendants(root: int) -> list[int]:
    """Ray daemons and workers started by process `root` (workers rename themselves `ray::...`)."""
    procs = _processes()
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _, cmd) in procs.items():
            if ppid == parent:
                frontier.append(pid)
                if b"ray" in cmd:
                    found.append(pid)
    return found


def _session(sid: int) -> list[int]:
    """Every process of session `sid`: Ray workers get their own process group but keep the session."""
    return [pid for pid, (_, s, _) in _processes().items() if s == sid]


@pytest.fixture(scope="module")
def ray_instance():
    from ray.cluster_utils import Cluster

    temp_dir = tempfile.mkdtemp(prefix="vlr", dir="/tmp")
    saved = {k: os.environ.get(k) for k in (*_RAY_ENV, "RAY_TMPDIR")}
    os.environ.update(_RAY_ENV, RAY_TMPDIR=temp_dir)  # the cluster's sockets and address file live there
    memory = 80 * 1024**2
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "object_store_memory": memory})
    for _ in range(2):
        cluster.add_node(num_cpus=2, num_gpus=1, object_store_memory=memory)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    yield temp_dir
    ray.shutdown()
    cluster.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    # Cleanup, not a check: on a loaded machine Ray's daemons can take a while to exit after shutdown.
    deadline = time.time() + 30
    while _ray_descendants(os.getpid()) and time.time() < deadline:
        time.sleep(0.1)
    for pid in _ray_descendants(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _workdir(root: Path) -> Workdir:
    wd = Workdir.init(root / "wd", small_lists(root / "lists", n_train=N - 2, n_val=1, n_test=1))
    with wd.manifest() as m:
        for v in m.videos():
            path = wd.video_path(v.video_id, "mp4")
            path.parent.mkdir(parents=True, exist_ok=True)
            make_video(path, seconds=2.5 + v.index, size=(48, 40), fps=10)
            m.record("download", v.index, "done", info={"path": str(path.relative_to(wd.root))})
    return wd


@pytest.fixture(scope="module")
def local_result(tmp_path_factory):
    """The reference: the same videos through the local executor (decoding in this process)."""
    wd = _workdir(tmp_path_factory.mktemp("local"))
    counts = extract_pending(wd, CFG, create_executor("local", workers=0), progress=False)
    assert counts["done"] == N
    store = FeatureStore.open(wd.features_path("r50"))
    return store.read_rows(range(N)), store.n_frames()


def _assert_same(wd: Workdir, local_result) -> None:
    rows, n_frames = local_result
    store = FeatureStore.open(wd.features_path("r50"))
    assert store.status().tolist() == [1] * N
    np.testing.assert_array_equal(store.n_frames(), n_frames)
    np.testing.assert_array_equal(store.read_rows(range(N)), rows)  # bit for bit
    with wd.manifest() as m:
        assert m.counts("features:r50")["done"] == N and m.counts("decode")["done"] == N


def test_ray_executor_writes_the_local_bits(tmp_path, ray_instance, local_result):
    wd = _workdir(tmp_path)
    executor = create_executor("ray")
    try:
        counts = extract_pending(wd, CFG, executor, progress=False)
    finally:
        executor.close()
    assert ray.is_initialized(), "closing the executor stopped an instance it did not start"
    assert counts["done"] == N and counts["failed"] == {}
    _assert_same(wd, local_result)
    executor = create_executor("ray")
    try:
        assert extract_pending(wd, CFG, executor, progress=False)["videos"] == 0  # nothing done twice
    finally:
        executor.close()


def _gpu_sinks():
    """The Ray executor with one sink actor per declared GPU, computing on the CPU (no GPU here)."""
    return create_executor("ray", sink_device="cpu")


def _extract_on_gpu_sinks(wd: Workdir, caplog, level: int) -> dict:
    """GPU_CFG on one sink actor per declared GPU, with the Ray sinks' log kept from `level` up."""
    executor = _gpu_sinks()
    try:
        with caplog.at_level(level, logger="videolt.pipeline.ray_sinks"):
            return extract_pending(wd, GPU_CFG, executor, progress=False)
    finally:
        executor.close()


def test_one_sink_per_gpu_every_sink_works_and_writes_the_local_bits(tmp_path, ray_instance, local_result, caplog):
    wd = _workdir(tmp_path)
    counts = _extract_on_gpu_sinks(wd, caplog, logging.INFO)
    placed = [r.getMessage() for r in caplog.records if "videos decoded on its node" in r.getMessage()]
    here = [int(re.search(r": (\d+) videos decoded on its node", line).group(1)) for line in placed]
    assert len(here) == 2 and sum(here) >= 1, placed  # decode tasks go to their sink's node when it has a free CPU
    sinks = counts["split"]["sinks"]
    assert len(sinks) == 2 and all(s["videos"] >= 1 for s in sinks), sinks  # every sink got work
    assert sum(s["videos"] for s in sinks) == N and len({s["node"] for s in sinks}) == 2  # one per GPU node
    assert all(s["device"] == "GPU 0" and s["frames_s"] > 0 and 0 < s["busy"] < 1 for s in sinks), sinks
    assert FeatureStore.open(wd.features_path("r50")).attrs["inference"]["device"] == "cuda"
    _assert_same(wd, local_result)
    assert not (wd.root / ".sink-check").exists()


def test_a_sink_killed_midway_loses_nothing(tmp_path, ray_instance, local_result, caplog):
    """One of the two sink actors is killed once the first row is done: what it held goes to the other."""
    wd = _workdir(tmp_path)
    path = wd.features_path("r50")
    killed: list[str] = []

    def kill_sink_0() -> None:
        deadline = time.time() + 300
        while time.time() < deadline:
            if (path / "zarr.json").exists() and (FeatureStore.open(path).status() == 1).any():
                for a in ray.util.list_named_actors(all_namespaces=True):
                    if a["name"].startswith("videolt-sink-") and a["name"].endswith("-0"):
                        ray.kill(ray.get_actor(a["name"], namespace=a["namespace"]))
                        killed.append(a["name"])
                        return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_sink_0)
    killer.start()
    try:
        counts = _extract_on_gpu_sinks(wd, caplog, logging.WARNING)
    finally:
        killer.join()
    assert killed, "no sink was killed: the test proves nothing"
    assert counts["done"] == N and counts["failed"] == {}
    assert any("lost" in r.getMessage() for r in caplog.records), "the killed sink held nothing"
    _assert_same(wd, local_result)  # every row once, the local bits, manifest and store agreeing


def test_a_sink_whose_device_fails_hands_its_videos_to_the_other(ray_instance):
    """SinkLost from inside an actor (a CUDA error in FeatureSink) retires that actor; nothing is lost."""
    from tests.test_sinks import FailingRecipe
    from videolt.executor import SinkPlan

    executor = _gpu_sinks()
    try:
        results = list(executor.run(_ident, range(8), SinkPlan(FailingRecipe((0,)), ("cuda:0", "cuda:1"), room=2)))
    finally:
        executor.close()
    assert sorted(x for x, _ in results) == list(range(8)) and {k for _, k in results} == {1}


def _ident(x: int) -> int:
    return x


def test_a_sink_that_cannot_see_the_workdir_stops_the_run_before_any_work(tmp_path, ray_instance, monkeypatch):
    """As on a node where the workdir is another disk: the token the driver wrote is not what the sinks read."""
    from videolt.errors import StageError
    from videolt.extract import stage

    probe = stage._probe

    @contextlib.contextmanager
    def elsewhere(wd):
        with probe(wd) as (path, _):
            yield path, "a token written on another disk"

    monkeypatch.setattr(stage, "_probe", elsewhere)
    wd = _workdir(tmp_path)
    executor = _gpu_sinks()
    try:
        with pytest.raises(StageError) as info:
            extract_pending(wd, GPU_CFG, executor, progress=False)
    finally:
        executor.close()
    message = str(info.value)
    assert "\n" not in message and message.startswith("sink ") and f"cannot see the workdir {wd.root}" in message
    store = FeatureStore.open(wd.features_path("r50"))
    assert store.status().tolist() == [0] * N and (store.chunk_stats()[:, 0] == -1).all()  # nothing written
    with wd.manifest() as m:
        assert m.counts("features:r50").get("done", 0) == 0


def test_ray_cli_killed_midway_then_rerun_completes(tmp_path, ray_instance, local_result):
    wd = _workdir(tmp_path)
    temp_dir = tempfile.mkdtemp(prefix="vlk", dir="/tmp")  # this run's own Ray instance
    env = {**os.environ, **_RAY_ENV, "RAY_TMPDIR": temp_dir, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "videolt", "extract", str(wd.root), "--backbone", "resnet50", "--weights", "random",
           "--name", "r50", "--workers", "1", "--frames", "6", "--resize", "40", "--crop", "32", "--no-progress",
           "--executor", "ray", "--set", "torch_threads=1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    path = wd.features_path("r50")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (path / "zarr.json").exists() and (FeatureStore.open(path).status() == 1).sum() >= 1:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    finally:
        for pid in _session(proc.pid):  # the driver, Ray's daemons and its workers, all at once
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 20
        while _session(proc.pid) and time.time() < deadline:  # a process forked mid-kill is killed too
            for pid in _session(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert _session(proc.pid) == [], "the killed run's Ray processes survived it"
    done_before = int((FeatureStore.open(path).status() == 1).sum())
    assert 1 <= done_before < N, "killed too late to test anything"
    executor = create_executor("ray")  # the rerun joins this module's instance
    try:
        counts = extract_pending(wd, CFG, executor, progress=False)
    finally:
        executor.close()
    assert counts["videos"] == N - done_before  # only the unfinished rows are redone
    _assert_same(wd, local_result)


def test_ray_download_records_what_the_local_runner_records(tmp_path, ray_instance):
    """Fetches run as Ray tasks, pacing and recording stay in the driver: same manifest outcome."""
    from tests.http_fixture import BehaviourServer, small_mp4
    from tests.lists import write_lists
    from videolt.data.download import DownloadConfig, download_pending

    behaviours = {"rayGone0001": "404", "rayBusy0001": "503", "rayFlaky001": "flaky2"}
    ids = ["rayOk000001", "rayOk000002", *behaviours, "1234567890"]  # the last: an invalid (10-digit) ID

    def outcome(which: str) -> tuple[dict, dict, dict]:
        rows = [(vid, [i % 2]) for i, vid in enumerate(ids)]
        lists = write_lists(tmp_path / which / "lists", train=rows[:-2], val=rows[-2:-1], test=rows[-1:])
        wd = Workdir.init(tmp_path / which / "wd", lists)
        config = DownloadConfig(url_template=f"{server.base}/by-id/{{id}}.mp4", retries=1, socket_timeout=2.0,
                                backoff_base_s=0.01, backoff_cap_s=0.05, rate_per_hour=1e7, burst=100, jitter_s=0.0,
                                pause_s=0.05, min_free_gb=0.0, max_attempts=3, workers=2)
        server.hits.clear()
        executor = (create_executor("threads", workers=config.workers) if which == "local"
                    else create_executor("ray", in_flight=config.workers))
        try:
            counts = download_pending(wd, config, executor, progress=False)
        finally:
            executor.close()
        with wd.manifest() as m:
            states = {m.video(i).video_id: (s.status, s.failure, s.attempts) for i, s in m.states("download").items()}
        for vid, (status, _, _) in states.items():
            if status == "done":
                assert wd.find_video(vid).read_bytes() == small_mp4()
        return counts, states, dict(server.hits)

    with BehaviourServer() as server:
        server.by_id.update(behaviours)
        local, on_ray = outcome("local"), outcome("ray")
    assert on_ray == local
    assert local[1] == {"rayOk000001": ("done", None, 1), "rayOk000002": ("done", None, 1),
                        "rayGone0001": ("failed", "removed", 1), "rayBusy0001": ("failed", "transient", 3),
                        "rayFlaky001": ("done", None, 2), "1234567890": ("failed", "invalid_id", 0)}


def test_ray_download_pacing_is_the_drivers(tmp_path, ray_instance, monkeypatch):
    """Two Ray workers, one token every 0.4 s taken in the driver: the driver takes the 4 tokens 0.4 s
    apart, and the k-th fetch starts no earlier than the k-th token. (How far apart the starts land depends
    on when each worker is ready, which a loaded machine delays: not asserted.)"""
    from videolt.data import pacing

    tokens: list[float] = []
    acquire = pacing.TokenBucket.acquire

    def recorded(self) -> float:  # runs only where the bucket lives: in this process, the driver
        waited = acquire(self)
        tokens.append(time.monotonic())
        return waited

    monkeypatch.setattr(pacing.TokenBucket, "acquire", recorded)
    from tests.http_fixture import BehaviourServer
    from tests.lists import write_lists
    from videolt.data.download import DownloadConfig, download_pending

    class Timed(BehaviourServer):
        def count(self, path: str) -> int:
            hit = super().count(path)
            if hit == 1:
                first.append(time.monotonic())
            return hit

    first: list[float] = []
    ids = [f"rayPace{i:04d}" for i in range(4)]
    lists = write_lists(tmp_path / "lists", train=[(v, [0]) for v in ids[:2]], val=[(ids[2], [0])],
                        test=[(ids[3], [0])])
    wd = Workdir.init(tmp_path / "wd", lists)
    with Timed() as server:
        config = DownloadConfig(url_template=f"{server.base}/ok/{{id}}.mp4", retries=0, socket_timeout=2.0,
                                rate_per_hour=3600 / 0.4, burst=1, jitter_s=0.0, min_free_gb=0.0, workers=2)
        executor = create_executor("ray", in_flight=config.workers)
        try:
            start = time.monotonic()
            counts = download_pending(wd, config, executor, progress=False)
        finally:
            executor.close()
    assert tally(counts) == {"todo": 4, "done": 4, "failed": {}}
    starts = np.array(sorted(first)) - start
    taken = np.array(tokens) - start
    assert len(taken) == 4 and (np.diff(taken) >= 0.4 - 0.02).all(), taken
    assert len(starts) == 4 and (starts >= taken - 0.02).all(), (starts, taken)


def test_ray_executor_honours_the_contract(tmp_path, ray_instance):
    """Ctrl-C while the third job is paced: the two in flight are yielded, then it propagates; an early
    close returns only once every task handed out has finished."""
    def nap(seconds: float) -> float:  # local functions travel by value to the Ray workers
        time.sleep(seconds)
        return seconds

    def marked(job: tuple[str, int]) -> int:
        folder, i = job
        Path(folder, f"{i}.start").touch()
        time.sleep(0.3)
        Path(folder, f"{i}.end").touch()
        return i

    def paced():
        for i in range(5):
            if i == 2:
                raise KeyboardInterrupt
            yield 0.3

    executor = create_executor("ray", in_flight=2)
    try:
        results = []
        with pytest.raises(KeyboardInterrupt):
            for r in executor.run(nap, paced()):
                results.append(r)
        assert results == [0.3, 0.3]
        run = executor.run(marked, ((str(tmp_path), i) for i in range(10)))
        next(run)
        run.close()
        started = {p.stem for p in tmp_path.glob("*.start")}
        assert started == {p.stem for p in tmp_path.glob("*.end")} and len(started) <= 3
    finally:
        executor.close()
