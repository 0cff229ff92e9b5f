"""Never twice, no orphans: one driver per feature set and per run folder (the second refused in one
line naming the holder, or waiting with --wait; a dead holder's lock taken over; another host's
never), and a SIGKILLed `extract` leaves no process behind."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.lists import small_lists
from tests.synthetic import make_workdir
from tests.faults import ENV, REPO, error_line, extract_args, run_cli, spawn, train_args, video_workdir
from videolt.data import locks
from videolt.data.manifest import Manifest
from videolt.data.store import STATUS_DONE, FeatureStore
from videolt.data.workdir import Workdir
from videolt.errors import LockedError

HOLD = ("import sys; from videolt.data import locks; "
        "ctx = locks.hold(sys.argv[1], 'the thing', 'test holder'); ctx.__enter__(); print('held', flush=True); "
        "sys.stdin.read()")


def _holder(path: Path) -> subprocess.Popen:
    """Another process holding the lock at `path` until its stdin is closed."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=REPO, env=ENV, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "held\n"
    return p


def _release(p: subprocess.Popen) -> None:
    p.stdin.close()
    p.wait(timeout=30)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A workdir of 6 generated videos (4 train, 1 val, 1 test), downloaded, nothing extracted."""
    return video_workdir(tmp_path_factory.mktemp("locks"), n_train=4, n_val=1, n_test=1)


@pytest.fixture
def fresh(videos, tmp_path):
    return shutil.copytree(videos, tmp_path / "wd", symlinks=True)


def _attempts(root: Path, stage: str) -> list[int]:
    with Manifest(root / "manifest.sqlite") as m:
        return [s.attempts for s in m.states(stage).values()]


# -- the lock itself -----------------------------------------------------------------------------------------------
def test_dead_holders_lock_is_taken_over_another_hosts_never(tmp_path, caplog):
    path = tmp_path / ".locks" / "x.lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.parent.mkdir()
    path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "command": "videolt extract",
                                "started": 1.0}))
    with caplog.at_level(logging.WARNING, logger="videolt.data.locks"):
        with locks.hold(path, "feature set 'r'", "videolt extract"):
            assert json.loads(path.read_text())["pid"] == os.getpid()
            with locks.hold(path, "feature set 'r'", "videolt run"):  # the same process may nest
                pass
            assert path.is_file()
    assert f"taking over the lock of pid {dead.pid} on {socket.gethostname()} (videolt extract" in caplog.text
    assert not path.exists()  # a normal release leaves no file

    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "command": "videolt train", "started": 1.0}))
    with pytest.raises(LockedError, match=r"^run 'x' is in use by pid 1 on elsewhere \(videolt train, since .*\); "
                                          f"if nothing of videolt runs on elsewhere, remove {path}$"):
        with locks.hold(path, "run 'x'", "videolt train"):
            pass
    assert json.loads(path.read_text())["host"] == "elsewhere"  # left as it was


def test_second_driver_is_refused_in_one_line(tmp_path, capsys):
    wd = Workdir.init(tmp_path / "wd", small_lists(tmp_path / "lists", 3, 1, 1))
    holder = _holder(wd.lock_path("features-r"))
    try:
        assert locks.holders(wd.root)["features-r"].pid == holder.pid
        code, out, err = run_cli(capsys, *extract_args(wd.root))
        line = error_line(err, "extract")
        assert code == 1 and out == ""
        assert line == (f"videolt extract: error: feature set 'r' is in use by pid {holder.pid} on "
                        f"{socket.gethostname()} (test holder, since {line.split('since ')[1].split(')')[0]}); "
                        "wait for it to end, or pass --wait")
        assert not (wd.root / "features" / "r.zarr").exists()  # refused before anything is written
    finally:
        _release(holder)
    holder = _holder(wd.lock_path("run-dup"))
    try:
        code, out, err = run_cli(capsys, *train_args(wd.root, "dup"))
        assert code == 1 and f"error: run 'dup' is in use by pid {holder.pid}" in error_line(err, "train")
        assert not (wd.root / "runs" / "dup").exists()
    finally:
        _release(holder)


def test_wait_waits_for_the_holder(tmp_path, capsys, caplog):
    wd = Workdir.init(tmp_path / "wd", small_lists(tmp_path / "lists", 3, 1, 1))
    (tmp_path / "none").mkdir()
    holder = _holder(wd.lock_path("videos"))
    try:
        code, _, err = run_cli(capsys, "import-videos", str(wd.root), "--dir", str(tmp_path / "none"))
        assert code == 1 and f"the workdir's videos (download, import-videos) is in use by pid {holder.pid}" in \
            error_line(err, "import-videos")
        timer = threading.Timer(1.0, _release, args=(holder,))
        timer.start()
        tic = time.monotonic()
        with caplog.at_level(logging.INFO, logger="videolt.data.locks"):
            code, _, _ = run_cli(capsys, "import-videos", str(wd.root), "--dir", str(tmp_path / "none"), "--wait")
        timer.join()
        assert code == 0 and time.monotonic() - tic >= 1.0
        assert f"waiting for the workdir's videos (download, import-videos), in use by pid {holder.pid}" in caplog.text
    finally:
        holder.kill()
        holder.wait()


# -- two drivers at once -------------------------------------------------------------------------------------------
def test_two_concurrent_extracts_do_every_video_once(fresh):
    procs = [spawn(*extract_args(fresh, "--wait")) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    done = sorted(json.loads(out)["done"] for out, _ in results)
    assert done == [0, 6]  # one did all six, the other found nothing left
    assert (FeatureStore.open(Workdir(fresh).features_path("r")).status() == STATUS_DONE).all()
    assert _attempts(fresh, "decode") == [1] * 6 and _attempts(fresh, "features:r") == [1] * 6


def test_two_concurrent_trains_of_one_run_train_it_once(tmp_path):
    root, _ = make_workdir(tmp_path, features="r", num_classes=4, videos=(24, 6, 8), dim=16, frames=20)
    procs = [spawn(*train_args(root, "dup", "--wait")) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    first, second = (json.loads(out) for out, _ in results)
    assert first == second == json.loads((root / "runs" / "dup" / "metrics.json").read_text())
    assert len((root / "runs" / "dup" / "train_log.csv").read_text().splitlines()) == 3  # header + 2 epochs, once


# -- no orphans ----------------------------------------------------------------------------------------------------
def _process_table() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, state)} from /proc."""
    table = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(d.name)] = (int(fields[1]), fields[0])
    return table


