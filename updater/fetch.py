"""Fetchers: HTTP/1.1 over plain sockets, a local directory (file://), and an offline bundle.

A fetcher has one hook, ``_open(path, offset)``, returning a response object (``read(n)``,
``close()``, ``start``: where its bytes begin, ``length``: how many it will send or None). The
public methods around it enforce the limits every caller needs and turn every foreign error
(socket errors, timeouts, malformed responses) into FetchError naming the URL:

- ``fetch_bytes(path, limit)``: the whole resource, refused if longer than ``limit``;
- ``stream(path, size, offset)``: bytes ``offset``..``size`` of a resource whose signed size is
  ``size``; never reads past it (an endless or oversized response is refused, a short one is an
  error), resuming with ``Range: bytes=N-`` (a server that ignores Range is skipped ahead).

Slow retrieval (threat T7): every socket operation has a timeout; a stream slower than
``min_rate`` bytes/s after ``grace_ms`` fails; ``deadline_ms`` bounds a whole pull.
A FetchError from an HTTP status carries ``status`` (404, 416, 500...; 0 otherwise).
No urllib: MicroPython has only ``socket``.
"""

from . import fs
from .errors import FetchError, FormatError
from .progress import elapsed_ms, now_ms

FETCH_FORMAT = 1
CHUNK = 16 * 1024 if not fs.MICROPYTHON else 4 * 1024
MAX_HEADER_BYTES = 32 * 1024
MAX_LINE = 8 * 1024
USER_AGENT = "updater/1"


def _text(data):
    """Header bytes as text without a codec (MicroPython has no latin-1)."""
    return "".join(chr(c) for c in data)


def _error(msg, status=0, hint=None):
    err = FetchError(msg, hint)
    err.status = status
    return err


def status_of(err):
    return getattr(err, "status", 0)


def check_path(path):
    """A resource path relative to the remote root: no empty, '.', '..' or absolute parts."""
    if not path or path.startswith("/") or len(path) > 1024:
        raise _error("fetching '%s': not a relative resource path" % path)
    for part in path.split("/"):
        if part in ("", ".", "..") or "\x00" in part or "\\" in part:
            raise _error("fetching '%s': not a relative resource path" % path)
    return path


