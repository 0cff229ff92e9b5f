"""A test-only extractor that answers like YouTube, registered on the real `YoutubeDL`.

`FakeYouTubeBase._real_extract` raises yt-dlp's own exceptions with YouTube's own texts
(`../shared/reference/download.md`), or returns an info dict whose media URL points at the loopback
server, so a fetch goes through the very exception chain production meets. The URL names the
loopback server: `http://127.0.0.1:PORT/youtube/watch?v=<id>`, media from `/by-id/<id>.mp4`.

In-process tests register it with `fake_factory`; CLI subprocess tests load the same class through
yt-dlp's plugin mechanism (`PLUGIN_DIR`, given as `--set plugin_dirs=[...]`).
"""

from __future__ import annotations

import threading
from pathlib import Path

import yt_dlp
from yt_dlp.extractor.common import InfoExtractor
from yt_dlp.utils import ExtractorError, GeoRestrictedError

PLUGIN_DIR = Path(__file__).parent / "ytdlp_plugins"
COOKIE_NAME = "videolt_test"

#: video ID -> (YouTube's message, the class videolt must file it under); None: raised as GeoRestrictedError.
FAKE_MESSAGES: dict[str, tuple[str | None, str]] = {
    "privateVid1": ("Private video. Sign in if you've been granted access to this video", "private"),
    "removedVid1": ("Video unavailable. This video has been removed by the uploader", "removed"),
    "termination": ("Video unavailable. This video is no longer available because the YouTube account associated "
                    "with this video has been terminated.", "removed"),
    "geoBlocked1": (None, "geo_blocked"),
    "ageRestrict": ("Sign in to confirm your age. This video may be inappropriate for some users. Use "
                    "--cookies-from-browser or --cookies for the authentication.", "age_restricted"),
    "membersOnly": ("Join this channel to get access to members-only content like this video, and other "
                    "exclusive perks.", "members_only"),
    "signInNeed1": ("This video is only available for registered users. Use --cookies-from-browser or --cookies "
                    "for the authentication.", "login_required"),
    "copyrighted": ("Video unavailable. This video is no longer available due to a copyright claim by X",
                    "copyright"),
    "policyBreak": ("This video has been removed for violating YouTube's Community Guidelines", "policy"),
    "notABotPls1": ("Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser or --cookies for the "
                    "authentication. See  https://github.com/yt-dlp/yt-dlp/wiki/FAQ#how-do-i-pass-cookies-to-yt-dlp",
                    "bot_check"),
    "captchaVid1": ("Video unavailable. YouTube is requiring a captcha challenge before playback", "bot_check"),
    "tryAgainLtr": ("Video unavailable. This content isn\u2019t available, try again later. The current session "
                    "has been rate-limited by YouTube for up to an hour.", "rate_limited"),
    "toolingFail": ("nsig extraction failed: Some formats may be missing", "tooling"),
    # yt-dlp only warns about a broken player, then fails on the formats it could not decipher
    "warnedNsig1": ("Requested format is not available", "tooling"),
    # yt-dlp warns that the cookies were rotated, then YouTube asks for a sign-in: the session, not the video
    "staleCookie": ("Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser or --cookies",
                    "session"),
    "weirdThing1": ("Something nobody has seen before", "unknown"),
}
#: IDs that succeed only when the request carries the test cookie (an age check a session passes).
NEEDS_COOKIE = {"ageCookieOk": "Sign in to confirm your age. This video may be inappropriate for some users."}


class FakeYouTubeBase(InfoExtractor):
    """Answers `http://127.0.0.1:PORT/youtube/watch?v=<id>` like YouTube would, without a network."""

    IE_NAME = "fakeyoutube"
    _VALID_URL = r"https?://127\.0\.0\.1:(?P<port>\d+)/youtube/watch\?v=(?P<id>[\w-]{11})"
    calls: dict[str, int] = {}  # video ID -> requests seen (this process)
    seen_args: dict[str, dict] = {}  # video ID -> the extractor arguments and cookie it was given
    _lock = threading.Lock()

    def _real_extract(self, url):
        port, video_id = self._match_valid_url(url).group("port", "id")
        with self._lock:
            self.calls[video_id] = self.calls.get(video_id, 0) + 1
        client = self._configuration_arg("player_client", ie_key="youtube")
        po_token = self._configuration_arg("po_token", ie_key="youtube", casesense=True)
        cookie = self._get_cookies(url).get(COOKIE_NAME)
        self.seen_args[video_id] = {"player_client": client, "po_token": po_token,
                                    "cookie": cookie.value if cookie else None}
        if video_id == "leakyVideo1":  # what a careless library might print: a token in a URL, a cookie
            self.report_warning(f"retrying https://rr1.example/videoplayback?id=1&pot={''.join(po_token)}&x=2 "
                                f"with {cookie.value if cookie else ''}")
            raise ExtractorError(f"HTTP Error 403 on https://rr1.example/videoplayback?pot={''.join(po_token)} "
                                 f"({' '.join(po_token)}; cookie {cookie.value if cookie else ''})", expected=True)
        if video_id == "geoBlocked1":
            raise GeoRestrictedError("The uploader has not made this video available in your country", countries=["DE"])
        if video_id == "warnedNsig1":
            self.report_warning("nsig extraction failed: Some formats may be missing")
        if video_id == "staleCookie":
            self.report_warning("The provided YouTube account cookies are no longer valid. They have likely been "
                                "rotated in the browser as a security measure.")
        if video_id in NEEDS_COOKIE and cookie is None:
            raise ExtractorError(NEEDS_COOKIE[video_id], expected=True)
        key = message_key(video_id)
        if key is not None:
            raise ExtractorError(FAKE_MESSAGES[key][0], expected=True)
        return {"id": video_id, "title": video_id, "url": f"http://127.0.0.1:{port}/by-id/{video_id}.mp4",
                "ext": "mp4", "width": 64, "height": 48, "duration": 2.0, "vcodec": "h264", "acodec": "none"}


def message_key(video_id: str) -> str | None:
    """The `FAKE_MESSAGES` entry for an ID: itself, or one differing in the last character only
    (notABotPls2 is answered like notABotPls1), so tests can have many videos of one kind."""
    if video_id in FAKE_MESSAGES:
        return video_id
    return next((k for k in FAKE_MESSAGES if k[:-1] == video_id[:-1] and video_id[-1].isdigit()), None)


class FakeYouTubeIE(FakeYouTubeBase):
    pass


def fake_factory(params: dict) -> yt_dlp.YoutubeDL:
    """A `ydl_factory` for in-process tests: the real `YoutubeDL` with the fake extractor first."""
    ydl = yt_dlp.YoutubeDL({**params, "cachedir": False, "proxy": ""}, auto_init=False)
    ydl.add_info_extractor(FakeYouTubeIE())
    ydl.add_default_info_extractors()
    return ydl


def template(base: str) -> str:
    """The URL template of the fake YouTube on the loopback server at `base`."""
    return f"{base}/youtube/watch?v={{id}}"
