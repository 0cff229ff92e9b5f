"""Issue 23 (offline detection; status and availability agree with the manifest).

`doctor` checks that the download host resolves and answers; `download` stops in one line (exit 1)
when its attempts get no answer at all, instead of backing off for minutes; `status` shows the
commonest failure messages of each class; `status` and `availability` count what the manifest says:
invalid IDs are failed `invalid_id` from `init` on, exhausted attempts are not retryable, and nothing
is "lost most" when nothing is lost. Everything runs against loopback hosts: a refusing port, a
name that does not resolve (conftest refuses every name lookup), a loopback HTTP server.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.http_fixture import BehaviourServer
from tests.lists import write_lists
from videolt import cli
from videolt.data.availability import availability, format_availability, video_outcomes
from videolt.data.download import DownloadConfig, FetchResult, select_pending
from videolt.data.download.runner import Reachability
from videolt.data.failures import DownloadFailure
from videolt.data.workdir import Workdir
from videolt.errors import StageError

IDS = [f"offline{i:04d}" for i in range(8)]


def _refusing_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workdir(tmp_path, ids=IDS) -> Workdir:
    rows = [(vid, [i % 3]) for i, vid in enumerate(ids)]
    lists = write_lists(tmp_path / "lists", train=rows[:-2], val=rows[-2:-1], test=rows[-1:])
    return Workdir.init(tmp_path / "wd", lists)


def _download(wd: Workdir, template: str, *extra: str) -> int:
    # The default backoff (30 s, doubling) is in force: stopping early is what keeps these runs short.
    return cli.main(["download", str(wd.root), "--url-template", template, "--rate", "100000", "--jitter", "0",
                     "--min-free-gb", "0", "--socket-timeout", "5", "--no-progress", *extra])


def _attempts(wd: Workdir) -> dict[str, tuple[str, str | None, int]]:
    with wd.manifest() as m:
        return {m.video(i).video_id: (s.status, s.failure, s.attempts) for i, s in m.states("download").items()}


def _error_line(capsys) -> str:
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip() and not x.startswith(("INFO ", "WARNING "))]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("limit", [3, None], ids=["limit-3", "all"])
def test_download_with_a_refusing_host_stops_within_a_minute_in_one_line(tmp_path, capsys, limit):
    wd = _workdir(tmp_path)
    port = _refusing_port()
    started = time.monotonic()
    extra = ["--limit", str(limit)] if limit else ["--workers", "1", "--set", "max_unreachable=4"]
    assert _download(wd, f"http://127.0.0.1:{port}/{{id}}.mp4", *extra) == 1
    assert time.monotonic() - started < 60
    line = _error_line(capsys)
    tried = limit or 4  # the first `limit` videos each once; else 4 unanswered in a row, one at a time
    assert line.startswith(f"videolt download: error: cannot reach 127.0.0.1:{port}: all {tried} attempts ")
    assert "Connection refused" in line and "videolt doctor" in line
    # Each video tried at most once (no backoff rounds), recorded as retryable, the rest untouched
    assert _attempts(wd) == {vid: ("failed", "transient", 1) for vid in IDS[:tried]}
    assert [v.video_id for v, _ in select_pending(wd, DownloadConfig())] == IDS  # all still to do


def test_download_with_an_unresolvable_host_stops_in_one_line(tmp_path, capsys):
    wd = _workdir(tmp_path)
    assert _download(wd, "http://videolt-offline.invalid/{id}.mp4", "--limit", "2") == 1
    line = _error_line(capsys)
    assert "cannot reach videolt-offline.invalid: all 2 attempts of this run got no answer" in line
    assert "Failed to resolve" in line


def test_a_failure_with_an_answer_does_not_count_as_offline(tmp_path, capsys):
    """A host that answers 404: the videos fail (removed), the run ends normally and says what happened."""
    wd = _workdir(tmp_path, IDS[:3])
    with BehaviourServer() as server:
        assert _download(wd, f"{server.base}/404/{{id}}.mp4", "--json") == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["failed"] == {"removed": 3} and "HTTP Error 404" in counts["messages"]["removed"]
    with BehaviourServer() as server:  # in text, the summary says what happened, one line per class
        assert _download(wd, f"{server.base}/404/{{id}}.mp4", "--set", "recheck=[removed]") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "downloaded 0 of 3; failed: removed 3"
    assert out[1].startswith("  removed, e.g. [download] offline") and "HTTP Error 404" in out[1]


def test_reachability_counts_unanswered_attempts_in_a_row():
    reach = Reachability(DownloadConfig(url_template="http://127.0.0.1:1/{id}", max_unreachable=3))

    def result(unreachable: bool, failure=DownloadFailure.TRANSIENT) -> FetchResult:
        return FetchResult("x", "failed", failure, "[download] x: Connection refused", unreachable=unreachable)

    reach.observe(result(True))
    reach.observe(result(True))
    reach.observe(FetchResult("y", "done"))  # an answer breaks the streak ...
    reach.before_waiting()  # ... and means the host is there: retries may wait
    reach.observe(result(True))
    reach.observe(result(False, DownloadFailure.INVALID_ID))  # never sent anywhere: not counted
    reach.observe(result(True))
    with pytest.raises(StageError, match="cannot reach 127.0.0.1:1: all 3 attempts in a row got no answer"):
        reach.observe(result(True))


# -- doctor -----------------------------------------------------------------------------------------

def _network_check(capsys, template: str) -> tuple[int, dict]:
    code = cli.main(["doctor", "--url-template", template, "--json"])
    return code, {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}["network"]


def test_doctor_checks_that_the_download_host_resolves_and_answers(capsys):
    with BehaviourServer() as server:
        code, check = _network_check(capsys, f"{server.base}/ok/{{id}}.mp4")
    assert code == 0 and check["status"] == "ok" and check["detail"].startswith(f"{server.base}/ answers (HTTP ")
    port = _refusing_port()
    code, check = _network_check(capsys, f"http://127.0.0.1:{port}/{{id}}.mp4")
    assert code == 1 and check["status"] == "fail" and "does not answer" in check["detail"]
    assert "Connection refused" in check["detail"] and "--url-template" in check["fix"]
    code, check = _network_check(capsys, "https://videolt-offline.invalid/watch?v={id}")
    assert code == 1 and check["status"] == "fail"
    assert check["detail"].startswith("videolt-offline.invalid does not resolve") and "offline" in check["detail"]


# -- status and availability agree with the manifest ------------------------------------------------

@pytest.fixture
def recorded(tmp_path) -> Workdir:
    """Two invalid IDs (one recorded by init, one as a workdir made before that would have it: no row),
    three transient failures with the same cause (one with its attempts used up), one fetched video."""
    wd = _workdir(tmp_path, [*IDS[:6], "1234567890", "abcdefghijkl"])
    with wd.manifest() as m:
        for vid, attempts in (("offline0000", 1), ("offline0001", 2), ("offline0002", 5)):
            for _ in range(attempts):
                m.record("download", m.by_id(vid).index, "failed", failure="transient",
                         message=f"[download] {vid}: [generic] {vid}: Unable to download webpage: Connection refused")
        m.record("download", m.by_id("offline0003").index, "done", info={"ytdlp_version": "2026.11.23"})
        old = m.by_id("abcdefghijkl").index
    import sqlite3

    db = sqlite3.connect(wd.manifest_path)
    with db:
        db.execute("DELETE FROM state WHERE idx = ?", (old,))
    db.close()
    return wd


def test_invalid_ids_are_recorded_at_init_and_never_pending(recorded, capsys):
    states = _attempts(recorded)
    assert states["1234567890"] == ("failed", "invalid_id", 0)  # by init, costing no attempt
    assert cli.main(["status", str(recorded.root), "--json"]) == 0
    download = json.loads(capsys.readouterr().out)["download"]
    assert download["pending"] == 2 and download["done"] == 1  # offline0004, offline0005
    assert download["failed"] == {"transient": 3, "invalid_id": 2}
    outcomes = {o.video_id: (o.outcome, o.failure) for o in video_outcomes(recorded)}
    assert outcomes["1234567890"] == outcomes["abcdefghijkl"] == ("lost", "invalid_id")


def test_status_shows_the_commonest_failure_messages_per_class(recorded, capsys):
    assert cli.main(["status", str(recorded.root), "--json"]) == 0
    messages = json.loads(capsys.readouterr().out)["download"]["messages"]
    assert messages["transient"] == [{"message": "[download] <id>: [generic] <id>: Unable to download webpage: "
                                                 "Connection refused", "videos": 3}]
    assert messages["invalid_id"][0]["videos"] == 1 and "not a YouTube ID" in messages["invalid_id"][0]["message"]
    assert cli.main(["status", str(recorded.root)]) == 0
    text = capsys.readouterr().out
    assert "transient (3): [download] <id>: [generic] <id>: Unable to download webpage: Connection refused" in text


def test_exhausted_attempts_are_failed_not_retryable_as_download_sees_them(recorded):
    outcomes = {o.video_id: o.outcome for o in video_outcomes(recorded)}
    assert (outcomes["offline0000"], outcomes["offline0001"], outcomes["offline0002"]) == (
        "retryable", "retryable", "exhausted")
    retried = {v.video_id for v, _ in select_pending(recorded, DownloadConfig())}
    failed = {vid for vid, o in outcomes.items() if o in ("retryable", "exhausted")}
    assert retried & failed == {vid for vid in failed if outcomes[vid] == "retryable"}
    report = availability(recorded, head=500, tail=100)
    assert (report["overall"]["retryable"], report["overall"]["exhausted"]) == (2, 1)
    assert "failed with attempts exhausted 1" in format_availability(report)
    # With a higher cap, as `download --max-attempts 6` would retry it, it is retryable again.
    assert {o.video_id: o.outcome for o in video_outcomes(recorded, max_attempts=6)}["offline0002"] == "retryable"


def test_lost_most_is_not_claimed_when_nothing_is_lost(tmp_path, capsys):
    wd = _workdir(tmp_path, IDS[:6])
    with wd.manifest() as m:
        m.record("download", 0, "failed", failure="transient", message="[download] x: timed out")
    report = availability(wd, head=500, tail=100)
    assert report["lost_most"] == []
    assert "lost most: no class has lost a video" in format_availability(report)
    assert "head > 500, tail <= 100" in report["warnings"][0]  # every class is tail under the defaults
