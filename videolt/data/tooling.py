"""What the download stage needs from this machine, checked before a run that may take weeks.

Each check returns a `Check`: what was found, whether it will work (`ok`, `warn`, `fail`, or `info`
for facts), and the fix. `fail` means every fetch would fail (no JavaScript runtime for YouTube, a
cookies file that cannot be read, no writable or free disk): `refuse` raises `PreflightError` (exit
2, one line each) on those alone. `videolt doctor` shows the same checks with the other stages'.

Since 2025.11 yt-dlp solves YouTube's JavaScript challenges in an external runtime with the
`yt-dlp-ejs` scripts. yt-dlp enables only Deno unless told otherwise; `find_js_runtimes` looks for
all four runtimes yt-dlp supports (deno, node, quickjs, bun) and `resolve_js_runtimes` hands every
usable one to yt-dlp's `js_runtimes` param, so Node or Bun serve as well as Deno. The versions and
minimums are yt-dlp's own (its runtime classes), so videolt and yt-dlp never disagree.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import os
import pkgutil
import re
import shutil
import sys
import sysconfig
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import yt_dlp

from videolt.data.session import CookieFile, file_is_private, parse_browser, read_cookie_file
from videolt.errors import ConfigError, UsageError

__all__ = ["Check", "JsRuntime", "PreflightError", "check_cookies", "check_disk_need", "check_ejs",
           "check_js_runtimes", "check_plugins", "check_writable", "check_ytdlp", "find_js_runtimes",
           "is_youtube", "refuse", "resolve_js_runtimes"]

Status = Literal["ok", "warn", "fail", "info"]
#: yt-dlp's runtimes in its order of priority, with the executable each is found as.
JS_RUNTIMES: tuple[tuple[str, str], ...] = (("deno", "deno"), ("node", "node"), ("quickjs", "qjs"), ("bun", "bun"))
YOUTUBE_HOSTS = ("youtube.com", "youtu.be", "youtube-nocookie.com")
YTDLP_STALE_DAYS = 90  # YouTube changes its player several times a year


@dataclass(frozen=True)
class Check:
    """One line of `videolt doctor`: what, how it stands, what was found, and the fix."""

    name: str
    status: Status
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return f"{self.name}: {self.detail}" + (f"; fix: {self.fix}" if self.fix else "")


class PreflightError(UsageError):
    """The run would fail for every video: one line per reason, each with its fix (exit 2)."""

    def __init__(self, checks: Sequence[Check]):
        self.checks = tuple(checks)
        super().__init__("\n".join(c.line() for c in self.checks))


def refuse(checks: Sequence[Check]) -> None:
    """Raise `PreflightError` if any check failed."""
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        raise PreflightError(failed)


def is_youtube(url_template: str) -> bool:
    """Whether a URL template points at YouTube (whose extraction needs a JavaScript runtime)."""
    host = (urllib.parse.urlsplit(url_template.replace("{id}", "x")).hostname or "").lower()
    return any(host == h or host.endswith("." + h) for h in YOUTUBE_HOSTS)


# -- yt-dlp and its components ------------------------------------------------------------------------

def ytdlp_release_date(version: str = yt_dlp.version.__version__) -> dt.date | None:
    """yt-dlp's versions are release dates (2026.10.26, nightlies 2026.10.26.123456)."""
    m = re.match(r"(\d{4})\.(\d{1,2})\.(\d{1,2})", version)
    try:
        return dt.date(*map(int, m.groups())) if m else None
    except ValueError:
        return None


def check_ytdlp(today: dt.date | None = None) -> Check:
    version = yt_dlp.version.__version__
    released = ytdlp_release_date(version)
    if released is None:
        return Check("yt-dlp", "info", f"{version} (release date unknown)")
    age = ((today or dt.date.today()) - released).days
    detail = f"{version}, released {age} days ago"
    if age > YTDLP_STALE_DAYS:
        return Check("yt-dlp", "warn", f"{detail}: YouTube changes its player several times a year",
                     "pip install -U 'yt-dlp[default]'")
    return Check("yt-dlp", "ok", detail)