class Fetcher:
    """Base class: subclasses implement ``_open`` (and ``describe``)."""

    def __init__(self, timeout=30, min_rate=512, grace_ms=20000, deadline_ms=None):
        self.timeout = timeout
        self.min_rate = min_rate
        self.grace_ms = grace_ms
        self.deadline_ms = deadline_ms
        self.started = now_ms()
        self.bytes_fetched = 0
        self.requests = 0
        self.source = ""

    def describe(self, path):
        return path

    def has(self, path):
        """Whether ``path`` exists, where that is cheap to know (a bundle); True when unknown."""
        return True

    def _open(self, path, offset):
        raise NotImplementedError

    # --- the public wrappers -----------------------------------------------------------------
    def _check_time(self, url, start, got):
        t = elapsed_ms(start)
        if self.deadline_ms is not None and elapsed_ms(self.started) > self.deadline_ms:
            raise _error("fetching %s: the pull's deadline of %d s passed" % (url, self.deadline_ms // 1000),
                         hint="check the network, or raise the deadline")
        if t > self.grace_ms and got * 1000 < self.min_rate * t:
            raise _error("fetching %s: %d bytes in %d s is below the minimum of %d bytes/s"
                         % (url, got, t // 1000, self.min_rate), hint="check the network and the server")

    def _opened(self, path, offset):
        url = self.describe(path)
        check_path(path)
        self.requests += 1
        try:
            resp = self._open(path, offset)
        except FetchError:
            raise
        except (OSError, ValueError, IndexError, UnicodeError, FormatError) as err:
            raise _error("fetching %s: %s" % (url, _reason(err)), hint="check the network and [remote] url")
        return url, resp

    def _read(self, resp, url, n):
        try:
            return resp.read(n)
        except FetchError:
            raise
        except (OSError, ValueError, IndexError, UnicodeError, FormatError) as err:
            raise _error("fetching %s: %s" % (url, _reason(err)), hint="check the network; pull again to resume")

    def fetch_bytes(self, path, limit):
        """The whole resource (at most ``limit`` bytes)."""
        url, resp = self._opened(path, 0)
        try:
            if resp.length is not None and resp.length > limit:
                raise _error("fetching %s: the server offers %d bytes, more than the limit of %d"
                             % (url, resp.length, limit))
            parts = []
            got = 0
            start = now_ms()
            while True:
                data = self._read(resp, url, min(CHUNK, limit + 1 - got))
                if not data:
                    break
                got += len(data)
                self.bytes_fetched += len(data)
                if got > limit:
                    raise _error("fetching %s: more than the limit of %d bytes (an endless response?)" % (url, limit))
                parts.append(data)
                self._check_time(url, start, got)
            if resp.length is not None and got != resp.length:
                raise _error("fetching %s: the connection closed after %d of %d bytes" % (url, got, resp.length),
                             hint="check the network, then try again")
            return b"".join(parts)
        finally:
            resp.close()

    def stream(self, path, size, offset=0):
        """Chunks of bytes ``offset``..``size`` (exactly) of a resource of signed size ``size``."""
        if offset >= size:
            return
        url, resp = self._opened(path, offset)
        try:
            skip = offset - resp.start
            if skip < 0 or skip > offset:
                raise _error("fetching %s: the server answered from byte %d, asked for %d" % (url, resp.start, offset))
            want = size - offset
            if resp.length is not None:
                if resp.length - skip > want:
                    raise _error("fetching %s: the server offers %d bytes, the signed size allows %d"
                                 % (url, resp.length - skip, want), hint="the server holds other data; re-publish")
                if resp.length - skip < want:
                    raise _error("fetching %s: the server offers %d bytes, %d are expected (truncated?)"
                                 % (url, resp.length - skip, want), hint="the server holds other data; re-publish")
            start = now_ms()
            got = 0
            while skip > 0:
                data = self._read(resp, url, min(CHUNK, skip))
                if not data:
                    raise _error("fetching %s: the connection closed early" % url, hint="pull again to resume")
                skip -= len(data)
                self.bytes_fetched += len(data)
            while got < want:
                data = self._read(resp, url, min(CHUNK, want - got))
                if not data:
                    raise _error("fetching %s: the connection closed after %d of %d bytes" % (url, offset + got, size),
                                 hint="pull again: it resumes where it stopped")
                got += len(data)
                self.bytes_fetched += len(data)
                self._check_time(url, start, got)
                yield data
            if resp.length is None and self._read(resp, url, 1):
                raise _error("fetching %s: the server sends more than the signed %d bytes" % (url, size),
                             hint="the server holds other data; re-publish")
        finally:
            resp.close()

    def close(self):
        pass


def _reason(err):
    if isinstance(err, OSError):
        num = fs.errno_of(err)
        names = {110: "timed out", 111: "connection refused", 104: "connection reset", 113: "no route to host",
                 101: "network unreachable", 32: "broken pipe", 11: "timed out"}
        if num in names:
            return names[num]
        text = str(err)
        if "timed out" in text:
            return "timed out"
        return text or repr(err)
    return str(err)


# --- HTTP/1.1 -------------------------------------------------------------------------------------
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
    def __init__(self, sock, url, timeout):
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
        resp = _HttpResponse(sock, url, self.timeout)
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


# --- local directory and offline bundle -----------------------------------------------------------
class _FileResponse:
    def __init__(self, f, start, length):
        self.f = f
        self.start = start
        self.length = length
        self.left = length

    def read(self, n):
        if self.left <= 0:
            return b""
        data = self.f.read(min(n, self.left))
        self.left -= len(data)
        return data

    def close(self):
        self.f.close()


def _open_slice(path, base, offset, length, url):
    f = fs.open_read(path)
    try:
        f.seek(base + offset)
    except OSError:
        f.close()
        raise
    return _FileResponse(f, offset, length - offset)


class DirFetcher(Fetcher):
    """A repository in a local directory (``file:///path``), e.g. a mounted USB stick."""

    def __init__(self, root, **kw):
        Fetcher.__init__(self, **kw)
        self.root = root[7:] if root.startswith("file://") else root
        self.source = "file://" + self.root

    def describe(self, path):
        return "file://%s/%s" % (self.root, path)

    def _open(self, path, offset):
        full = fs.join(self.root, path)
        st = fs.stat(full)
        if st is None or not st.is_reg():
            raise _error("fetching %s: no such file" % self.describe(path), 404,
                         "check [remote] url and that the repository is published")
        if offset > st.size:
            raise _error("fetching %s: offset %d past its end (%d bytes)" % (self.describe(path), offset, st.size), 416)
        return _open_slice(full, 0, offset, st.size, self.describe(path))


class BundleFetcher(Fetcher):
    """The entries of an offline bundle (updater.bundle) as if they were a repository's files."""

    def __init__(self, path, index, **kw):
        Fetcher.__init__(self, **kw)
        self.path = path
        self.index = index  # {name: (offset, length)}
        self.source = path

    def describe(self, path):
        return "bundle %s: %s" % (self.path, path)

    def has(self, path):
        return path in self.index

    def _open(self, path, offset):
        entry = self.index.get(path)
        if entry is None:
            raise _error("fetching %s: not in the bundle" % self.describe(path), 404,
                         "the bundle does not hold what this device needs; make one with the right --from")
        if offset > entry[1]:
            raise _error("fetching %s: offset past its end" % self.describe(path), 416)
        return _open_slice(self.path, entry[0], offset, entry[1], self.describe(path))


def for_url(url, **kw):
    """The fetcher for a [remote] url: http://HOST[:PORT]/PATH or file:///PATH."""
    if url.startswith("file://"):
        return DirFetcher(url, **kw)
    return HttpFetcher(url, **kw)
