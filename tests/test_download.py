"""The download stage, offline: a loopback HTTP server and a test-only YouTube-like extractor."""

from __future__ import annotations

import _thread
import dataclasses
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yt_dlp

from tests.fake_youtube import FAKE_MESSAGES, FakeYouTubeIE, fake_factory, template
from tests.http_fixture import BehaviourServer, small_mp4
from tests.lists import write_lists
from videolt.data.download import PARTIAL_DIR, STAGE, DownloadConfig, download_pending, fetch_one, process_dir_name
from videolt.data.failures import DownloadFailure, classify
from videolt.data.tooling import PreflightError
from videolt.data.workdir import Workdir
from videolt.errors import ConfigError, StageError, UsageError
from videolt.pipeline.executors import create_executor

VID = "abcdefghijk"
FAST = dict(retries=2, socket_timeout=1.0, backoff_base_s=0.01, backoff_cap_s=0.05, rate_per_hour=1e7, burst=100,
            jitter_s=0.0, pause_s=0.05, min_free_gb=0.0)


@pytest.fixture(scope="module")
def server():
    with BehaviourServer(slow_s=1.6, trickle_s=0.15) as srv:
        yield srv


def _config(template: str, **kw) -> DownloadConfig:
    return DownloadConfig(url_template=template, **{**FAST, **kw})


def tally(counts: dict) -> dict:
    """A download summary's counts, its example messages (one per failure class) checked and dropped."""
    counts = dict(counts)
    assert set(counts.pop("messages")) == set(counts["failed"])
    return counts


def _no_leftovers(videos: Path) -> None:
    partial = videos / PARTIAL_DIR
    assert not partial.exists() or not any(p.is_file() for p in partial.rglob("*"))


# -- classification table ------------------------------------------------------------------------

YOUTUBE_MESSAGES = {
    "Private video. Sign in if you've been granted access to this video": DownloadFailure.PRIVATE,
    "This video is private": DownloadFailure.PRIVATE,
    "Video unavailable. This video has been removed by the uploader": DownloadFailure.REMOVED,
    "Video unavailable. This video is no longer available because the YouTube account associated with this "
    "video has been terminated.": DownloadFailure.REMOVED,
    "Video unavailable": DownloadFailure.REMOVED,
    "Video unavailable. This video is not available": DownloadFailure.REMOVED,
    "The uploader has not made this video available in your country": DownloadFailure.GEO_BLOCKED,
    "Sign in to confirm your age. This video may be inappropriate for some users.": DownloadFailure.AGE_RESTRICTED,
    "Join this channel to get access to members-only content like this video, and other exclusive perks.":
        DownloadFailure.MEMBERS_ONLY,
    "Video unavailable. This video is no longer available due to a copyright claim by Some Label":
        DownloadFailure.COPYRIGHT,
    "Video unavailable. This video contains content from X, who has blocked it on copyright grounds.":
        DownloadFailure.COPYRIGHT,
    "This video has been removed for violating YouTube's Terms of Service": DownloadFailure.POLICY,
    "Video unavailable. This video has been removed for violating YouTube's Community Guidelines":
        DownloadFailure.POLICY,
    "Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser or --cookies": DownloadFailure.BOT_CHECK,
    "Sign in to confirm you're not a bot": DownloadFailure.BOT_CHECK,
    "Video unavailable. YouTube is requiring a captcha challenge before playback": DownloadFailure.BOT_CHECK,
    "This video is only available for registered users. Use --cookies": DownloadFailure.LOGIN_REQUIRED,
    "Please sign in to view this video": DownloadFailure.LOGIN_REQUIRED,
    "[generic] x: Unable to download webpage: HTTP Error 401: Unauthorized": DownloadFailure.LOGIN_REQUIRED,
    "failed to load cookies": DownloadFailure.SESSION,
    "The provided YouTube account cookies are no longer valid.": DownloadFailure.SESSION,
    "HTTP Error 429: Too Many Requests": DownloadFailure.RATE_LIMITED,
    "Video unavailable. This content isn\u2019t available, try again later.": DownloadFailure.RATE_LIMITED,
    "Video unavailable. This content isn't available, try again later.": DownloadFailure.RATE_LIMITED,
    "nsig extraction failed: Some formats may be missing": DownloadFailure.TOOLING,
    "Signature extraction failed: Some formats may be missing": DownloadFailure.TOOLING,
    "No supported JavaScript runtime could be found": DownloadFailure.TOOLING,
    "Unable to extract yt initial data": DownloadFailure.TOOLING,
    "ffmpeg could not be found": DownloadFailure.TOOLING,
    "[download] Got error: HTTP Error 503: Service Unavailable. Giving up after 2 retries": DownloadFailure.TRANSIENT,
    "[download] Got error: 973 bytes read, 5974 more expected. Giving up after 2 retries": DownloadFailure.TRANSIENT,
    "Read timed out. (read timeout=30)": DownloadFailure.TRANSIENT,
    "Something nobody has seen before": DownloadFailure.UNKNOWN,
}


