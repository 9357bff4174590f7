"""Fetchers: bounded HTTP/1.1 over sockets (Range, 206/416, chunked, errors, slow servers), file://,
offline bundles; every failure is a FetchError naming the URL."""

import os
import socket
import threading

import pytest
from deltakit import start_server

from updater import bundle, fetch, httpfetch
from updater.errors import FetchError, FormatError
from updater.host import serve


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    (root / "deltas").mkdir(parents=True)
    data = os.urandom(100000)
    (root / "deltas" / "blob").write_bytes(data)
    (root / "small").write_bytes(b"hello")
    server = start_server(str(root))
    yield server, data, root
    server.shutdown()
    server.server_close()


def test_get_range_resume_and_bounds(site):
    server, data, _ = site
    f = httpfetch.HttpFetcher(server.url())
    assert f.fetch_bytes("small", 5) == b"hello"
    assert b"".join(f.stream("deltas/blob", len(data))) == data
    assert b"".join(f.stream("deltas/blob", len(data), 60000)) == data[60000:]
    assert server.requests[-1][2] == "bytes=60000-"
    assert f.bytes_fetched == 5 + len(data) + 40000
    with pytest.raises(FetchError, match="limit of 4"):
        f.fetch_bytes("small", 4)
    with pytest.raises(FetchError, match="offers 100000 bytes, the signed size allows 99999"):
        list(f.stream("deltas/blob", len(data) - 1))
    with pytest.raises(FetchError, match="truncated"):
        list(f.stream("deltas/blob", len(data) + 1))


def test_status_errors(site):
    server, data, _ = site
    f = httpfetch.HttpFetcher(server.url() + "/")
    with pytest.raises(FetchError, match="status 404") as err:
        f.fetch_bytes("missing", 10)
    assert fetch.status_of(err.value) == 404 and err.value.hint
    server.faults["/small"] = ("500", 1)
    with pytest.raises(FetchError, match="status 500") as err:
        f.fetch_bytes("small", 10)
    assert fetch.status_of(err.value) == 500
    with pytest.raises(FetchError, match="416") as err:
        list(f.stream("small", 10, 7))
    assert fetch.status_of(err.value) == 416


def test_dropped_endless_oversized_and_range_ignored(site):
    server, data, _ = site
    f = httpfetch.HttpFetcher(server.url())
    server.faults["/deltas/blob"] = ("drop", 1)
    got = []
    with pytest.raises(FetchError, match="closed after"):
        for chunk in f.stream("deltas/blob", len(data)):
            got.append(chunk)
    assert 0 < sum(map(len, got)) < len(data)
    server.faults["/deltas/blob"] = ("endless", 2)
    with pytest.raises(FetchError, match="more than the signed"):
        list(f.stream("deltas/blob", len(data)))
    with pytest.raises(FetchError, match="more than the limit"):
        f.fetch_bytes("deltas/blob", 200000)
    server.faults["/deltas/blob"] = ("oversize", 1)
    with pytest.raises(FetchError, match="signed size allows"):
        list(f.stream("deltas/blob", len(data)))
    server.faults["/deltas/blob"] = ("ignore-range", 1)
    assert b"".join(f.stream("deltas/blob", len(data), 1000)) == data[1000:]


def test_slow_server_and_timeouts(site):
    server, data, _ = site
    server.faults["/small"] = ("slow", 1)
    f = httpfetch.HttpFetcher(server.url(), min_rate=100, grace_ms=300)
    with pytest.raises(FetchError, match="minimum"):
        f.fetch_bytes("small", 10)
    server.faults["/small"] = ("slow", 1)
    f = httpfetch.HttpFetcher(server.url(), deadline_ms=0)
    with pytest.raises(FetchError, match="deadline"):
        f.fetch_bytes("small", 10)


