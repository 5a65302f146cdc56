"""A local HTTP server on 127.0.0.1 for download tests: serves bytes from memory, honours `Range:
bytes=N-` and `If-Range`, can ignore Range (answer 200), answer a misaligned range, and drop the
connection after K bytes of a response. Nothing but 127.0.0.1 is ever contacted."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading


class FileServer:
    """Serves `files` (url path -> bytes) on 127.0.0.1; records every request's path and Range."""

    def __init__(self, *, ignore_range: bool = False):
        self.files: dict[str, bytes] = {}
        self.ignore_range = ignore_range
        self.misalign_range = False  # answer 206 but from byte 0 (a broken proxy/cache)
        self.drop_after: dict[str, int] = {}  # path -> bytes sent before the next response is cut
        self.requests: list[tuple[str, str | None, int]] = []  # (path, Range header, status)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                body = server.files.get(self.path)
                range_header = self.headers.get("Range")
                if body is None:
                    server.requests.append((self.path, range_header, 404))
                    self.send_error(404)
                    return
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                start = 0
                match = re.match(r"bytes=(\d+)-$", range_header or "")
                if_range = self.headers.get("If-Range")
                if match and not server.ignore_range and (if_range is None or if_range == etag):
                    start = 0 if server.misalign_range else int(match.group(1))
                    if start >= len(body):
                        server.requests.append((self.path, range_header, 416))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                else:
                    status = 200
                server.requests.append((self.path, range_header, status))
                payload = body[start:]
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("ETag", etag)
                self.send_header("Accept-Ranges", "none" if server.ignore_range else "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                cut = server.drop_after.pop(self.path, None)
                if cut is not None:
                    # Simulate a dropped connection: send K bytes, then close the socket.
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def no_proxy(monkeypatch) -> None:
    """Only 127.0.0.1 may be contacted: never route a test request through a configured proxy."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