@pytest.mark.parametrize("message, expected", YOUTUBE_MESSAGES.items(), ids=range(len(YOUTUBE_MESSAGES)))
def test_classify_youtube_messages(message, expected):
    assert classify(message) is expected
    assert classify(f"ERROR: [youtube] {VID}: {message}") is expected


# -- fetch_one against the loopback server ---------------------------------------------------------

# behaviour -> (status, failure, server hits): retries=2, so a media GET is tried 3 times after 1 probe.
# yt-dlp never retries a 4xx itself (429 included): the runner does, after the pause it asks for.
CASES = {
    "ok": ("done", None, 2),
    "404": ("failed", DownloadFailure.REMOVED, 1),
    "403": ("failed", DownloadFailure.TRANSIENT, 1),
    "429": ("failed", DownloadFailure.RATE_LIMITED, 1),
    "503": ("failed", DownloadFailure.TRANSIENT, 1),
    "flaky2": ("done", None, 4),  # probe, two 503s retried by yt-dlp, success
    "flaky5": ("failed", DownloadFailure.TRANSIENT, 4),  # probe, then gives up after 2 retries
    "trunc": ("failed", DownloadFailure.TRANSIENT, 4),
    "slow": ("failed", DownloadFailure.TRANSIENT, 1),
    "html": ("failed", DownloadFailure.UNKNOWN, 1),
    "retryafter7": ("failed", DownloadFailure.RATE_LIMITED, 1),  # on the probe (generic extractor)
    "media429": ("failed", DownloadFailure.RATE_LIMITED, 2),  # on the media GET (HTTP downloader)
    "cookie": ("failed", DownloadFailure.LOGIN_REQUIRED, 1),  # 401 without the session's cookie
    "trickle": ("done", None, 2),  # 8 pieces 0.15 s apart: longer than socket_timeout in all, alive throughout
    "stall": ("failed", DownloadFailure.TRANSIENT, 4),  # half the body, then silence: read timeout, retried
    "reset": ("failed", DownloadFailure.TRANSIENT, 4),  # half the body, then RST: retried, then given up
}
RETRY_AFTER = {"retryafter7": 7.0, "media429": 1.0}  # where yt-dlp keeps the HTTPError, its header is read


@pytest.mark.parametrize("behaviour", CASES)
def test_fetch_one_over_http(server, tmp_path, behaviour):
    status, failure, hits = CASES[behaviour]
    before = server.hits[server.path(behaviour, VID)]
    res = fetch_one(VID, tmp_path, _config(f"{server.base}/{behaviour}/{{id}}.mp4"))
    assert (res.status, res.failure) == (status, failure), res.message
    assert server.hits[server.path(behaviour, VID)] - before == hits
    assert res.retry_after_s == RETRY_AFTER.get(behaviour) and res.session == "guest"
    final = tmp_path / VID[:2] / f"{VID}.mp4"
    if status == "done":
        assert res.path == final and final.read_bytes() == small_mp4()
        assert res.bytes == len(small_mp4()) and res.format_id == "mp4" and res.message is None
        assert res.ytdlp_version == yt_dlp.version.__version__
    else:
        assert not final.exists() and res.path is None
        assert res.message.startswith(f"[download] {VID}: ")
    _no_leftovers(tmp_path)