def check_ejs() -> Check:
    """yt-dlp-ejs: the challenge-solving scripts the runtime executes; its major.minor must match yt-dlp's."""
    try:
        have = importlib.metadata.version("yt-dlp-ejs")
    except importlib.metadata.PackageNotFoundError:
        return Check("yt-dlp-ejs", "warn", "not installed: YouTube formats may go missing",
                     "pip install -U 'yt-dlp[default]' (or pip install 'videolt[youtube]')")
    want = _ejs_wanted()
    if want and have.split(".")[:2] != want.split(".")[:2]:
        return Check("yt-dlp-ejs", "warn", f"{have}, but yt-dlp {yt_dlp.version.__version__} expects {want}",
                     "pip install -U 'yt-dlp[default]'")
    return Check("yt-dlp-ejs", "ok", have)


def _ejs_wanted() -> str | None:
    try:  # the version yt-dlp vendors and checks against (an internal module: absent means unknown)
        from yt_dlp.extractor.youtube.jsc._builtin.vendor import VERSION
    except ImportError:
        return None
    return str(VERSION)


def plugin_modules() -> list[str]:
    """yt-dlp plugin modules found (e.g. a proof-of-origin token provider), by module name."""
    try:
        import importlib

        pkg = importlib.import_module("yt_dlp_plugins.extractor")
    except ImportError:
        return []
    return sorted(m.name.rpartition(".")[2] for m in pkgutil.iter_modules(pkg.__path__, "yt_dlp_plugins.extractor."))


def check_plugins() -> Check:
    found = plugin_modules()
    if found:
        return Check("yt-dlp plugins", "info", ", ".join(found))
    return Check("yt-dlp plugins", "info", "none (optional: a proof-of-origin token provider, e.g. "
                 "pip install bgutil-ytdlp-pot-provider plus its server, helps against bot checks)")


# -- JavaScript runtimes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class JsRuntime:
    """A JavaScript runtime yt-dlp supports, as found on this machine."""

    name: str  # yt-dlp's key: deno, node, quickjs, bun
    path: str | None  # None: not found
    version: str | None = None
    supported: bool = False  # found and at least yt-dlp's minimum version
    minimum: str | None = None

    def describe(self) -> str:
        if self.path is None:
            return f"{self.name}: not found"
        if self.supported:
            return f"{self.name} {self.version} ({self.path})"
        return f"{self.name} {self.version} ({self.path}): too old for yt-dlp, which needs >= {self.minimum}"


def find_js_runtimes(specs: Sequence[str] = (), search_path: str | None = None) -> list[JsRuntime]:
    """The runtimes named in `specs` (yt-dlp's RUNTIME[:PATH]) or, by default, all four, in yt-dlp's order.

    A runtime is looked for where yt-dlp looks (Python's scripts folder, where `pip install deno`
    puts it), then on `search_path` (default: $PATH); yt-dlp's own runtime class reads its version.
    """
    wanted = [(s.partition(":")[0].lower(), s.partition(":")[2] or None) for s in specs] or \
             [(name, None) for name, _ in JS_RUNTIMES]
    exes = dict(JS_RUNTIMES)
    return [_probe(name, path or _locate(exes.get(name, name), search_path)) for name, path in wanted]


def scripts_dir() -> Path:
    """Python's scripts folder (the venv's bin/), where yt-dlp looks for a runtime before $PATH."""
    return Path(sysconfig.get_path("scripts"))


def _locate(exe: str, search_path: str | None) -> str | None:
    scripts = scripts_dir() / (exe + (sysconfig.get_config_var("EXE") or ""))
    if scripts.is_file() and os.access(scripts, os.X_OK):
        return str(scripts)
    return shutil.which(exe, path=search_path if search_path is not None else os.environ.get("PATH"))


