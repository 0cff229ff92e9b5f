"""Against today's YouTube, offline: sessions and extractor arguments, bot checks, Retry-After, the preflight.

The loopback server (`tests/http_fixture.py`) plays the network's faults through yt-dlp's generic
extractor; `tests/fake_youtube.py` plays YouTube's own refusals on the real `YoutubeDL`.
"""

from __future__ import annotations

import dataclasses
import logging
import stat
import time
from pathlib import Path

import pytest

from tests.fake_youtube import COOKIE_NAME, FakeYouTubeIE, fake_factory, template
from tests.http_fixture import BehaviourServer, small_mp4
from tests.lists import write_lists
from tests.test_download import tally
from videolt.data import tooling
from videolt.data.download import (
    STAGE,
    DownloadConfig,
    download_pending,
    fetch_guarded,
    fetch_one,
    preflight,
    ydl_params,
)
from videolt.data.failures import parse_retry_after
from videolt.data.session import read_cookie_file
from videolt.data.workdir import Workdir
from videolt.errors import ConfigError, StageError
from videolt.pipeline.executors import create_executor

FAST = dict(retries=1, socket_timeout=1.0, backoff_base_s=0.01, backoff_cap_s=0.05, rate_per_hour=1e7, burst=100,
            jitter_s=0.0, pause_s=0.05, min_free_gb=0.0)
SECRET_COOKIE = "s3cretCookieValue-4f9a1c"
SECRET_TOKEN = "web.gvs+S3CRETp0Token9Z"
SECRETS = (SECRET_COOKIE, SECRET_TOKEN, "S3CRETp0Token9Z")


@pytest.fixture(scope="module")
def server():
    with BehaviourServer(slow_s=1.5, cookie_value=SECRET_COOKIE) as srv:
        yield srv


@pytest.fixture
def cookies(tmp_path) -> Path:
    """A cookies file of 'the user's own account': the loopback's cookie and a YouTube one."""
    path = tmp_path / "private" / "cookies.txt"
    path.parent.mkdir()
    path.write_text("# Netscape HTTP Cookie File\n"
                    f"127.0.0.1\tFALSE\t/\tFALSE\t0\t{COOKIE_NAME}\t{SECRET_COOKIE}\n"
                    f".youtube.com\tTRUE\t/\tTRUE\t{int(time.time()) + 86400}\tSID\t{SECRET_COOKIE}-yt\n")
    path.chmod(0o600)
    return path


def _config(template_: str, **kw) -> DownloadConfig:
    return DownloadConfig(url_template=template_, **{**FAST, **kw})


def _workdir(tmp_path: Path, ids: list[str]) -> Workdir:
    rows = [(vid, [i % 3]) for i, vid in enumerate(ids)]
    lists = write_lists(tmp_path / "lists", train=rows[:-2], val=rows[-2:-1], test=rows[-1:])
    return Workdir.init(tmp_path / "wd", lists)


def _download(wd: Workdir, config: DownloadConfig, **kw) -> dict:
    executor = create_executor("threads", workers=config.workers, in_flight=config.workers)
    try:
        return download_pending(wd, config, executor, progress=False, **kw)
    finally:
        executor.close()


def _states(wd: Workdir) -> dict[str, tuple[str, str | None, int]]:
    with wd.manifest() as m:
        return {m.video(i).video_id: (s.status, s.failure, s.attempts) for i, s in m.states(STAGE).items()}


# -- cookies and extractor arguments reach yt-dlp, and nothing else ------------------------------------