def raw_server(responder):
    """A one-shot TCP server: ``responder(conn)`` answers each connection."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)

    def loop():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            try:
                conn.recv(65536)
                responder(conn)
            except OSError:
                pass
            finally:
                conn.close()

    threading.Thread(target=loop, daemon=True).start()
    return sock, "http://127.0.0.1:%d" % sock.getsockname()[1]


def test_chunked_and_malformed_responses():
    body = b"0123456789" * 1000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 777]), body[i:i + 777]) for i in range(0, len(body), 777))
    sock, url = raw_server(lambda c: c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"))
    try:
        assert httpfetch.HttpFetcher(url).fetch_bytes("x", 20000) == body
        assert b"".join(httpfetch.HttpFetcher(url).stream("x", len(body))) == body
    finally:
        sock.close()
    for reply, msg in ((b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP response"),
                       (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "Content-Length"),
                       (b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 9000 + b"\r\n\r\n", "header line"),
                       (b"HTTP/1.1 206 Partial\r\nContent-Range: bytes 5-1/10\r\n\r\n", "Content-Range"),
                       (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "transfer encoding"),
                       (b"HTTP/1.1 200 OK\r\nContent-Le", "closed in the response header")):
        sock, url = raw_server(lambda c, r=reply: c.sendall(r))
        try:
            with pytest.raises(FetchError, match=msg):
                httpfetch.HttpFetcher(url).fetch_bytes("x", 100)
        finally:
            sock.close()


def test_connection_refused_and_silent_server():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(FetchError, match="refused"):
        httpfetch.HttpFetcher("http://127.0.0.1:%d" % port).fetch_bytes("x", 10)
    silent, url = raw_server(lambda c: c.recv(10) and None)
    try:
        # accepts, reads the request, never answers
        with pytest.raises(FetchError, match="timed out|closed"):
            httpfetch.HttpFetcher(url, timeout=0.5).fetch_bytes("x", 10)
    finally:
        silent.close()


def test_urls_and_paths():
    assert httpfetch.parse_url("http://h:81/a/b/") == ("h", 81, "/a/b")
    assert httpfetch.parse_url("http://h") == ("h", 80, "")
    assert httpfetch.parse_url("http://[::1]:8080/r") == ("::1", 8080, "/r")
    for bad in ("https://h/", "ftp://h", "http://:80/", "http://h:0/"):
        with pytest.raises(FetchError):
            httpfetch.parse_url(bad)
    f = httpfetch.HttpFetcher("http://127.0.0.1:9")
    for bad in ("../etc/passwd", "/abs", "a//b", "a/./b", ""):
        with pytest.raises(FetchError, match="relative"):
            f.fetch_bytes(bad, 10)


def test_dir_fetcher(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"abcdef")
    f = fetch.for_url("file://" + str(tmp_path))
    assert isinstance(f, fetch.DirFetcher)
    assert f.fetch_bytes("d/f", 6) == b"abcdef"
    assert b"".join(f.stream("d/f", 6, 2)) == b"cdef"
    with pytest.raises(FetchError) as err:
        f.fetch_bytes("d/missing", 6)
    assert fetch.status_of(err.value) == 404
    with pytest.raises(FetchError, match="signed size"):
        list(f.stream("d/f", 5))


def test_bundle_index_and_fetcher(tmp_path):
    entries = [("summary", b"S" * 10), ("deltas/x/0", b"part0"), ("deltas/x/superblock", b"")]
    head = bundle.encode_index([(n, len(d)) for n, d in entries])
    path = tmp_path / "b"
    path.write_bytes(head + b"".join(d for _, d in entries))
    raw = path.read_bytes()

    def read_at(off, n):
        return raw[off:off + n]

    index = bundle.parse_index(read_at, len(raw))
    f = fetch.BundleFetcher(str(path), index)
    assert f.fetch_bytes("summary", 100) == b"S" * 10
    assert b"".join(f.stream("deltas/x/0", 5, 1)) == b"art0"
    assert f.fetch_bytes("deltas/x/superblock", 0) == b""
    with pytest.raises(FetchError) as err:
        f.fetch_bytes("nope", 10)
    assert fetch.status_of(err.value) == 404
    bad = [raw[:-1], b"XXXXXXXX" + raw[8:], raw[:8] + b"\0\0\0\2" + raw[12:], raw[:12] + b"\0\0\0\0" + raw[16:],
           raw[:16] + b"\xff\xff" + raw[18:]]
    for b in bad:
        with pytest.raises(FormatError):
            bundle.parse_index(lambda off, n, b=b: b[off:off + n], len(b))
    with pytest.raises(FormatError, match="relative"):
        bundle.encode_index([("../x", 1)])
    with pytest.raises(FormatError, match="twice"):
        bundle.encode_index([("a", 1), ("a", 1)])


def test_serve_ranges(tmp_path):
    assert serve.parse_range(None, 10) is None
    assert serve.parse_range("bytes=2-", 10) == (2, 9)
    assert serve.parse_range("bytes=2-4", 10) == (2, 4)
    assert serve.parse_range("bytes=-3", 10) == (7, 9)
    assert serve.parse_range("bytes=10-", 10) == "bad"
    assert serve.parse_range("items=1-", 10) is None
    (tmp_path / "f").write_bytes(b"x")
    os.symlink("/etc/passwd", str(tmp_path / "escape"))
    server = serve.start(str(tmp_path))
    try:
        f = httpfetch.HttpFetcher(server.url())
        assert f.fetch_bytes("f", 1) == b"x"
        with pytest.raises(FetchError, match="404"):
            f.fetch_bytes("escape", 10000)
    finally:
        server.shutdown()
        server.server_close()
