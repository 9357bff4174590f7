"""A development HTTP server for a repository (``updater --repo R serve``): GET and HEAD with Range.

Production is any static server (nginx, a CDN, an object-store bucket): a device needs nothing
but plain files and ``Range: bytes=N-``. This one serves REPO's files read-only, never outside
REPO (no '..', no symlinks leaving it), answers 206 with Content-Range for a satisfiable range
and 416 otherwise, and counts the bytes it sends (``server.bytes_sent``) for benchmarks.
"""

import os
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 64 * 1024


class RepoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root, address, quiet=True, log=None):
        self.root = os.path.realpath(root)
        self.quiet = quiet
        self.log = log
        self.bytes_sent = 0
        self.requests = []
        self.lock = threading.Lock()
        ThreadingHTTPServer.__init__(self, address, RepoHandler)

    def url(self):
        host, port = self.server_address[:2]
        return "http://%s:%d" % (host if ":" not in host else "[%s]" % host, port)

    def count(self, n):
        with self.lock:
            self.bytes_sent += n


def parse_range(header, size):
    """(start, end inclusive) for a 'bytes=' range header, None for no range, or 'bad' (416)."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None  # unsupported forms: send the whole file (allowed by RFC 9110)
    first, _, last = spec.strip().partition("-")
    try:
        if not first:
            n = int(last)
            if n <= 0:
                return "bad"
            return max(0, size - n), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "bad"
    return start, min(end, size - 1)


class RepoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "updater-serve/1"

    def log_message(self, fmt, *args):
        if not self.server.quiet and self.server.log:
            self.server.log("serve: %s %s" % (self.address_string(), fmt % args))

    def _resolve(self):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if any(p == ".." or "\x00" in p for p in parts):
            return None
        full = os.path.realpath(os.path.join(self.server.root, *parts))
        if full != self.server.root and not full.startswith(self.server.root + os.sep):
            return None
        return full if os.path.isfile(full) else None

    def _error(self, code, extra=None):
        body = ("%d\n" % code).encode()
        self.send_response(code)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        with self.server.lock:
            self.server.requests.append((self.command, self.path, self.headers.get("Range")))
        full = self._resolve()
        if full is None:
            return self._error(404)
        try:
            f = open(full, "rb")
        except OSError:
            return self._error(404)
        with f:
            size = os.fstat(f.fileno()).st_size
            rng = parse_range(self.headers.get("Range"), size)
            if rng == "bad":
                return self._error(416, {"Content-Range": "bytes */%d" % size})
            if rng is None:
                start, end = 0, size - 1
                self.send_response(200)
            else:
                start, end = rng
                self.send_response(206)
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
            length = max(0, end - start + 1)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if self.command == "HEAD":
                return
            f.seek(start)
            left = length
            try:
                while left > 0:
                    data = f.read(min(CHUNK, left))
                    if not data:
                        break
                    self.wfile.write(data)
                    self.server.count(len(data))
                    left -= len(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True


def start(root, bind="127.0.0.1", port=0, quiet=True, log=None):
    """A RepoServer serving ``root`` from a daemon thread (tests, benchmarks); call shutdown()."""
    server = RepoServer(root, (bind, port), quiet, log)
    thread = threading.Thread(target=server.serve_forever, name="updater-serve", daemon=True)
    thread.start()
    return server