def test_session_options_reach_ytdlp_params(cookies, tmp_path):
    config = _config("https://www.youtube.com/watch?v={id}", cookies=str(cookies),
                     extractor_args=(f"youtube:player_client=default,mweb;po_token={SECRET_TOKEN}",
                                     "youtubepot-bgutilhttp:base_url=http://127.0.0.1:4416"))
    params = ydl_params(config, tmp_path, "abcdefghijk")
    assert params["extractor_args"] == {
        "youtube": {"player_client": ["default", "mweb"], "po_token": [SECRET_TOKEN]},
        "youtubepot-bgutilhttp": {"base_url": ["http://127.0.0.1:4416"]}}
    # yt-dlp gets an in-memory copy: it rewrites a cookiefile when it closes, the user's file never is
    assert SECRET_COOKIE in params["cookiefile"].getvalue() and "cookiesfrombrowser" not in params
    assert config.session == "cookies-file"
    assert SECRET_TOKEN not in repr(config) and str(cookies) not in repr(config)
    browser = _config("https://www.youtube.com/watch?v={id}", cookies_from_browser="firefox:/home/me/profile")
    assert ydl_params(browser, tmp_path, "abcdefghijk")["cookiesfrombrowser"] == ("firefox", "/home/me/profile",
                                                                                  None, None)
    assert browser.session == "browser" and _config("http://x/{id}").session == "guest"


def test_session_options_are_validated_without_echoing_them(cookies):
    with pytest.raises(ConfigError, match="choose one"):
        _config("http://x/{id}", cookies=str(cookies), cookies_from_browser="firefox")
    with pytest.raises(ConfigError, match="IE_KEY:ARG") as bad:
        _config("http://x/{id}", extractor_args=(f"po_token={SECRET_TOKEN}",))
    assert SECRET_TOKEN not in str(bad.value)
    with pytest.raises(ConfigError, match="BROWSER") as bad:
        _config("http://x/{id}", cookies_from_browser=f"netscape:{SECRET_TOKEN}")
    assert SECRET_TOKEN not in str(bad.value)
    with pytest.raises(ConfigError, match="js_runtimes"):
        _config("http://x/{id}", js_runtimes=("rhino",))


def test_cookie_required_url_succeeds_with_the_users_cookies(server, cookies, tmp_path):
    url = f"{server.base}/cookie/{{id}}.mp4"
    assert fetch_one("cookieVid01", tmp_path, _config(url)).failure == "login_required"
    res = fetch_one("cookieVid01", tmp_path, _config(url, cookies=str(cookies)))
    assert res.status == "done" and res.path.read_bytes() == small_mp4() and res.session == "cookies-file"
    assert cookies.read_text().count(SECRET_COOKIE) == 2 and stat.S_IMODE(cookies.stat().st_mode) == 0o600


def test_cookies_from_a_browser_profile_reach_ytdlp(server, tmp_path):
    """A Firefox profile (cookies.sqlite) read by yt-dlp's own browser code: --cookies-from-browser firefox:DIR."""
    import sqlite3

    profile = tmp_path / "firefox-profile"
    profile.mkdir()
    with sqlite3.connect(profile / "cookies.sqlite") as db:
        db.execute("CREATE TABLE moz_cookies (id INTEGER PRIMARY KEY, originAttributes TEXT, name TEXT, value TEXT, "
                   "host TEXT, path TEXT, expiry INTEGER, isSecure INTEGER)")
        db.execute("INSERT INTO moz_cookies VALUES (1, '', ?, ?, '127.0.0.1', '/', ?, 0)",
                   (COOKIE_NAME, SECRET_COOKIE, int(time.time()) + 3600))
    res = fetch_one("cookieVid02", tmp_path / "v", _config(f"{server.base}/cookie/{{id}}.mp4",
                                                            cookies_from_browser=f"firefox:{profile}"))
    assert res.status == "done" and res.session == "browser", res.message
    missing = fetch_one("cookieVid03", tmp_path / "v", _config(f"{server.base}/cookie/{{id}}.mp4",
                                                               cookies_from_browser=f"firefox:{tmp_path / 'none'}"))
    assert missing.failure == "session" and str(tmp_path / "none") not in missing.message


def test_extractor_args_and_cookies_reach_the_extractor(server, cookies, tmp_path):
    FakeYouTubeIE.seen_args.clear()
    config = _config(template(server.base), cookies=str(cookies),
                     extractor_args=(f"youtube:player_client=mweb;po_token={SECRET_TOKEN}",))
    assert fetch_one("ageCookieOk", tmp_path, config, ydl_factory=fake_factory).status == "done"
    assert FakeYouTubeIE.seen_args["ageCookieOk"] == {"player_client": ["mweb"], "po_token": [SECRET_TOKEN],
                                                       "cookie": SECRET_COOKIE}
    guest = fetch_one("ageCookieOk", tmp_path, _config(template(server.base)), ydl_factory=fake_factory)
    assert guest.failure == "age_restricted"  # the same video as a guest