def test_invalid_ids_are_never_fetched(server, tmp_path):
    template = f"{server.base}/ok/{{id}}.mp4"
    for bad in ("1234567890", "abcdefghijkl", "abc/efghijk", "abcdefghij!"):
        res = fetch_one(bad, tmp_path, _config(template))
        assert res.failure is DownloadFailure.INVALID_ID
        assert server.hits[server.path("ok", bad)] == 0
    assert not any(tmp_path.rglob("*.mp4"))


def test_returned_id_must_match(server, tmp_path):
    # The generic extractor names the video after the file stem: a different stem is another video.
    res = fetch_one(VID, tmp_path, _config(f"{server.base}/ok/{{id}}x.mp4"))
    assert res.failure is DownloadFailure.INVALID_ID
    assert server.hits[server.path("ok", VID + "x")] == 1  # the probe only: refused before downloading
    assert not any(tmp_path.rglob("*.mp4"))
    _no_leftovers(tmp_path)


# -- a YouTube-like extractor raising YouTube's own messages (tests/fake_youtube.py) -----------------

@pytest.mark.parametrize("video_id", FAKE_MESSAGES)
def test_youtube_refusals_are_classified(server, tmp_path, video_id):
    res = fetch_one(video_id, tmp_path, _config(template(server.base)), ydl_factory=fake_factory)
    assert res.status == "failed" and res.failure == FAKE_MESSAGES[video_id][1], res.message
    assert res.message.startswith(f"[download] {video_id}: ")
    assert not any(tmp_path.rglob("*.mp4"))
    _no_leftovers(tmp_path)


def test_youtube_like_success_keeps_format_facts(server, tmp_path):
    res = fetch_one("goodVideo01", tmp_path, _config(template(server.base)), ydl_factory=fake_factory)
    assert res.status == "done", res.message
    assert (res.height, res.width, res.duration) == (48, 64, 2.0)
    assert res.path == tmp_path / "go" / "goodVideo01.mp4" and res.path.read_bytes() == small_mp4()


def test_config_is_validated():
    with pytest.raises(ConfigError, match="url_template"):
        DownloadConfig(url_template="https://example.test/watch")
    with pytest.raises(ConfigError, match="workers"):
        DownloadConfig(workers=0)
    assert DownloadConfig(backoff_base_s=10, backoff_cap_s=35).backoff(3) == 35
    assert DownloadConfig(backoff_base_s=10).backoff(2) == 20


# -- the batch runner on a workdir -------------------------------------------------------------------

def _workdir(tmp_path: Path, ids: list[str]) -> Workdir:
    rows = [(vid, [i % 3]) for i, vid in enumerate(ids)]
    lists = write_lists(tmp_path / "lists", train=rows[:-3], val=rows[-3:-1], test=rows[-1:])
    return Workdir.init(tmp_path / "wd", lists)