def _descendants(pid: int) -> set[int]:
    table = _process_table()
    out, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, _) in table.items():
            if ppid == parent and child not in out:
                out.add(child)
                todo.append(child)
    return out


def _running(pids: set[int]) -> set[int]:
    table = _process_table()
    return {p for p in pids if p in table and table[p][1] != "Z"}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_sigkill_of_extract_leaves_no_process_behind_and_a_rerun_finishes(fresh, capsys, caplog):
    args = extract_args(fresh)
    args[args.index("--workers") + 1] = "1"  # a decode process: the pool, its forkserver, the resource tracker
    driver = subprocess.Popen([sys.executable, "-m", "videolt", *args], cwd=REPO, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    family: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while len(family) < 3 and time.monotonic() < deadline and driver.poll() is None:
            family |= _descendants(driver.pid)  # forkserver, its worker, the resource tracker
            time.sleep(0.05)
        assert len(family) >= 3 and driver.poll() is None, family
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 10
        while _running(family) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(family)
    finally:
        for pid in _running(family):  # a failing run must not leave them either
            os.kill(pid, signal.SIGKILL)
    status = FeatureStore.open(Workdir(fresh).features_path("r")).status()
    before = int((status == STATUS_DONE).sum())
    with caplog.at_level(logging.WARNING, logger="videolt.data.locks"):
        code, out, _ = run_cli(capsys, *extract_args(fresh))
    assert code == 0 and json.loads(out)["done"] == 6 - before, out
    assert f"taking over the lock of pid {driver.pid}" in caplog.text
    assert _attempts(fresh, "decode") == [1] * 6
