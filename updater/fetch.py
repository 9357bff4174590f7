"""Fetchers: HTTP/1.1 over plain sockets (updater.httpfetch), a local directory (file://), and an
offline bundle.

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
"""

from . import fs
from .errors import FetchError, FormatError
from .progress import elapsed_ms, now_ms

FETCH_FORMAT = 1
CHUNK = 16 * 1024 if not fs.MICROPYTHON else 4 * 1024


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


def _open_slice(path, base, offset, length):
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
        return _open_slice(full, 0, offset, st.size)


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
        return _open_slice(self.path, entry[0], offset, entry[1])


def for_url(url, **kw):
    """The fetcher for a [remote] url: http://HOST[:PORT]/PATH or file:///PATH."""
    if url.startswith("file://"):
        return DirFetcher(url, **kw)
    from .httpfetch import HttpFetcher

    return HttpFetcher(url, **kw)
