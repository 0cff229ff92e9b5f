"""The user's own YouTube session and yt-dlp options, passed to yt-dlp and kept out of every record.

A cookies file (`cookies`), a browser's cookies (`cookies_from_browser`, yt-dlp's
`BROWSER[+KEYRING][:PROFILE][::CONTAINER]`) and extractor arguments (`extractor_args`, yt-dlp's
`IE_KEY:ARG=VALUE[,VALUE][;ARG=VALUE]`, which is also how proof-of-origin token provider plugins are
configured, e.g. `youtubepot-bgutilhttp:base_url=...`) are parsed by yt-dlp's own option parser, so
they mean exactly what they mean on yt-dlp's command line.

Any of them may carry a credential (cookie values, a `po_token`, a profile path). None is ever
logged, written to the manifest, a report or an error message: `session_kind` is all that is
recorded (`guest`, `cookies-file` or `browser`), and `redactor` masks every secret value in the text
that does leave yt-dlp (its log lines and error messages). yt-dlp rewrites a `cookiefile` when each
`YoutubeDL` closes, so concurrent workers would race on the user's file: videolt reads the file,
checks it, and hands yt-dlp an in-memory copy; the user's file is never written.
"""

from __future__ import annotations

import functools
import io
import optparse
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yt_dlp

from videolt.errors import ConfigError

__all__ = ["CookieFile", "Redactor", "parse_browser", "parse_extractor_args", "read_cookie_file", "redactor",
           "session_kind", "session_params"]

REDACTED = "<redacted>"
_HEADER = "# Netscape HTTP Cookie File\n"
_HTTPONLY = "#HttpOnly_"
# Extractor-argument keys whose values are credentials at any length.
_SECRET_KEY = re.compile(r"token|visitor|data_sync|session|cookie|secret|passw|auth|key", re.IGNORECASE)
# Credentials that may appear in URLs yt-dlp prints (a GVS PO token rides media URLs as `pot=`).
_SECRET_URL_PARAM = re.compile(r"(?<![\w-])(pot|po_token|visitor_data|visitorData|data_sync_id)=[^&\s\"';]+")
_MIN_SECRET_LEN = 8  # shorter extractor-argument values (player_client=mweb) are settings, not secrets


def session_kind(cookies: str | None, cookies_from_browser: str | None) -> str:
    """What the manifest records about the session: never its content."""
    if cookies:
        return "cookies-file"
    return "browser" if cookies_from_browser else "guest"


# -- yt-dlp's own syntaxes ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def _parse(args: tuple[str, ...]) -> dict[str, Any]:
    return yt_dlp.parse_options(list(args)).ydl_opts


def parse_extractor_args(items: Sequence[str], key: str = "download.extractor_args") -> dict[str, dict[str, list[str]]]:
    """yt-dlp's `--extractor-args` strings as its `extractor_args` param; errors never echo a value."""
    argv: list[str] = []
    for item in items:
        argv += ["--extractor-args", item]
    try:
        return _parse(tuple(argv))["extractor_args"] if argv else {}
    except (optparse.OptParseError, ValueError):
        raise ConfigError(f"{key}: each item must read IE_KEY:ARG=VALUE[,VALUE][;ARG=VALUE] as yt-dlp's "
                          "--extractor-args (the value is not shown: it may hold a token)") from None


def parse_browser(spec: str, key: str = "download.cookies_from_browser") -> tuple:
    """yt-dlp's `--cookies-from-browser` spec as its `cookiesfrombrowser` param tuple."""
    try:
        return _parse(("--cookies-from-browser", spec))["cookiesfrombrowser"]
    except (optparse.OptParseError, ValueError):
        from yt_dlp.cookies import SUPPORTED_BROWSERS

        raise ConfigError(f"{key}: expected BROWSER[+KEYRING][:PROFILE][::CONTAINER] with BROWSER one of "
                          f"{', '.join(sorted(SUPPORTED_BROWSERS))} (the value is not shown)") from None


# -- cookies files ----------------------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class CookieFile:
    """A checked Netscape cookies file: its well-formed lines, what they hold, and the lines dropped."""

    path: Path
    text: str  # header + well-formed entries: what yt-dlp is given
    cookies: int
    youtube: int  # cookies for youtube.com / google.com
    expired: int
    bad_lines: tuple[int, ...]  # 1-based line numbers of malformed entries (their content never shown)
    values: frozenset[str]  # cookie values, for redaction
    mode: int

    def __repr__(self) -> str:  # never the content
        return f"CookieFile({str(self.path)!r}, cookies={self.cookies}, youtube={self.youtube})"


