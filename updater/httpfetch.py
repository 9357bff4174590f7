"""HTTP/1.1 GET with Range over a plain socket (no urllib: MicroPython has only ``socket``).

One short connection per request (``Connection: close``); the response header is bounded
(line length, total size); bodies are Content-Length, chunked or close-delimited. The limits on
what a caller accepts (signed sizes, deadlines, minimum rate) are enforced by
``updater.fetch.Fetcher`` around the ``_open`` hook implemented here.
"""

from .fetch import CHUNK, Fetcher, _error

MAX_HEADER_BYTES = 32 * 1024
MAX_LINE = 8 * 1024
USER_AGENT = "updater/1"


def _text(data):
    """Header bytes as text without a codec (MicroPython has no latin-1)."""
    return "".join(chr(c) for c in data)


def parse_url(url):
    """(host, port, base path without trailing '/') of an http:// URL."""
    if not url.startswith("http://"):
        raise _error("remote URL '%s': only http:// and file:// are supported" % url,
                     hint="content is verified by signatures and hashes, so plain HTTP is safe to use")
    rest = url[7:]
    slash = rest.find("/")
    hostport, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    host, port = hostport, 80
    if hostport.startswith("["):
        end = hostport.find("]")
        host = hostport[1:end]
        if hostport[end + 1:end + 2] == ":":
            port = int(hostport[end + 2:])
    elif ":" in hostport:
        host, _, p = hostport.rpartition(":")
        port = int(p)
    if not host or not 0 < port < 65536:
        raise _error("remote URL '%s': bad host or port" % url)
    return host, port, path.rstrip("/")


class _HttpResponse:
    def __init__(self, sock, url):
        self.sock = sock
        self.url = url
        self.buf = b""
        self.status = 0
        self.headers = {}
        self.start = 0
        self.length = None
        self.chunked = False
        self.chunk_left = 0
        self.remaining = None
        self.done = False

    def _fill(self):
        data = self.sock.recv(CHUNK)
        if not data:
            return False
        self.buf = self.buf + data if self.buf else data
        return True

    def _line(self):
        while True:
            idx = self.buf.find(b"\r\n")
            if (idx if idx >= 0 else len(self.buf)) > MAX_LINE:
                raise _error("fetching %s: a header line longer than %d bytes" % (self.url, MAX_LINE))
            if idx >= 0:
                line = self.buf[:idx]
                self.buf = self.buf[idx + 2:]
                return line
            if len(self.buf) > MAX_LINE:
                raise _error("fetching %s: a header line longer than %d bytes" % (self.url, MAX_LINE))
            if not self._fill():
                raise _error("fetching %s: the connection closed in the response header" % self.url,
                             hint="check the network and the server")

    def read_head(self):
        line = self._line()
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise _error("fetching %s: not an HTTP response" % self.url)
        self.status = int(parts[1])
        total = len(line)
        while True:
            line = self._line()
            total += len(line) + 2
            if total > MAX_HEADER_BYTES:
                raise _error("fetching %s: response header larger than %d bytes" % (self.url, MAX_HEADER_BYTES))
            if not line:
                break
            name, sep, value = line.partition(b":")
            if sep:
                self.headers[_text(name.strip().lower())] = _text(value.strip())
        if self.headers.get("transfer-encoding", "identity").lower() != "identity":
            if self.headers["transfer-encoding"].lower() != "chunked":
                raise _error("fetching %s: unsupported transfer encoding %s" % (self.url, self.headers["transfer-encoding"]))
            self.chunked = True
        elif "content-length" in self.headers:
            text = self.headers["content-length"]
            if not text.isdigit():
                raise _error("fetching %s: bad Content-Length '%s'" % (self.url, text))
            self.length = int(text)
            self.remaining = self.length

    def read(self, n):
        if self.done or n <= 0:
            return b""
        if self.remaining is not None:
            if self.remaining == 0:
                self.done = True
                return b""
            n = min(n, self.remaining)
        if self.chunked:
            if self.chunk_left == 0:
                size_line = self._line().split(b";")[0].strip()
                if not size_line or len(size_line) > 16:
                    raise _error("fetching %s: bad chunk size" % self.url)
                self.chunk_left = int(size_line, 16)
                if self.chunk_left == 0:
                    self.done = True
                    return b""
            n = min(n, self.chunk_left)
        if not self.buf and not self._fill():
            self.done = True
            return b""
        data = self.buf[:n]
        self.buf = self.buf[len(data):]
        if self.remaining is not None:
            self.remaining -= len(data)
        if self.chunked:
            self.chunk_left -= len(data)
            if self.chunk_left == 0:
                if self._line():
                    raise _error("fetching %s: malformed chunked encoding" % self.url)
        return data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class HttpFetcher(Fetcher):
    """HTTP/1.1 GET with Range over one short connection per request (``Connection: close``)."""

    def __init__(self, url, **kw):
        Fetcher.__init__(self, **kw)
        self.url = url.rstrip("/")
        self.host, self.port, self.base = parse_url(url)
        self.source = self.url

    def describe(self, path):
        return "%s/%s" % (self.url, path)

    def _connect(self):
        import socket

        info = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0]
        addr = info[-1]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(addr)
        except BaseException:
            sock.close()
            raise
        return sock

    def _open(self, path, offset):
        url = self.describe(path)
        sock = self._connect()
        host = self.host if self.port == 80 else "%s:%d" % (self.host, self.port)
        req = "GET %s/%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept-Encoding: identity\r\nConnection: close\r\n" % (
            self.base, path, host, USER_AGENT)
        if offset:
            req += "Range: bytes=%d-\r\n" % offset
        resp = _HttpResponse(sock, url)
        try:
            sock.sendall((req + "\r\n").encode())
            resp.read_head()
        except BaseException:
            resp.close()
            raise
        if resp.status == 206:
            cr = resp.headers.get("content-range", "")
            try:
                unit, _, spec = cr.partition(" ")
                first, _, rest = spec.partition("-")
                last = rest.partition("/")[0]
                resp.start, end = int(first), int(last)
            except ValueError:
                resp.close()
                raise _error("fetching %s: bad Content-Range '%s'" % (url, cr))
            if unit != "bytes" or end < resp.start:
                resp.close()
                raise _error("fetching %s: bad Content-Range '%s'" % (url, cr))
            if resp.length is None:
                resp.length = end - resp.start + 1
            elif resp.length != end - resp.start + 1:
                resp.close()
                raise _error("fetching %s: Content-Range and Content-Length disagree" % url)
        elif resp.status != 200:
            resp.close()
            hints = {404: "the server does not have it: check [remote] url and that the repository is published",
                     416: "the server's copy is shorter than the part already downloaded"}
            raise _error("fetching %s: HTTP status %d" % (url, resp.status), resp.status,
                         hints.get(resp.status, "the server failed; try again later"))
        return resp
