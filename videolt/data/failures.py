"""Failure classes of the download stage: one ordered table at the yt-dlp boundary.

yt-dlp reports YouTube's refusals as `ExtractorError`s whose only distinguishing mark is the message
text, and after exhausted retries it drops the original exception altogether. So `classify` looks at
exception *types* first (HTTP status, geo restriction, transport errors) and then walks one ordered
table of message patterns (`reference/download.md`). The order matters: the rate-limit text starts
with "Video unavailable", and "Video unavailable. <reason>" must reach the specific reason's row.

`retry_after` reads a 429 answer's `Retry-After` header where yt-dlp keeps the answer: the
`HTTPError` (with its `response.headers`) is chained to the error when the generic extractor's
request or the HTTP downloader's media request got the 429. YouTube's own extractor demotes a 429
on its page and API requests to a warning (`_download_webpage_with_retries`, `_extract_response`
call `_error_or_warning(..., fatal=False)`), and after yt-dlp's own retries are exhausted only the
message text is left; there the header is lost and the caller's own pause applies.
"""

from __future__ import annotations

import email.utils
import enum
import errno
import re
import socket
import time
from collections.abc import Iterator

from yt_dlp.networking.exceptions import HTTPError, TransportError
from yt_dlp.utils import GeoRestrictedError

from videolt.data import ids

try:  # raised by yt-dlp when a cookies file or browser profile cannot be read
    from yt_dlp.cookies import CookieLoadError
except ImportError:  # pragma: no cover - older yt-dlp
    CookieLoadError = None  # type: ignore[assignment,misc]


class DownloadFailure(str, enum.Enum):
    """Why a video could not be fetched; the value is what the manifest stores."""

    INVALID_ID = ids.INVALID_ID
    TOOLING = "tooling"
    SESSION = "session"  # the user's cookies could not be loaded or are no longer accepted
    BOT_CHECK = "bot_check"  # "Sign in to confirm you're not a bot": the session, not the video
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    GEO_BLOCKED = "geo_blocked"
    AGE_RESTRICTED = "age_restricted"
    MEMBERS_ONLY = "members_only"
    PRIVATE = "private"
    LOGIN_REQUIRED = "login_required"  # any other "sign in" / registered-users-only refusal
    REMOVED = "removed"
    COPYRIGHT = "copyright"
    POLICY = "policy"
    UNKNOWN = "unknown"
    INTERNAL = "internal"  # a bug on our side (not a yt-dlp error); traceback logged

    def __str__(self) -> str:
        return self.value


#: Classes worth another try in a later run (bounded by the attempt cap). The others are permanent
#: until the user asks for a re-check (after an upgrade, or from another location).
RETRYABLE: frozenset[DownloadFailure] = frozenset({
    DownloadFailure.TRANSIENT, DownloadFailure.RATE_LIMITED, DownloadFailure.BOT_CHECK, DownloadFailure.SESSION,
    DownloadFailure.TOOLING, DownloadFailure.UNKNOWN, DownloadFailure.INTERNAL,
})
PERMANENT: frozenset[DownloadFailure] = frozenset(DownloadFailure) - RETRYABLE
#: Answers about this machine's session, not about the video: they cost the video no attempt.
NOT_THE_VIDEOS_FAULT: frozenset[DownloadFailure] = frozenset({
    DownloadFailure.RATE_LIMITED, DownloadFailure.BOT_CHECK, DownloadFailure.SESSION,
})
#: Permanent classes a user may recover elsewhere: with their own account's cookies, or from another country.
RECOVERABLE: frozenset[DownloadFailure] = frozenset({
    DownloadFailure.AGE_RESTRICTED, DownloadFailure.LOGIN_REQUIRED, DownloadFailure.GEO_BLOCKED,
})

_Q = "['\u2019]"  # YouTube writes both straight and curly apostrophes