def test_secrets_never_reach_the_workdir_or_the_log(server, cookies, tmp_path, caplog):
    """A leaky extractor prints the token and the cookie: every kept file and every log line is clean."""
    ids = ["leakyVideo1", "goodVideo20", "privateVid1", "ageCookieOk", "goodVideo21"]
    wd = _workdir(tmp_path, ids)
    config = _config(template(server.base), cookies=str(cookies), workers=1, max_attempts=1,
                     extractor_args=(f"youtube:player_client=mweb;po_token={SECRET_TOKEN}",))
    caplog.set_level(logging.DEBUG)
    counts = _download(wd, config, ydl_factory=fake_factory)
    assert counts["done"] == 3 and counts["failed"] == {"transient": 1, "private": 1}, counts
    states = _states(wd)
    assert states["leakyVideo1"][:2] == ("failed", "transient")
    with wd.manifest() as m:
        state = m.states(STAGE)[m.by_id("leakyVideo1").index]
        done = m.states(STAGE)[m.by_id("goodVideo20").index]
    assert "pot=<redacted>" in state.message and "<redacted>" in state.message
    assert state.info["session"] == done.info["session"] == "cookies-file"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "<redacted>" in logged  # the leaky warning was logged, masked
    for secret in (*SECRETS, str(cookies)):
        assert secret not in logged
        for path in wd.root.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


# -- bot checks, rate limits, Retry-After, the session -----------------------------------------------------

def test_bot_checks_stop_the_run_and_leave_the_videos_retryable(server, tmp_path):
    ids = ["goodVideo30", "notABotPls1", "captchaVid1", "notABotPls2", "notABotPls3", "goodVideo31"]
    wd = _workdir(tmp_path, ids)
    FakeYouTubeIE.calls.clear()
    config = _config(template(server.base), workers=1, max_bot_checks=3)
    with pytest.raises(StageError) as stopped:
        _download(wd, config, ydl_factory=fake_factory)
    line = str(stopped.value)
    assert "\n" not in line and "not a bot 3 times in a row" in line
    assert "--cookies FILE" in line and "--rate" in line and "never rotates" in line
    assert FakeYouTubeIE.calls == {"goodVideo30": 1, "notABotPls1": 1, "captchaVid1": 1, "notABotPls2": 1}
    states = _states(wd)
    assert states["goodVideo30"] == ("done", None, 1)
    assert [states[v] for v in ids[1:4]] == [("failed", "bot_check", 0)] * 3  # cost no attempt
    assert "notABotPls3" not in states and "goodVideo31" not in states  # never started: still pending

    # A success in between resets the count; the bot-checked videos are tried again by the next run.
    FakeYouTubeIE.calls.clear()
    counts = _download(wd, dataclasses.replace(config, max_bot_checks=5), ydl_factory=fake_factory)
    assert tally(counts) == {"todo": 5, "done": 1, "failed": {"bot_check": 4}}
    assert set(FakeYouTubeIE.calls) == set(ids[1:])


def test_bot_check_advice_with_a_session(server, cookies, tmp_path):
    wd = _workdir(tmp_path, ["notABotPls1", "notABotPls2", "goodVideo40"])
    with pytest.raises(StageError, match="with your cookies-file session.*private window"):
        _download(wd, _config(template(server.base), workers=1, max_bot_checks=2, cookies=str(cookies)),
                  ydl_factory=fake_factory)


def test_a_session_ytdlp_cannot_use_stops_the_run(server, cookies, tmp_path):
    wd = _workdir(tmp_path, ["staleCookie", "goodVideo50", "goodVideo51"])
    with pytest.raises(StageError, match="cannot use your session.*fresh cookies"):
        _download(wd, _config(template(server.base), workers=1, cookies=str(cookies)), ydl_factory=fake_factory)
    assert _states(wd) == {"staleCookie": ("failed", "session", 0)}