def _download(wd: Workdir, config: DownloadConfig, *, ydl_factory=None, **settings) -> dict:
    """The runner on threads, one fetch in flight per worker (what `videolt download` does by default)."""
    config = dataclasses.replace(config, **settings)
    executor = create_executor("threads", workers=config.workers, in_flight=config.workers)
    try:
        return download_pending(wd, config, executor, progress=False, ydl_factory=ydl_factory)
    finally:
        executor.close()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_download_pending_records_retries_and_resumes(server, tmp_path):
    behaviours = {"batchFlaky2": "flaky2", "batchGone01": "404", "batchBusy01": "503", "batchTrunc1": "trunc"}
    oks = [f"batchOk{i:04d}" for i in range(5)]
    ids = [*oks, *behaviours, "1234567890"]  # the last one: a ten-digit ID of the official lists
    server.by_id.update(behaviours)
    wd = _workdir(tmp_path, ids)
    stale = wd.videos_dir / PARTIAL_DIR / f"{process_dir_name().rpartition('-')[0]}-{_dead_pid()}"
    stale.mkdir(parents=True)
    (stale / "batchOk0000.mp4.part").write_bytes(b"half")
    config = _config(f"{server.base}/by-id/{{id}}.mp4", retries=1, max_attempts=3, workers=2)

    def hits() -> dict[str, int]:
        return {vid: server.hits[server.path("by-id", vid)] for vid in ids}

    counts = _download(wd, config)
    # The invalid ID was recorded as such by `init`: never pending, never fetched.
    assert tally(counts) == {"todo": 9, "done": 6, "failed": {"removed": 1, "transient": 2}}
    # retries=1: each attempt is one probe plus up to 2 media GETs; transient videos get 3 attempts.
    assert hits() == {**{v: 2 for v in oks}, "batchFlaky2": 5, "batchGone01": 1, "batchBusy01": 3,
                      "batchTrunc1": 9, "1234567890": 0}
    assert not stale.exists()
    _no_leftovers(wd.videos_dir)
    with wd.manifest() as m:
        states = {m.video(i).video_id: s for i, s in m.states(STAGE).items()}
    assert {v: (s.status, s.failure, s.attempts) for v, s in states.items()} == {
        **{v: ("done", None, 1) for v in oks}, "batchFlaky2": ("done", None, 2),
        "batchGone01": ("failed", "removed", 1), "batchBusy01": ("failed", "transient", 3),
        "batchTrunc1": ("failed", "transient", 3), "1234567890": ("failed", "invalid_id", 0)}
    for vid in [*oks, "batchFlaky2"]:
        info = states[vid].info
        assert info["path"] == f"videos/{vid[:2]}/{vid}.mp4" and info["bytes"] == len(small_mp4())
        assert (wd.root / info["path"]).read_bytes() == small_mp4()
        assert info["ytdlp_version"] == yt_dlp.version.__version__ and info["format"] == "mp4"
    assert states["batchGone01"].message.startswith("[download] batchGone01: ")

    # A rerun fetches nothing: done is done, transient ones used their attempts, permanent stay failed.
    before = hits()
    assert tally(_download(wd, config)) == {"todo": 0, "done": 0, "failed": {}}
    assert hits() == before

    # A done video whose file vanished is fetched again; a permanent class only when re-checked.
    (wd.root / states["batchOk0003"].info["path"]).unlink()
    assert _download(wd, config)["done"] == 1
    assert _download(wd, config, recheck=("removed",))["failed"] == {"removed": 1}
    assert hits() == {**before, "batchOk0003": 4, "batchGone01": 2}


def test_download_pending_limit_and_splits(server, tmp_path):
    ids = [f"splitVid{i:03d}" for i in range(6)]
    wd = _workdir(tmp_path, ids)
    config = _config(f"{server.base}/ok/{{id}}.mp4", workers=1)
    assert _download(wd, config, splits=("val",))["done"] == 2
    assert _download(wd, config, limit=1)["done"] == 1
    with wd.manifest() as m:
        assert m.counts(STAGE)["done"] == 3
    with pytest.raises(UsageError, match="not a failure class"):
        _download(wd, config, recheck=("gone",))


def test_download_pending_stops_on_tooling(server, tmp_path):
    wd = _workdir(tmp_path, ["toolingFail", *(f"goodVideo{i:02d}" for i in range(4))])
    with pytest.raises(StageError, match="upgrade"):
        _download(wd, _config(template(server.base), workers=1), ydl_factory=fake_factory)
    with wd.manifest() as m:
        assert m.counts(STAGE)["failed"] == {"tooling": 1}
        assert m.counts(STAGE)["done"] == 0  # the run stopped at the first video


def test_download_pending_rate_limit_pauses_then_stops(server, tmp_path):
    wd = _workdir(tmp_path, ["tryAgainLtr", "goodVideo10", "goodVideo11"])
    FakeYouTubeIE.calls.clear()
    config = _config(template(server.base), workers=1, pause_s=0.05, max_trips=2)
    with pytest.raises(StageError, match="Resume after"):
        _download(wd, config, ydl_factory=fake_factory)
    assert FakeYouTubeIE.calls == {"tryAgainLtr": 3}  # first try + one retry after each of the 2 pauses
    with wd.manifest() as m:
        state = m.states(STAGE)[m.by_id("tryAgainLtr").index]
    assert (state.failure, state.attempts) == ("rate_limited", 0)  # not the video's fault


