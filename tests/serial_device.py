"""The device side of the serial tests: ``updater`` with a stand-in bundle installer.

Runs ``updater.cli.main`` (so ``receive`` is the real command) under CPython or MicroPython,
with ``updater.receive.bundle_installer`` replaced by a test installer of the same signature
that accepts "test bundles" (written by ``make_bundle``): it checks the board named in the
bundle against the sysroot's configuration and the SHA-256 of the body, and records an
install in SYSROOT/updater/test-installed. Usage: serial_device.py --sysroot S COMMAND ...
"""

import sys

from updater import fs, receive
from updater.errors import IntegrityError, TrustError

MAGIC = b"TESTBNDL"


def make_bundle(board, body):
    """A test bundle: magic, board, SHA-256 of the body, body (host side, CPython)."""
    import hashlib

    return MAGIC + board.encode() + b"\n" + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def test_installer(sysroot, say=None):
    def install(path, progress):
        import hashlib

        size = fs.stat(path).size
        head = fs.read_at(path, 0, min(size, 200))
        if not head.startswith(MAGIC) or head.count(b"\n") < 2:
            raise IntegrityError("installing %s: not a bundle (bad magic)" % path, "push a bundle made by updater bundle")
        board, digest, _ = head[len(MAGIC):].split(b"\n", 2)
        mine = sysroot.config().board
        if board.decode() != mine:
            raise TrustError("installing %s: the bundle is for board %s, this device is %s" % (path, board.decode(), mine),
                             "push the bundle built for %s" % mine)
        h = hashlib.sha256()
        offset = len(MAGIC) + len(board) + len(digest) + 2
        while offset < size:  # streamed: a small device has little memory
            chunk = fs.read_at(path, offset, min(65536, size - offset))
            h.update(chunk)
            offset += len(chunk)
            progress(offset, size)
        got = "".join("%02x" % b for b in h.digest())
        if got != digest.decode():
            raise IntegrityError("installing %s: content does not match its checksum" % path,
                                 "the bundle was damaged or tampered with: get a fresh copy")
        fs.write_atomic(fs.join(sysroot.dir, "test-installed"), digest)
        return {"deployment": digest.decode()[:12] + ".0", "staged": True}

    return install


receive.bundle_installer = test_installer

if __name__ == "__main__":
    from updater.cli import main

    sys.exit(main(sys.argv[1:]))
