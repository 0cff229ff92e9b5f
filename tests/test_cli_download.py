"""`videolt download` and `videolt status` end to end, in subprocesses, against a loopback server.

Thirty IDs (three of them invalid) each get their own server behaviour through one URL template
(`/by-id/{id}.mp4`): a run must classify every outcome, a rerun must not fetch what is settled,
and a run killed with SIGKILL then rerun must end with the same manifest as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.http_fixture import BehaviourServer, small_mp4
from tests.lists import write_lists
from tests.test_download import tally
from videolt.data.download import PARTIAL_DIR

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

# behaviour -> (IDs, expected status, expected failure, attempts recorded by one run with --max-attempts 2)
GROUPS = {
    "ok": ([f"cliOk{i:06d}" for i in range(13)], "done", None, 1),
    "404": (["cliGone0001", "cliGone0002"], "failed", "removed", 1),
    "403": (["cliDeny0001", "cliDeny0002"], "failed", "transient", 2),
    "flaky2": (["cliFlaky001", "cliFlaky002"], "done", None, 1),  # two 503s, then yt-dlp's own retry succeeds
    "503": (["cliBusy0001", "cliBusy0002"], "failed", "transient", 2),
    "trunc": (["cliTrunc001", "cliTrunc002"], "failed", "transient", 2),
    "slow": (["cliSlow0001", "cliSlow0002"], "failed", "transient", 2),
    "html": (["cliHtml0001", "cliHtml0002"], "failed", "unknown", 1),  # retryable, but not within a run
}
INVALID = ["1234567890", "0987654321", "abc"]  # the official lists hold ten-digit IDs
VALID = [vid for ids, *_ in GROUPS.values() for vid in ids]
ALL_IDS = [*VALID, *INVALID]
EXPECTED = {**{vid: (status, failure) for ids, status, failure, _ in GROUPS.values() for vid in ids},
            **{vid: ("failed", "invalid_id") for vid in INVALID}}


@pytest.fixture(scope="module")
def server():
    with BehaviourServer(slow_s=1.5) as srv:
        srv.by_id.update({vid: b for b, (ids, *_) in GROUPS.items() for vid in ids})
        yield srv


def _cli(*args: str, timeout: float = 120, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "videolt", *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout, **popen)


def _download_args(wd: Path, server: BehaviourServer, *extra: str) -> list[str]:
    return ["download", str(wd), "--url-template", f"{server.base}/by-id/{{id}}.mp4", "--rate", "100000",
            "--workers", "2", "--socket-timeout", "1", "--max-attempts", "2", "--backoff", "0.05", "--jitter", "0",
            "--min-free-gb", "0", "--no-progress", *extra]


def _init(tmp_path: Path, name: str, ids: list[str]) -> Path:
    rows = [(vid, [i % 4]) for i, vid in enumerate(ids)]
    k = 3 if len(ids) > 10 else 1  # videos in each of val and test
    lists = write_lists(tmp_path / f"{name}-lists", train=rows[:-2 * k], val=rows[-2 * k:-k], test=rows[-k:])
    wd = tmp_path / name
    res = _cli("init", str(wd), "--labels", str(lists))
    assert res.returncode == 0, res.stderr
    return wd


def _states(wd: Path) -> dict[str, tuple[str, str | None, int]]:
    """video ID -> (status, failure, attempts) of the download stage, read straight from SQLite."""
    with contextlib.closing(sqlite3.connect(f"file:{wd / 'manifest.sqlite'}?mode=ro", uri=True, timeout=10)) as db:
        rows = db.execute("SELECT v.video_id, s.status, s.failure, s.attempts FROM state s "
                          "JOIN videos v ON v.idx = s.idx WHERE s.stage = 'download'").fetchall()
    return {vid: (status, failure, attempts) for vid, status, failure, attempts in rows}


def _hits(server: BehaviourServer) -> dict[str, int]:
    return {vid: server.hits[server.path("by-id", vid)] for vid in ALL_IDS}


def _assert_clean_videos(wd: Path, done: set[str]) -> None:
    """No temp files anywhere; exactly the done videos are on disk, each a whole file."""
    videos = wd / "videos"
    partial = videos / PARTIAL_DIR
    assert not partial.exists() or not any(p.is_file() for p in partial.rglob("*"))
    files = {p.stem: p for p in videos.rglob("*") if p.is_file() and PARTIAL_DIR not in p.parts}
    assert set(files) == done
    assert all(p.read_bytes() == small_mp4() for p in files.values())


@pytest.fixture(scope="module")
def first_run(server, tmp_path_factory):
    """One uninterrupted run on a fresh workdir: (workdir, the run's JSON counts, hits before and after)."""
    wd = _init(tmp_path_factory.mktemp("cli_download"), "wd", ALL_IDS)
    before = _hits(server)
    res = _cli(*_download_args(wd, server, "--json"))
    assert res.returncode == 0, res.stderr
    return wd, json.loads(res.stdout), before, _hits(server)


def test_download_classifies_every_outcome(server, first_run):
    wd, counts, before, after = first_run
    # The invalid IDs were recorded as such by `init`: never pending, never fetched.
    assert tally(counts) == {"todo": 27, "done": 15, "failed": {"removed": 2, "transient": 8, "unknown": 2}}
    expected = {**{vid: (status, failure, attempts) for ids, status, failure, attempts in GROUPS.values()
                   for vid in ids},
                **{vid: ("failed", "invalid_id", 0) for vid in INVALID}}
    assert _states(wd) == expected
    # Invalid IDs never reach the network; every valid one did, transient ones once per attempt at least.
    fetched = {vid: after[vid] - before[vid] for vid in ALL_IDS}
    assert all(fetched[vid] == 0 for vid in INVALID)
    assert all(fetched[vid] == 2 for vid in GROUPS["ok"][0])  # probe + media GET
    assert all(fetched[vid] == 1 for vid in [*GROUPS["404"][0], *GROUPS["html"][0]])
    assert all(fetched[vid] >= 2 for vid in [*GROUPS["503"][0], *GROUPS["slow"][0], *GROUPS["trunc"][0]])
    _assert_clean_videos(wd, {vid for vid, (status, _) in EXPECTED.items() if status == "done"})


def test_status_reports_every_class(first_run):
    wd, *_ = first_run
    res = _cli("status", str(wd), "--json")
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["videos"] == 30 and status["invalid_ids"] == 3
    assert status["splits"] == {"train": 24, "val": 3, "test": 3}
    download = status["download"]
    assert (download["done"], download["pending"]) == (15, 0)
    assert download["failed"] == {"removed": 2, "transient": 8, "unknown": 2, "invalid_id": 3}
    coverage = download["coverage"]
    assert sum(g["videos"] for g in coverage.values()) == 30
    assert sum(g["done"] for g in coverage.values()) == 15


def test_rerun_fetches_only_retryable_failures(server, first_run):
    wd, _, _, after_first = first_run
    # html pages are `unknown` (retryable in a later run, one attempt left); everything else is settled.
    res = _cli(*_download_args(wd, server, "--json"))
    assert res.returncode == 0, res.stderr
    assert tally(json.loads(res.stdout)) == {"todo": 2, "done": 0, "failed": {"unknown": 2}}
    hits = _hits(server)
    assert {vid: hits[vid] - after_first[vid] for vid in ALL_IDS if hits[vid] != after_first[vid]} == {
        vid: 1 for vid in GROUPS["html"][0]}
    # Now every video used its attempts or is settled: a third run fetches nothing at all.
    res = _cli(*_download_args(wd, server, "--json"))
    assert tally(json.loads(res.stdout)) == {"todo": 0, "done": 0, "failed": {}}
    assert _hits(server) == hits
    assert {vid: s[:2] for vid, s in _states(wd).items()} == EXPECTED


def test_killed_run_resumes_to_the_same_manifest(server, tmp_path):
    wd = _init(tmp_path, "killed", ALL_IDS)
    cmd = [sys.executable, "-m", "videolt", *_download_args(wd, server)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(_recorded(wd)) < 8:
            assert proc.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert 8 <= len(_recorded(wd)) < 30
    left = [d for d in (wd / "videos" / PARTIAL_DIR).iterdir() if d.name.endswith(f"-{proc.pid}")]
    assert len(left) == 1  # the killed process's temp folder, which the rerun must clear

    res = _cli(*_download_args(wd, server, "--json"))
    assert res.returncode == 0, res.stderr
    assert {vid: s[:2] for vid, s in _states(wd).items()} == EXPECTED
    _assert_clean_videos(wd, {vid for vid, (status, _) in EXPECTED.items() if status == "done"})
    assert not left[0].exists()


def _recorded(wd: Path) -> dict:
    try:
        return _states(wd)
    except sqlite3.OperationalError:  # the writer holds a lock this instant
        return {}


def test_rate_limit_stops_the_run_with_one_line(server, tmp_path):
    server.by_id.update({"cliLimit001": "429"})
    wd = _init(tmp_path, "limited", ["cliLimit001", "cliLimOk001", "cliLimOk002", "cliLimOk003"])
    before = server.hits[server.path("by-id", "cliLimit001")]
    res = _cli(*_download_args(wd, server, "--workers", "1", "--pause", "0.05"))
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("videolt download: error: ") and "Resume after" in last
    # One try, then one after each of the 3 pauses (max_trips 3); rate limits cost the video no attempt.
    assert server.hits[server.path("by-id", "cliLimit001")] - before == 4
    states = _states(wd)
    assert states["cliLimit001"] == ("failed", "rate_limited", 0)
