"""`videolt doctor` and `videolt download` against YouTube's refusals, end to end and offline.

The fake YouTube of `tests/fake_youtube.py` is loaded into the `videolt download` subprocess by
yt-dlp's own plugin mechanism (`--plugin-dirs tests/ytdlp_plugins`); its media come from the
loopback server, whose per-ID behaviours add the network's faults.
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

from tests.fake_youtube import COOKIE_NAME, PLUGIN_DIR, template
from tests.http_fixture import BehaviourServer, small_mp4
from tests.lists import write_lists
from tests.test_download import tally
from tests.test_youtube import fake_runtime, no_runtime  # noqa: F401  (a fixture)
from videolt import cli
from videolt.data import tooling
from videolt.data.download import PARTIAL_DIR

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
SECRET_COOKIE = "cl1SecretCookie-77ab"
SECRET_TOKEN = "web.gvs+CLIp0TokenSecret42"

# video ID -> (status, failure) after every run; the fake YouTube answers by ID, the server by behaviour
EXPECTED = {
    **{f"cliYtOk{i:04d}": ("done", None) for i in range(6)},
    "privateVid1": ("failed", "private"), "removedVid1": ("failed", "removed"), "termination": ("failed", "removed"),
    "geoBlocked1": ("failed", "geo_blocked"), "ageRestrict": ("failed", "age_restricted"),
    "membersOnly": ("failed", "members_only"), "signInNeed1": ("failed", "login_required"),
    "copyrighted": ("failed", "copyright"), "policyBreak": ("failed", "policy"),
    "notABotPls1": ("failed", "bot_check"), "notABotPls2": ("failed", "bot_check"),
    "weirdThing1": ("failed", "unknown"),
    "cliYtBusy01": ("failed", "transient"),  # the media GET answers 503 every time
    "cliYtFlaky1": ("done", None),  # two 503s, then yt-dlp's own retry succeeds
    "1234567890": ("failed", "invalid_id"), "abcdefghijkl": ("failed", "invalid_id"),
}
MEDIA = {"cliYtBusy01": "503", "cliYtFlaky1": "flaky2"}


@pytest.fixture(scope="module")
def server():
    with BehaviourServer(slow_s=1.5, cookie_value=SECRET_COOKIE) as srv:
        srv.by_id.update(MEDIA)
        yield srv


def _cli(*args: str, timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "videolt", *args], cwd=REPO, env=env or ENV, capture_output=True,
                          text=True, timeout=timeout)


def _init(tmp_path: Path, name: str, ids: list[str]) -> Path:
    rows = [(vid, [i % 4]) for i, vid in enumerate(ids)]
    lists = write_lists(tmp_path / f"{name}-lists", train=rows[:-4], val=rows[-4:-2], test=rows[-2:])
    wd = tmp_path / name
    assert cli.main(["init", str(wd), "--labels", str(lists)]) == 0
    return wd


def _fake_args(wd: Path, server: BehaviourServer, *extra: str) -> list[str]:
    return ["download", str(wd), "--url-template", template(server.base), "--plugin-dirs", str(PLUGIN_DIR),
            "--rate", "100000", "--workers", "2", "--socket-timeout", "1", "--max-attempts", "2", "--backoff", "0.05",
            "--jitter", "0", "--pause", "0.05", "--min-free-gb", "0", "--no-progress", *extra]


def _states(wd: Path) -> dict[str, tuple[str, str | None, int]]:
    with contextlib.closing(sqlite3.connect(f"file:{wd / 'manifest.sqlite'}?mode=ro", uri=True, timeout=10)) as db:
        rows = db.execute("SELECT v.video_id, s.status, s.failure, s.attempts FROM state s "
                          "JOIN videos v ON v.idx = s.idx WHERE s.stage = 'download'").fetchall()
    return {vid: (status, failure, attempts) for vid, status, failure, attempts in rows}


def _recorded(wd: Path) -> int:
    try:
        return len(_states(wd))
    except sqlite3.OperationalError:  # the writer holds a lock this instant
        return 0


# -- doctor ---------------------------------------------------------------------------------------------

def test_doctor_names_the_missing_runtime_and_its_fix(no_runtime, server, capsys):  # noqa: F811
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "JavaScript runtime" in x)
    assert "FAIL" in line and "none usable for YouTube" in line and "deno: not found" in line
    fix = out.splitlines()[out.splitlines().index(line) + 1]
    assert "fix: pip install 'videolt[youtube]'" in fix and "npm install -g deno" in fix and "Node >= 22" in fix
    # Not YouTube: nothing fails for want of a runtime (the loopback tests and the demo)
    assert cli.main(["doctor", "--url-template", f"{server.base}/ok/{{id}}.mp4", "--json"]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["JavaScript runtime"]["status"] == "info"


def test_doctor_passes_with_a_runtime_present(no_runtime, tmp_path, capsys, monkeypatch):  # noqa: F811
    # The tests run offline (conftest): the network check is tested against loopback hosts in test_offline.py.
    monkeypatch.setattr(tooling, "check_host", lambda url, **_: tooling.Check("network", "ok", f"{url}: not checked"))
    fake_runtime(no_runtime, "deno", "deno 2.9.8 (stable, release, x86_64-unknown-linux-gnu)")
    fake_runtime(no_runtime, "node", "v20.20.2")  # what these machines have: too old for yt-dlp, and said so
    wd = _init(tmp_path, "doctor", [f"docVideo{i:03d}" for i in range(8)])
    capsys.readouterr()
    assert cli.main(["doctor", str(wd), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in result["checks"]}
    assert result["ok"] and result["workdir"] == str(wd)
    assert checks["JavaScript runtime"]["status"] == "ok" and "deno 2.9.8" in checks["JavaScript runtime"]["detail"]
    assert "node 20.20.2" in checks["JavaScript runtime"]["detail"] and ">= 22" in checks["JavaScript runtime"]["detail"]
    for name in ("Python", "packages", "yt-dlp", "yt-dlp-ejs", "session", "write access", "disk", "decoder pyav",
                 "torch and GPU"):
        assert checks[name]["status"] != "fail", checks[name]
    assert "8 videos to fetch" in checks["disk"]["detail"]
    assert cli.main(["doctor", str(wd)]) == 0
    assert capsys.readouterr().out.startswith(f"videolt doctor ({wd}): everything needed is in place")


@pytest.mark.skipif(not any(r.supported for r in tooling.find_js_runtimes()),
                    reason="no JavaScript runtime yt-dlp accepts on this machine (npm install -g deno)")
def test_doctor_with_the_real_runtime_here(capsys):
    assert cli.main(["doctor", "--json"]) in (0, 1)
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["JavaScript runtime"]["status"] == "ok"


def test_download_refuses_youtube_without_a_runtime(tmp_path):
    """The CLI end to end with no runtime: an empty PATH, and (as `videolt[youtube]` puts Deno next to
    Python, where no PATH hides it) yt-dlp's scripts folder pointed at an empty one."""
    wd = _init(tmp_path, "refused", ["abcdefghijk", "bcdefghijkl", "cdefghijklm", "defghijklmn", "efghijklmno"])
    empty = tmp_path / "bin"
    empty.mkdir()
    code = ("import pathlib, sys; import videolt.data.tooling as t; t.scripts_dir = lambda: pathlib.Path(sys.argv[1]); "
            "from videolt.cli import main; sys.exit(main(sys.argv[2:]))")
    res = subprocess.run([sys.executable, "-c", code, str(empty), "download", str(wd), "--no-progress"], cwd=REPO,
                         env={**ENV, "PATH": str(empty)}, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("videolt download: error: JavaScript runtime: none usable for YouTube")
    assert "fix: pip install 'videolt[youtube]'" in line
    assert _recorded(wd) == 0


# -- download against the fake YouTube ---------------------------------------------------------------------

def test_every_class_is_classified_and_a_kill_at_any_point_loses_nothing(server, tmp_path):
    """SIGKILL during start-up (nothing recorded yet), then after 2, 5 and 7 more outcomes; then a clean rerun."""
    ids = list(EXPECTED)
    wd = _init(tmp_path, "killed", ids)
    args = [sys.executable, "-m", "videolt", *_fake_args(wd, server, "--max-bot-checks", "100", "--workers", "1")]
    killed = 0
    for more in (0, 2, 5, 7):
        before = _recorded(wd)
        proc = subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            started = time.monotonic()
            while (_recorded(wd) < before + more) if more else (time.monotonic() - started < 0.5):
                if proc.poll() is not None:
                    break
                assert time.monotonic() < started + 90
                time.sleep(0.01)
        finally:
            killed += proc.poll() is None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert _recorded(wd) < len(ids)
    assert killed == 4  # every run was killed mid-way
    res = _cli(*_fake_args(wd, server, "--max-bot-checks", "100", "--json"))
    assert res.returncode == 0, res.stderr
    assert {vid: s[:2] for vid, s in _states(wd).items()} == EXPECTED
    videos = wd / "videos"
    assert not any(p.is_file() for p in (videos / PARTIAL_DIR).rglob("*"))
    files = {p.stem: p for p in videos.rglob("*") if p.is_file() and PARTIAL_DIR not in p.parts}
    assert set(files) == {v for v, (status, _) in EXPECTED.items() if status == "done"}
    assert all(p.read_bytes() == small_mp4() for p in files.values())
    assert all(_states(wd)[v][2] == 0 for v in ("notABotPls1", "notABotPls2"))  # bot checks cost no attempt


def test_bot_checks_stop_the_cli_with_one_line(server, tmp_path):
    wd = _init(tmp_path, "bots", ["notABotPls1", "notABotPls2", "notABotPls3", "notABotPls4", "cliYtOk0100",
                                  "cliYtOk0101"])
    res = _cli(*_fake_args(wd, server, "--workers", "1"))
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("videolt download: error: YouTube asked to confirm this is not a bot 3 times in a row")
    assert "cookies: --cookies FILE, or cookies_from_browser: --cookies-from-browser NAME" in last
    assert "lower rate_per_hour (--rate; now" in last
    assert [s for s in _states(wd).values()] == [("failed", "bot_check", 0)] * 3


def test_session_and_extractor_args_never_reach_a_file_or_the_log(server, tmp_path):
    """`-v` (debug logging) included: the cookies file's values, its path and the token stay out."""
    cookies = tmp_path / "secret-dir" / "cookies.txt"
    cookies.parent.mkdir()
    cookies.write_text("# Netscape HTTP Cookie File\n"
                       f"127.0.0.1\tFALSE\t/\tFALSE\t0\t{COOKIE_NAME}\t{SECRET_COOKIE}\n")
    wd = _init(tmp_path, "secret", ["leakyVideo1", "ageCookieOk", "privateVid1", "cliYtOk0200", "cliYtOk0201"])
    res = _cli("-v", *_fake_args(wd, server, "--json", "--cookies", str(cookies),
                                 "--extractor-args", f"youtube:player_client=mweb;po_token={SECRET_TOKEN}"))
    assert res.returncode == 0, res.stderr
    assert tally(json.loads(res.stdout)) == {"todo": 5, "done": 3, "failed": {"transient": 1, "private": 1}}
    assert "<redacted>" in res.stderr  # the leaky extractor's warning, masked
    for secret in (SECRET_COOKIE, SECRET_TOKEN, "CLIp0TokenSecret42", str(cookies), "secret-dir"):
        assert secret not in res.stderr and secret not in res.stdout
        for path in wd.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    with contextlib.closing(sqlite3.connect(wd / "manifest.sqlite")) as db:
        infos = [json.loads(i) for (i,) in db.execute("SELECT info FROM state")]
    assert {i["session"] for i in infos} == {"cookies-file"}
