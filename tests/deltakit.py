"""Helpers for delta, pull and bundle tests: sample OS trees, a published host repository, a device,
and an HTTP server that can misbehave on request (404, 500, drops, endless or oversized bodies)."""

import os
import random
import socket
import threading
import time

from devicekit import write  # noqa: F401  (the test kits share one file writer)

from updater.host import deltagen, publish
from updater.host import keys as keys_mod
from updater.host import serve
from updater.host.commit import commit_source
from updater.repo import Repo
from updater.sysroot import DeviceConfig, Sysroot

BRANCH = "qemu-arm64/stable"
BOARD = "qemu-arm64"


def blob(seed, size):
    rnd = random.Random(seed)
    # Compressible but not trivial: words from a small vocabulary, like code and text.
    words = [bytes(rnd.getrandbits(8) for _ in range(rnd.randint(2, 9))) for _ in range(300)]
    out = bytearray()
    while len(out) < size:
        out += rnd.choice(words)
    return bytes(out[:size])


def edit(data, seed, edits=12):
    rnd = random.Random(seed)
    out = bytearray(data)
    for _ in range(edits):
        pos = rnd.randrange(max(1, len(out) - 8))
        out[pos:pos + 4] = bytes(rnd.getrandbits(8) for _ in range(4))
    return bytes(out)


def sample(root, version, symlinks=True, big=60000):
    """A small OS tree; version 2 changes, renames (versioned names), adds and re-modes files."""
    v = int(version)
    lib = blob(1, big)
    mod = blob(2, big // 2)
    write(root, "etc/hostname", b"device\n")
    write(root, "etc/os-release", b"VERSION=%d\n" % v)
    write(root, "usr/bin/tool", edit(blob(3, big), 30 + v, 4 * v) if v > 1 else blob(3, big), 0o755)
    write(root, "usr/lib/libfoo.so.1.%d" % v, edit(lib, 40 + v, 3 * v) if v > 1 else lib)
    write(root, "usr/lib/modules/6.1.0-%d/kernel/drv.ko" % v, edit(mod, 50 + v) if v > 1 else mod)
    write(root, "usr/share/doc/README", b"read me\n" * 20)
    write(root, "usr/share/doc/changes.xz", os.urandom(3000) if v > 1 else blob(4, 3000))
    write(root, "var/lib/empty", b"")
    write(root, "usr/sbin/daemon", b"#!/bin/sh\nexec tool\n", 0o755 if v == 1 else 0o750)
    if v > 1:
        write(root, "usr/share/new-in-%d.txt" % v, blob(5 + v, 5000))
    if symlinks:
        os.symlink("libfoo.so.1.%d" % v, os.path.join(root, "usr/lib/libfoo.so.1"))
    return root


class Host:
    """A build-server repository with commits, deltas, a signing key and a published summary."""

    def __init__(self, tmp, symlinks=True, big=60000):
        self.tmp = str(tmp)
        self.repo = Repo.init(os.path.join(self.tmp, "repo"), "user")
        self.key = keys_mod.keygen(os.path.join(self.tmp, "build.key"))
        self.pub = os.path.join(self.tmp, "build.key.pub")
        self.symlinks = symlinks
        self.big = big
        self.commits = {}

    def commit(self, version, timestamp=None):
        src = sample(os.path.join(self.tmp, "src-%s" % version), version, self.symlinks, self.big)
        cid, _ = commit_source(self.repo, src, BRANCH, "build " + version, version, BOARD,
                               timestamp or 1_700_000_000 + int(version))
        self.commits[version] = cid
        return cid

    def delta(self, to, frm=None, codec="zlib", **kw):
        return deltagen.generate(self.repo, self.commits[to], self.commits[frm] if frm else None, codec,
                                 workers=1, **kw)

    def publish(self, **kw):
        return publish.publish(self.repo, [self.key], **kw)

    def delta_dir(self, to, frm=None):
        from updater.delta import delta_name

        return os.path.join(self.repo.path, "deltas", delta_name(self.commits[frm] if frm else None, self.commits[to]))


def make_device(tmp, url, pub, name="device", reserve=0, board=BOARD):
    with open(pub, "rb") as f:
        key = f.read()
    cfg = DeviceConfig(board=board, url=url, branch=BRANCH, keys=["build.pub"], reserve=reserve)
    return Sysroot.create(os.path.join(str(tmp), name), cfg, keys={"build.pub": key}, repo_mode="user")


def tree_files(root):
    """{relative path: (mode, content or link target)} of a directory, for comparisons."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            else:
                with open(path, "rb") as f:
                    out[rel] = (st.st_mode & 0o7777, f.read())
    return out


# --- a server that misbehaves on request ----------------------------------------------------------
class FaultyHandler(serve.RepoHandler):
    """Faults by path suffix: server.faults = {suffix: mode}; each fault fires ``times`` times."""

    def do_GET(self):
        fault = None
        with self.server.lock:
            for suffix, spec in list(self.server.faults.items()):
                if self.path.endswith(suffix):
                    mode, left = spec
                    if left:
                        self.server.faults[suffix] = (mode, left - 1)
                        fault = mode
                    break
            self.server.requests.append((self.command, self.path, self.headers.get("Range")))
        if fault is None:
            return serve.RepoHandler.do_GET(self)
        full = self._resolve()
        data = open(full, "rb").read() if full else b""
        if fault in ("404", "500"):
            return self._error(int(fault))
        if fault == "drop":  # half of the body, then the connection dies
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if fault == "endless":  # no length, bytes forever (until the client hangs up)
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                while True:
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                return
        if fault == "oversize":  # claims and sends more than the signed size
            body = data + b"\0" * 4096
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if fault == "ignore-range":
            del self.headers["Range"]
            return serve.RepoHandler.do_GET(self)
        if fault == "slow":
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                for i in range(len(data)):
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                return
            return
        raise AssertionError("unknown fault " + fault)


def start_server(root):
    server = serve.RepoServer(root, ("127.0.0.1", 0))
    server.RequestHandlerClass = FaultyHandler
    server.faults = {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def clean(dev):
    """Leftovers a failed pull may keep: only partial downloads in tmp/pull."""
    out = []
    for dirpath, _, filenames in os.walk(dev.tmp_dir):
        out += [os.path.relpath(os.path.join(dirpath, n), dev.tmp_dir) for n in filenames]
    return out


def fsck_ok(dev):
    from updater import fsck

    report = fsck.fsck(dev.repo())
    d = report.as_dict()
    assert d["ok"], d["problems"]
    return d



def rewrite_part(delta_dir, index, transform):
    """Replace part ``index`` of a zlib delta by ``transform(uncompressed bytes)``, fixing the
    superblock's size, uncompressed size and hash (as a malicious publisher with the key could)."""
    import hashlib
    import zlib

    from updater import delta

    with open(os.path.join(delta_dir, "superblock"), "rb") as f:
        sb = delta.parse_superblock(f.read())
    parts = []
    for p in sb.parts:
        if p.index == index:
            with open(os.path.join(delta_dir, str(index)), "rb") as f:
                stream = transform(zlib.decompress(f.read()))
            data = zlib.compress(stream, 9)
            with open(os.path.join(delta_dir, str(index)), "wb") as f:
                f.write(data)
            p = delta.Part(index, "zlib", len(data), len(stream), hashlib.sha256(data).digest(), p.objects)
        parts.append((p.codec, p.size, p.usize, p.sha256, p.objects))
    with open(os.path.join(delta_dir, "superblock"), "wb") as f:
        f.write(delta.encode_superblock(sb.from_id, sb.to_id, sb.commit, parts))
