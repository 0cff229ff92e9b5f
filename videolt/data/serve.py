"""A read-only HTTP file server on the loopback interface, so the demo can fetch its generated clips
through the real download stage (yt-dlp over HTTP) without touching the internet.

It binds 127.0.0.1 on a free port, serves the regular files of one folder (no listings, nothing
outside the folder, symlinks included), answers from a thread per request, and stops when its
`with` block ends.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger(__name__)


class _FolderHandler(SimpleHTTPRequestHandler):
    """GET/HEAD of regular files inside `directory`; everything else is 404."""

    def send_head(self):  # type: ignore[override] - http.server's extension point
        root = Path(self.directory).resolve()
        path = Path(self.translate_path(self.path)).resolve()
        if path == root or root not in path.parents or not path.is_file():
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        return super().send_head()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]
        """A client that hangs up mid-file (yt-dlp's format probe does) is routine, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionResetError, BrokenPipeError)):
            log.debug("%s hung up: %s", client_address, error)
        else:
            log.warning("error serving %s", client_address, exc_info=error)


class FileServer:
    """`with FileServer(folder) as server:` serves `folder` at `server.url` until the block ends."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder}: not a folder to serve")
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running (use it in a `with` block)")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "FileServer":
        handler = partial(_FolderHandler, directory=os.fspath(self.folder))
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="videolt-file-server", daemon=True)
        self._thread.start()
        log.debug("serving %s at %s", self.folder, self.url)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is None or self._thread is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        self._httpd = self._thread = None