def read_cookie_file(path: str | Path) -> CookieFile:
    """Read and check a cookies file; `ConfigError` naming the file (never its content) if unusable."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the cookies file ({e.strerror})") from None
    return _read_cookies(str(p), st.st_mtime_ns, st.st_size, st.st_mode)


@functools.lru_cache(maxsize=8)
def _read_cookies(path: str, _mtime_ns: int, _size: int, mode: int) -> CookieFile:
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or "not UTF-8"
        raise ConfigError(f"{path}: cannot read the cookies file ({why})") from None
    if raw.lstrip().startswith(("{", "[")):
        raise ConfigError(f"{path}: cookies must be in Netscape (cookies.txt) format, not JSON; see yt-dlp's FAQ "
                          "'How do I pass cookies to yt-dlp'")
    now = time.time()
    kept, bad, values = [_HEADER], [], set()
    cookies = youtube = expired = 0
    for lineno, line in enumerate(raw.splitlines(), start=1):
        entry = line[len(_HTTPONLY):] if line.startswith(_HTTPONLY) else line
        if not entry.strip() or entry.startswith("#"):
            continue
        fields = entry.split("\t")
        if len(fields) != 7 or not re.fullmatch(r"[0-9]*(?:\.[0-9]+)?", fields[4]):
            bad.append(lineno)
            continue
        domain, _, _, _, expires, _, value = fields
        kept.append(line.rstrip("\r") + "\n")
        cookies += 1
        youtube += bool(re.search(r"(^|\.)(youtube|google)\.com$", domain))
        expired += bool(expires and float(expires) and float(expires) < now)
        if len(value) >= _MIN_SECRET_LEN:
            values.add(value)
    return CookieFile(Path(path), "".join(kept), cookies, youtube, expired, tuple(bad), frozenset(values), mode)


# -- what yt-dlp gets ---------------------------------------------------------------------------------

def session_params(cookies: str | None, cookies_from_browser: str | None,
                   extractor_args: Sequence[str]) -> dict[str, Any]:
    """The yt-dlp params of the user's session and extractor arguments (empty for a guest)."""
    params: dict[str, Any] = {}
    if cookies:
        params["cookiefile"] = io.StringIO(read_cookie_file(cookies).text)  # a copy yt-dlp may rewrite
    if cookies_from_browser:
        params["cookiesfrombrowser"] = parse_browser(cookies_from_browser)
    if extractor_args:
        params["extractor_args"] = parse_extractor_args(extractor_args)
    return params


class Redactor:
    """Masks the given secret strings and credential URL parameters in a text."""

    def __init__(self, secrets: Sequence[str] = ()):
        ordered = sorted({s for s in secrets if s}, key=len, reverse=True)  # longest first: no partial leftovers
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return _SECRET_URL_PARAM.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def redactor(cookies: str | None, cookies_from_browser: str | None, extractor_args: Sequence[str]) -> Redactor:
    """A `Redactor` for everything secret in these settings: cookie values, the paths and spec
    themselves, and extractor-argument values (long ones, and any of a credential-like key)."""
    secrets: list[str] = []
    if cookies:
        secrets += [cookies, str(Path(cookies).expanduser())]
        try:
            secrets += read_cookie_file(cookies).values
        except ConfigError:
            pass
    if cookies_from_browser:  # the profile (a path or a name) and container; the browser's name is no secret
        parts = [str(p) for p in parse_browser(cookies_from_browser)[1:] if p]
        secrets += [p for p in [cookies_from_browser, *parts] if len(p) >= _MIN_SECRET_LEN or "/" in p]
    for ie_args in parse_extractor_args(extractor_args).values():
        for arg, vals in ie_args.items():
            secrets += [v for v in vals if len(v) >= _MIN_SECRET_LEN or (_SECRET_KEY.search(arg) and v)]
    return Redactor(secrets)


def file_is_private(mode: int) -> bool:
    """Whether a file mode gives no access to group or others (what a cookies file should have)."""
    return not mode & 0o077