def _probe(name: str, path: str | None) -> JsRuntime:
    if path is None:
        return JsRuntime(name, None)
    from yt_dlp.globals import supported_js_runtimes

    cls = supported_js_runtimes.value.get(name)
    if cls is None:
        return JsRuntime(name, path, "unknown", False, "a runtime this yt-dlp supports")
    minimum = ".".join(map(str, getattr(cls, "MIN_SUPPORTED_VERSION", ()))) or None
    if os.path.isdir(path):
        path = os.path.join(path, dict(JS_RUNTIMES).get(name, name))
    info = cls(path=path).info
    if not info:
        if not os.path.exists(path):
            return JsRuntime(name, None)
        return JsRuntime(name, path, "unreadable", False, minimum)
    return JsRuntime(name, path, info.version, bool(info.supported), minimum)


@functools.lru_cache(maxsize=8)
def _resolved(specs: tuple[str, ...], search_path: str | None) -> tuple[tuple[str, str], ...]:
    return tuple((r.name, r.path) for r in find_js_runtimes(specs, search_path) if r.supported and r.path)


def resolve_js_runtimes(specs: Sequence[str] = ()) -> dict[str, dict[str, str]]:
    """yt-dlp's `js_runtimes` param: every usable runtime found (once per process and $PATH)."""
    return {name: {"path": path} for name, path in _resolved(tuple(specs), os.environ.get("PATH"))}


def check_js_runtimes(url_template: str, specs: Sequence[str] = (), search_path: str | None = None) -> Check:
    found = find_js_runtimes(specs, search_path)
    usable = [r for r in found if r.supported]
    needed = is_youtube(url_template)
    others = "; ".join(r.describe() for r in found if not r.supported)
    if usable:
        detail = ", ".join(r.describe() for r in usable) + " (all passed to yt-dlp)"
        return Check("JavaScript runtime", "ok", detail + (f"; {others}" if others else ""))
    if not needed:
        return Check("JavaScript runtime", "info", f"none usable ({others}); not needed for {url_template}")
    return Check("JavaScript runtime", "fail", f"none usable for YouTube ({others})", install_runtime_hint())


def install_runtime_hint() -> str:
    """How to get a runtime yt-dlp accepts (minimum versions read from yt-dlp)."""
    from yt_dlp.globals import supported_js_runtimes

    def minimum(name: str) -> str:
        return ".".join(map(str, getattr(supported_js_runtimes.value.get(name), "MIN_SUPPORTED_VERSION", ()))) or "?"

    return (f"pip install 'videolt[youtube]' (brings Deno and yt-dlp-ejs), or npm install -g deno, or put "
            f"Node >= {minimum('node')} or Bun >= {minimum('bun')} on the PATH")


# -- the user's session -------------------------------------------------------------------------------

def check_cookies(cookies: str | None, cookies_from_browser: str | None) -> Check:
    """The session a run will use; never shows a cookie, a path's content or a profile."""
    if cookies:
        try:
            jar: CookieFile = read_cookie_file(cookies)
        except ConfigError as e:
            return Check("session", "fail", f"cookies file: {e}", "export your account's cookies to a Netscape "
                         "cookies.txt (see yt-dlp's FAQ) and pass --cookies FILE")
        if not jar.cookies:
            return Check("session", "fail", f"cookies file {jar.path} holds no cookie"
                         + (f" (malformed lines: {_lines(jar.bad_lines)})" if jar.bad_lines else ""),
                         "export the cookies again in Netscape format")
        notes = []
        if jar.bad_lines:
            notes.append(f"malformed lines skipped: {_lines(jar.bad_lines)}")
        if jar.expired:
            notes.append(f"{jar.expired} expired")
        if not file_is_private(jar.mode):
            notes.append("readable by other users (chmod 600)")
        detail = f"cookies file, {jar.cookies} cookies ({jar.youtube} for youtube.com/google.com)"
        if not jar.youtube:
            return Check("session", "warn", f"{detail}: none for YouTube",
                         "export the cookies while signed in to youtube.com")
        return Check("session", "warn" if notes else "ok", detail + (f"; {'; '.join(notes)}" if notes else ""))
    if cookies_from_browser:
        try:
            browser = parse_browser(cookies_from_browser)[0]
        except ConfigError as e:
            return Check("session", "fail", str(e))
        return Check("session", "ok", f"cookies from {browser}, read by yt-dlp at each fetch")
    return Check("session", "info", "guest: about 300 videos/hour per IP, and 'confirm you're not a bot' after a "
                 "few hundred", "optional: --cookies FILE (your own account) and a lower --rate")


