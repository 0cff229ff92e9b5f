"""yt-dlp plugin (tests only): the fake YouTube of `tests/fake_youtube.py` for CLI subprocess tests.

Loaded by yt-dlp's own plugin mechanism when a run sets `plugin_dirs` to `tests/ytdlp_plugins`.
"""

from tests.fake_youtube import FakeYouTubeBase


class FakeYouTubePluginIE(FakeYouTubeBase):
    IE_NAME = "fakeyoutube"