#: (class, pattern) in the order they are checked; patterns are case-insensitive regular expressions.
MESSAGE_TABLE: tuple[tuple[DownloadFailure, str], ...] = (
    (DownloadFailure.TOOLING, r"ffmpeg could not be found|ffmpeg is not installed"),
    (DownloadFailure.TOOLING, r"No supported JavaScript runtime|nsig extraction failed|Signature extraction failed"),
    (DownloadFailure.TOOLING, r"Unable to extract"),
    (DownloadFailure.SESSION, r"failed to load cookies|cookies are no longer valid"
                              r"|could not find \w+ cookies database"),
    (DownloadFailure.BOT_CHECK, rf"confirm you{_Q}re not a bot|captcha"),
    (DownloadFailure.RATE_LIMITED, r"HTTP Error 429|Too Many Requests|try again later"),
    (DownloadFailure.TRANSIENT, r"timed out|timeout|connection (?:reset|refused|aborted)|remote end closed"),
    (DownloadFailure.TRANSIENT, r"HTTP Error 5\d\d|HTTP Error 403|Giving up after"),
    (DownloadFailure.TRANSIENT, r"expected \d+ bytes|\d+ more expected|did not get any data blocks|empty file"),
    (DownloadFailure.GEO_BLOCKED, r"not made this video available in your country"),
    (DownloadFailure.AGE_RESTRICTED, r"confirm your age|age[- ]restricted|inappropriate for some users"),
    (DownloadFailure.MEMBERS_ONLY, r"members[- ]only|Join this channel"),
    (DownloadFailure.PRIVATE, r"Private video|This video is private"),
    (DownloadFailure.LOGIN_REQUIRED, r"only available for registered users|Please sign in|Sign in to|login required"
                                     r"|HTTP Error 401"),
    (DownloadFailure.REMOVED, r"removed by the uploader|account\b.*\bterminated|does not exist"),
    # "Video unavailable" only when no more specific reason follows it.
    (DownloadFailure.REMOVED, r"This video is not available|Video unavailable(?!\s*[.:]\s*\w)"),
    (DownloadFailure.COPYRIGHT, r"copyright claim|copyright grounds"),
    (DownloadFailure.POLICY, r"Terms of Service|Community Guidelines"),
)
_COMPILED = tuple((cls, re.compile(pattern, re.IGNORECASE)) for cls, pattern in MESSAGE_TABLE)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything yt-dlp or Python chained to it (`exc_info`, `cause`, `__cause__`)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        exc_info = getattr(e, "exc_info", None)
        linked = [exc_info[1] if isinstance(exc_info, tuple) else None, getattr(e, "cause", None)]
        todo.extend(x for x in (*linked, e.__cause__, e.__context__) if isinstance(x, BaseException))


def _classify_type(exc: BaseException) -> DownloadFailure | None:
    for e in _chain(exc):
        if CookieLoadError is not None and isinstance(e, CookieLoadError):
            return DownloadFailure.SESSION
        if isinstance(e, HTTPError):
            if e.status == 429:
                return DownloadFailure.RATE_LIMITED
            if e.status == 401:
                return DownloadFailure.LOGIN_REQUIRED
            if e.status >= 500 or e.status in (403, 408):  # YouTube's media URLs answer 403 when stale
                return DownloadFailure.TRANSIENT
            if e.status in (404, 410):
                return DownloadFailure.REMOVED
            return None  # other 4xx: let the message decide
        if isinstance(e, GeoRestrictedError):
            return DownloadFailure.GEO_BLOCKED
        if isinstance(e, (TransportError, TimeoutError, ConnectionError)):
            return DownloadFailure.TRANSIENT
    return None


#: What an attempt that never reached the host says, where only the text is left.
_UNREACHABLE = re.compile(r"Failed to resolve|Name or service not known|Temporary failure in name resolution"
                          r"|nodename nor servname|getaddrinfo failed|Connection refused|Network is unreachable"
                          r"|No route to host", re.IGNORECASE)
_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN}


def unreachable(exc: BaseException) -> bool:
    """Whether an attempt failed before any answer from the host: its name did not resolve, or the
    connection was refused or had no route. That says nothing about the video; when every attempt
    ends so, the machine is offline or the URL template names a host that is not there."""
    for e in _chain(exc):
        if isinstance(e, socket.gaierror) or (isinstance(e, OSError) and e.errno in _UNREACHABLE_ERRNOS):
            return True
        if isinstance(e, HTTPError):
            return False  # an answer came
    return bool(_UNREACHABLE.search(" | ".join(str(e) for e in _chain(exc))))


def classify_message(message: str) -> DownloadFailure:
    """The failure class of an error message alone (first matching row of `MESSAGE_TABLE`)."""
    for cls, pattern in _COMPILED:
        if pattern.search(message):
            return cls
    return DownloadFailure.UNKNOWN


def classify(exc_or_message: BaseException | str) -> DownloadFailure:
    """Classify a yt-dlp error (or its message): exception types first, then the message table."""
    if isinstance(exc_or_message, str):
        return classify_message(exc_or_message)
    by_type = _classify_type(exc_or_message)
    if by_type is not None:
        return by_type
    # After exhausted retries yt-dlp keeps no exception, only text: match every message in the chain.
    return classify_message(" | ".join(str(e) for e in _chain(exc_or_message)))


def retry_after(exc: BaseException, *, now: float | None = None) -> float | None:
    """Seconds a 429 answer asked to wait (its `Retry-After`: delta-seconds or an HTTP date), if yt-dlp kept it.

    None when no `HTTPError` with status 429 and a readable header is chained to `exc` (see the
    module docstring for where yt-dlp drops it).
    """
    for e in _chain(exc):
        if isinstance(e, HTTPError) and e.status == 429:
            headers = getattr(getattr(e, "response", None), "headers", None)
            value = headers.get("Retry-After") if headers is not None else None
            return parse_retry_after(value, now=now) if value else None
    return None


def parse_retry_after(value: str, *, now: float | None = None) -> float | None:
    """`Retry-After: 120` or `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT` as seconds from `now` (≥ 0);
    None if unreadable."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
