"""The download stage: fetch videos by ID with yt-dlp's embedded API, paced, resumable, classified.

- `config.py`: `DownloadConfig`, the typed settings (the yt-dlp params are derived from it);
- `fetch.py`: one video (`fetch_one`, `ydl_params`, the `FetchResult` it returns as data);
- `runner.py`: the pending videos of a workdir on an executor (`download_pending`), the
  `preflight` that refuses a run where every fetch would fail, pacing and recording.

The user's cookies and extractor arguments reach yt-dlp's params and nothing else
(`videolt.data.session`); failure classes are `videolt.data.failures`. See `reference/download.md`.
"""

from videolt.data.download.config import PARTIAL_DIR, STAGE, DownloadConfig
from videolt.data.download.fetch import YTDLP_VERSION, FetchResult, fetch_guarded, fetch_one, ydl_params
from videolt.data.download.runner import (
    download_pending,
    estimate_video_bytes,
    preflight,
    process_dir_name,
    remove_stale_partials,
    select_pending,
)

__all__ = [
    "PARTIAL_DIR",
    "STAGE",
    "YTDLP_VERSION",
    "DownloadConfig",
    "FetchResult",
    "download_pending",
    "estimate_video_bytes",
    "fetch_guarded",
    "fetch_one",
    "preflight",
    "process_dir_name",
    "remove_stale_partials",
    "select_pending",
    "ydl_params",
]