def test_retry_after_sets_the_pause(server, tmp_path):
    """A 429 with Retry-After: 1 pauses every worker 1 s, not the configured 60 s, then the video is fetched."""
    wd = _workdir(tmp_path, ["raVideo0001", "raVideo0002", "raVideo0003"])
    server.by_id.update({"raVideo0001": "retryafter1"})
    started = time.monotonic()
    counts = _download(wd, _config(f"{server.base}/by-id/{{id}}.mp4", workers=1, pause_s=60.0))
    elapsed = time.monotonic() - started
    assert tally(counts) == {"todo": 3, "done": 3, "failed": {}}
    assert 1.0 <= elapsed < 30, elapsed
    assert server.hits[server.path("by-id", "raVideo0001")] == 3  # the 429'd probe, then probe + GET
    assert _states(wd)["raVideo0001"] == ("done", None, 1)  # the 429 cost no attempt


def test_a_retry_after_beyond_max_pause_stops_the_run(server, tmp_path):
    wd = _workdir(tmp_path, ["raVideo0011", "raVideo0012", "raVideo0013"])
    server.by_id.update({"raVideo0011": "retryafter7200"})
    with pytest.raises(StageError, match="wait 2.0 h.*Resume after"):
        _download(wd, _config(f"{server.base}/by-id/{{id}}.mp4", workers=1, max_pause_s=600))


def test_a_bug_on_our_side_is_internal_and_its_traceback_redacted(cookies, tmp_path, caplog):
    def broken_factory(params):
        raise RuntimeError(f"bug while building from {params['extractor_args']}")

    config = _config("http://127.0.0.1:9/{id}.mp4", cookies=str(cookies),
                     extractor_args=(f"youtube:po_token={SECRET_TOKEN}",))
    res = fetch_guarded("abcdefghijk", tmp_path / "videos", config, tmp_path / "partial", broken_factory)
    assert res.failure == "internal" and res.status == "failed" and "RuntimeError" in res.message
    logged = "\n".join(r.getMessage() for r in caplog.records)  # one line, saying where the traceback is
    log_file = (tmp_path / "logs" / "videolt.log").read_text()  # the workdir's log (videos/ is in the workdir)
    assert "\n" not in logged and f"(traceback in {tmp_path / 'logs' / 'videolt.log'})" in logged
    assert "Traceback" in log_file and "broken_factory" in log_file
    for secret in SECRETS:
        assert secret not in res.message and secret not in logged and secret not in log_file


def test_parse_retry_after():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Thu, 03 Dec 2026 10:00:30 GMT", now=1796292000.0) == 30.0
    assert parse_retry_after("Thu, 03 Dec 2026 09:00:00 GMT", now=1796292000.0) == 0.0
    assert parse_retry_after("soon") is None


# -- the preflight --------------------------------------------------------------------------------------