def test_download_videos_on_local_processes(server, tmp_path):
    """The stage wiring with `executor: local`: fetches in worker processes, recorded here alike."""
    from videolt.pipeline.download import run_download

    server.by_id.update({"procGone001": "404", "procFlaky01": "flaky2"})
    wd = _workdir(tmp_path, ["procOk00001", "procOk00002", "procGone001", "procFlaky01"])
    config = _config(f"{server.base}/by-id/{{id}}.mp4", executor="local", workers=2)
    assert tally(run_download(wd, config, progress=False)) == {"todo": 4, "done": 3, "failed": {"removed": 1}}
    with wd.manifest() as m:
        states = {m.video(i).video_id: (s.status, s.failure) for i, s in m.states(STAGE).items()}
    assert states == {"procOk00001": ("done", None), "procOk00002": ("done", None),
                      "procGone001": ("failed", "removed"), "procFlaky01": ("done", None)}
    assert wd.find_video("procFlaky01").read_bytes() == small_mp4()
    _no_leftovers(wd.videos_dir)


def test_download_pending_disk_guard(server, tmp_path):
    wd = _workdir(tmp_path, ["diskVideo01", "diskVideo02", "diskVideo03"])
    config = _config(f"{server.base}/ok/{{id}}.mp4", min_free_gb=1e9)
    with pytest.raises(PreflightError, match="min_free_gb") as refused:  # before anything starts (exit 2)
        _download(wd, config)
    assert len(str(refused.value).splitlines()) == 1
    with pytest.raises(StageError, match="min_free_gb"):  # and checked again before every start
        _download(wd, config, preflight=False)
    assert server.hits[server.path("ok", "diskVideo01")] == 0
    with wd.manifest() as m:
        assert m.counts(STAGE)["done"] == 0


def test_download_pending_adopts_a_file_moved_in_by_a_killed_run(server, tmp_path):
    wd = _workdir(tmp_path, ["adoptVid001", "adoptVid002", "adoptVid003"])
    placed = wd.video_path("adoptVid001", "mp4")
    placed.parent.mkdir(parents=True)
    placed.write_bytes(small_mp4())
    counts = _download(wd, _config(f"{server.base}/ok/{{id}}.mp4"))
    assert counts["done"] == 3
    assert server.hits[server.path("ok", "adoptVid001")] == 0
    with wd.manifest() as m:
        state = m.states(STAGE)[m.by_id("adoptVid001").index]
    assert state.info == {"path": "videos/ad/adoptVid001.mp4", "bytes": len(small_mp4())}
    assert placed.read_bytes() == small_mp4()


def test_ctrl_c_finishes_the_video_in_flight_and_stops(server, tmp_path):
    ids = ["slowVideo01", "slowVideo02", "slowVideo03"]
    wd = _workdir(tmp_path, ids)
    config = _config(f"{server.base}/slow/{{id}}.mp4", workers=1, max_attempts=1)

    def ctrl_c_when_in_flight() -> None:  # what Ctrl-C does, once slowVideo01 reached the server
        while not server.hits[server.path("slow", ids[0])]:
            time.sleep(0.01)
        _thread.interrupt_main()

    # A background job of a non-interactive shell starts with SIGINT ignored, and then
    # interrupt_main does nothing: give this test Python's own handler, as in a terminal.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Thread(target=ctrl_c_when_in_flight)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            _download(wd, config)
    finally:
        signal.signal(signal.SIGINT, previous)
    timer.join()
    assert [server.hits[server.path("slow", v)] for v in ids] == [1, 0, 0]
    with wd.manifest() as m:
        states = m.states(STAGE)
        assert [(states[i].failure, states[i].attempts) for i in states] == [("transient", 1)]
    _no_leftovers(wd.videos_dir)