def _lines(numbers: Sequence[int]) -> str:
    shown = ", ".join(map(str, numbers[:5]))
    return shown + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")


# -- disk ---------------------------------------------------------------------------------------------

# -- the network ----------------------------------------------------------------------------------------

HOST_FIX = ("connect this machine to the internet (a proxy goes in HTTPS_PROXY), or fix --url-template; offline, "
            "`videolt import-videos` and `import-features` need no network")


def check_host(url_template: str, *, timeout: float = 5.0) -> Check:
    """Whether the download host resolves and answers: a HEAD request to its root with `timeout`
    (resolving the name is bounded by it too). Any HTTP answer, even an error status, counts."""
    parts = urllib.parse.urlsplit(url_template.replace("{id}", "x"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Check("network", "info", f"{url_template}: not an http(s) URL; not checked")
    host, root = parts.hostname, f"{parts.scheme}://{parts.netloc}/"
    try:
        _resolve(host, parts.port or (443 if parts.scheme == "https" else 80), timeout)
    except (OSError, TimeoutError) as e:
        why = "no answer from the name server" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        return Check("network", "fail", f"{host} does not resolve ({why}): this machine looks offline, so every "
                     "download would fail", HOST_FIX)
    tic = time.monotonic()
    try:
        with urllib.request.urlopen(urllib.request.Request(root, method="HEAD"), timeout=timeout) as answer:
            status = answer.status
    except urllib.error.HTTPError as e:  # an answer, if not a welcome one: the host is there
        status = e.code
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return Check("network", "fail", f"{root} does not answer ({reason}), so every download would fail", HOST_FIX)
    return Check("network", "ok", f"{root} answers (HTTP {status} in {time.monotonic() - tic:.1f} s)")


def _resolve(host: str, port: int, timeout: float) -> None:
    """`socket.getaddrinfo`, given up on after `timeout` seconds (it has no timeout of its own)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome.append(None)
        except OSError as e:
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise TimeoutError(f"resolving {host} took over {timeout:g} s")
    if outcome[0] is not None:
        raise outcome[0]


def check_writable(folder: Path) -> Check:
    """Whether videos can be written under `folder` (a file is created and removed)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".videolt-write-test."):
            pass
    except OSError as e:
        return Check("write access", "fail", f"{folder}: {e.strerror}", "fix the permissions or choose another workdir")
    return Check("write access", "ok", str(folder))


def check_disk_need(folder: Path, pending: int, per_video_bytes: float, basis: str, min_free_gb: float) -> Check:
    """Free disk under `folder` against the estimated need of `pending` videos."""
    free = shutil.disk_usage(folder).free
    need = pending * per_video_bytes
    detail = (f"{_size(free)} free; {pending:,} videos to fetch need about {_size(need)} "
              f"({_size(per_video_bytes)} each: {basis})")
    if free / 1e9 < min_free_gb:
        return Check("disk", "fail", f"{detail}; below download.min_free_gb = {min_free_gb}",
                     "free some space, or lower --min-free-gb")
    if need > free - min_free_gb * 1e9:
        return Check("disk", "warn", f"{detail}: the run will stop when free disk falls below {min_free_gb} GB",
                     "free space, a larger disk, or fetch by --splits / --limit")
    return Check("disk", "ok", detail)


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e3:.0f} kB"


def python_check() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < (3, 10):
        return Check("Python", "fail", version, "Python 3.10 or newer")
    return Check("Python", "ok", f"{version} ({sys.executable})")
