"""A loopback HTTP server whose URL paths choose its behaviour, for offline download tests.

A URL is `http://127.0.0.1:PORT/<behaviour>/<name>.<ext>`; the behaviour is the first path segment:

- `ok`        200 with a real small H.264 MP4 (also for HEAD)
- `404`, `403`, `429`, `500`, `503`: that status on every request
- `flakyN`    the first request (yt-dlp's probe) succeeds, the next N answer 503, then 200 again
- `trunc`     200 announcing more bytes (Content-Length) than it sends, then closes
- `slow`      waits `slow_s` seconds before answering (longer than a test's socket timeout)
- `html`      200 with an HTML page and no video in it
- `retryafterN` 429 with `Retry-After: N` on the first request (the probe), then like `ok`
- `media429`  the probe succeeds, the first media GET answers 429 with `Retry-After: 1`, then `ok`
- `cookie`    401 unless the request carries the cookie `videolt_test=<server.cookie_value>`, then `ok`
- `trickle`   200, the body in 8 pieces `trickle_s` apart (each gap shorter than a socket timeout)
- `stall`     200, half the body, then silence for `slow_s` seconds
- `reset`     200, half the body, then a TCP reset (RST) instead of the rest
- `by-id`     looks the file stem up in `server.by_id` (default `ok`), so one URL template can give
              each video ID its own behaviour

Hits are counted per path in `server.hits` (probe and media GET each count), so tests can check what
was retried and how often.
"""

from __future__ import annotations

import collections
import functools
import io
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import PurePosixPath

import av
import numpy as np

HTML_PAGE = b"<!doctype html><html><head><title>Nothing here</title></head><body><p>no video</p></body></html>"


@functools.cache
def small_mp4(width: int = 64, height: int = 48, seconds: int = 2, fps: int = 5) -> bytes:
    """A tiny H.264 MP4 made with PyAV in memory (moving gradient, so frames differ)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        for i in range(seconds * fps):
            img = np.broadcast_to((ramp + 20 * i) % 256, (height, width, 3)).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    server: "BehaviourServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
        return

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._serve(send_body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(send_body=True)

    def _serve(self, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        hit = self.server.count(path)
        parts = PurePosixPath(path).parts  # ("/", behaviour, name)
        behaviour = parts[1] if len(parts) == 3 else "missing"
        if behaviour == "by-id":
            behaviour = self.server.by_id.get(PurePosixPath(path).stem, "ok")
        if behaviour == "ok":
            self._reply(200, "video/mp4", small_mp4(), send_body)
        elif behaviour.isdigit():
            self._reply(int(behaviour), "text/plain", b"error\n", send_body)
        elif behaviour.startswith("flaky"):
            failures = int(behaviour.removeprefix("flaky") or 1)
            failing = 1 < hit <= 1 + failures
            self._reply(503 if failing else 200, "video/mp4", b"busy\n" if failing else small_mp4(), send_body)
        elif behaviour == "trunc":
            body = small_mp4()
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(body) + 5000))
            self.end_headers()
            if send_body:
                self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        elif behaviour == "slow":
            time.sleep(self.server.slow_s)
            self._reply(200, "video/mp4", small_mp4(), send_body)
        elif behaviour == "html":
            self._reply(200, "text/html; charset=utf-8", HTML_PAGE, send_body)
        elif behaviour.startswith("retryafter") and hit == 1:
            self._reply(429, "text/plain", b"slow down\n", send_body,
                        headers={"Retry-After": behaviour.removeprefix("retryafter") or "1"})
        elif behaviour == "media429" and hit == 2:
            self._reply(429, "text/plain", b"slow down\n", send_body, headers={"Retry-After": "1"})
        elif behaviour.startswith("retryafter") or behaviour == "media429":
            self._reply(200, "video/mp4", small_mp4(), send_body)
        elif behaviour == "cookie":
            if f"videolt_test={self.server.cookie_value}" in (self.headers.get("Cookie") or ""):
                self._reply(200, "video/mp4", small_mp4(), send_body)
            else:
                self._reply(401, "text/plain", b"sign in\n", send_body)
        elif behaviour in ("trickle", "stall", "reset"):
            self._partial(behaviour, send_body)
        else:
            self._reply(404, "text/plain", b"unknown behaviour\n", send_body)

    def _partial(self, behaviour: str, send_body: bool) -> None:
        """A 200 whose body arrives in pieces (`trickle`), stops (`stall`) or is cut by a reset (`reset`)."""
        body = small_mp4()
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not send_body:
            return
        try:
            if behaviour == "trickle":
                step = -(-len(body) // 8)
                for i in range(0, len(body), step):
                    self.wfile.write(body[i:i + step])
                    self.wfile.flush()
                    time.sleep(self.server.trickle_s)
                return
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if behaviour == "stall":
                time.sleep(self.server.slow_s)
            else:  # SO_LINGER with a zero timeout: close() sends RST, not FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def _reply(self, status: int, content_type: str, body: bytes, send_body: bool,
               headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if send_body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. a timeout): nothing to do
            self.close_connection = True


class BehaviourServer(ThreadingHTTPServer):
    """The server object; use as a context manager or via `start()`/`stop()`."""

    daemon_threads = True

    def __init__(self, slow_s: float = 3.0, trickle_s: float = 0.2, cookie_value: str = "letmein"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.slow_s = slow_s
        self.trickle_s = trickle_s
        self.cookie_value = cookie_value
        self.by_id: dict[str, str] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url(self, behaviour: str, name: str, ext: str = "mp4") -> str:
        return f"{self.base}/{behaviour}/{name}.{ext}"

    def path(self, behaviour: str, name: str, ext: str = "mp4") -> str:
        return f"/{behaviour}/{name}.{ext}"

    def count(self, path: str) -> int:
        with self._lock:
            self.hits[path] += 1
            return self.hits[path]

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that give up mid-request (timeouts, truncation tests) are expected: stay quiet."""

    def start(self) -> "BehaviourServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> "BehaviourServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