@pytest.fixture
def no_runtime(tmp_path, monkeypatch):
    """No JavaScript runtime anywhere: an empty $PATH and an empty scripts folder."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(tooling, "scripts_dir", lambda: empty)
    tooling._resolved.cache_clear()
    yield empty
    tooling._resolved.cache_clear()


def fake_runtime(folder: Path, name: str, version_line: str) -> Path:
    """An executable that answers `--version` as the real runtime would (enough for yt-dlp's probe)."""
    exe = folder / name
    exe.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    exe.chmod(0o755)
    return exe


def test_preflight_refuses_youtube_without_a_runtime(no_runtime, tmp_path):
    wd = _workdir(tmp_path, ["abcdefghijk", "bcdefghijkl", "cdefghijklm"])
    with pytest.raises(tooling.PreflightError) as refused:
        _download(wd, _config("https://www.youtube.com/watch?v={id}"))
    (line,) = str(refused.value).splitlines()
    assert line.startswith("JavaScript runtime: none usable for YouTube") and "videolt[youtube]" in line
    assert _states(wd) == {}  # nothing started, nothing recorded

    # Not YouTube's template: no runtime is needed (the loopback tests and the demo).
    checks = {c.name: c for c in preflight(wd, _config("http://127.0.0.1:9/{id}.mp4"))}
    assert checks["JavaScript runtime"].status == "info"

    # A runtime yt-dlp accepts, found on the PATH: passed to yt-dlp, Node or Bun as well as Deno.
    fake_runtime(no_runtime, "node", "v22.11.0")
    fake_runtime(no_runtime, "bun", "1.0.0")  # older than yt-dlp's minimum: reported, not passed
    tooling._resolved.cache_clear()
    checks = {c.name: c for c in preflight(wd, _config("https://www.youtube.com/watch?v={id}"))}
    assert checks["JavaScript runtime"].status == "ok"
    assert "node 22.11.0" in checks["JavaScript runtime"].detail and "bun 1.0.0" in checks["JavaScript runtime"].detail
    assert tooling.resolve_js_runtimes() == {"node": {"path": str(no_runtime / "node")}}
    assert ydl_params(_config("https://www.youtube.com/watch?v={id}"), tmp_path, "x")["js_runtimes"] == {
        "node": {"path": str(no_runtime / "node")}}


def test_preflight_refuses_an_unreadable_cookies_file(tmp_path):
    wd = _workdir(tmp_path, ["abcdefghijk", "bcdefghijkl", "cdefghijklm"])
    bad = tmp_path / "cookies.json"
    bad.write_text('[{"name": "SID", "value": "%s"}]' % SECRET_COOKIE)
    with pytest.raises(tooling.PreflightError, match="Netscape") as refused:
        _download(wd, _config("http://127.0.0.1:9/{id}.mp4", cookies=str(bad)))
    assert SECRET_COOKIE not in str(refused.value)
    with pytest.raises(tooling.PreflightError, match="cannot read"):
        _download(wd, _config("http://127.0.0.1:9/{id}.mp4", cookies=str(tmp_path / "missing.txt")))


def test_cookie_file_check_names_lines_never_content(tmp_path):
    path = tmp_path / "cookies.txt"
    path.write_text("# Netscape HTTP Cookie File\n"
                    f".youtube.com\tTRUE\t/\tTRUE\t1\tOLD\t{SECRET_COOKIE}1\n"
                    f"garbage line with {SECRET_COOKIE}2\n"
                    f"#HttpOnly_.youtube.com\tTRUE\t/\tTRUE\t0\tSID\t{SECRET_COOKIE}3\n")
    path.chmod(0o644)
    jar = read_cookie_file(path)
    assert (jar.cookies, jar.youtube, jar.expired, jar.bad_lines) == (2, 2, 1, (3,))
    assert f"{SECRET_COOKIE}2" not in jar.text and SECRET_COOKIE not in repr(jar)
    check = tooling.check_cookies(str(path), None)
    assert check.status == "warn" and "malformed lines skipped: 3" in check.detail
    assert "1 expired" in check.detail and "chmod 600" in check.detail and SECRET_COOKIE not in check.line()


def test_preflight_disk_estimate(tmp_path):
    wd = _workdir(tmp_path, [f"diskVid{i:04d}" for i in range(10)])
    checks = {c.name: c for c in preflight(wd, _config("http://127.0.0.1:9/{id}.mp4"))}
    assert checks["write access"].status == "ok"
    disk = checks["disk"]
    assert "10 videos to fetch need about 96.0 MB (9.6 MB each: assumed 192 s at 0.4 Mbit/s (360p))" in disk.detail
    hd = {c.name: c for c in preflight(wd, _config("http://127.0.0.1:9/{id}.mp4", max_short_side=720))}
    assert "36.0 MB each" in hd["disk"].detail and "(720p)" in hd["disk"].detail


def test_preflight_refuses_a_workdir_it_cannot_write(tmp_path):
    wd = _workdir(tmp_path, ["abcdefghijk", "bcdefghijkl", "cdefghijklm"])
    if wd.videos_dir.is_dir():
        wd.videos_dir.rmdir()
    wd.videos_dir.write_text("not a folder")  # (a read-only folder would do, but root writes anywhere)
    with pytest.raises(tooling.PreflightError, match="^write access: .*videos"):
        _download(wd, _config("http://127.0.0.1:9/{id}.mp4"))
