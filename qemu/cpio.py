"""A newc cpio writer (the initramfs format), so archives need no root: owners, device nodes
and times are written as data, not taken from the host file system."""

import gzip
import io


class Cpio:
    def __init__(self, mtime=0):
        self.out = io.BytesIO()
        self.ino = 1000
        self.mtime = mtime

    def _entry(self, name, mode, data=b"", rdev=(0, 0), nlink=1):
        self.ino += 1
        name_b = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, nlink, self.mtime, len(data), 0, 0, rdev[0], rdev[1],
                  len(name_b), 0)
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.out.write(hdr + name_b)
        self.out.write(b"\0" * (-(len(hdr) + len(name_b)) % 4))
        self.out.write(data)
        self.out.write(b"\0" * (-len(data) % 4))

    def dir(self, name, mode=0o755):
        self._entry(name, 0o040000 | mode, nlink=2)

    def file(self, name, data, mode=0o644):
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name, target):
        self._entry(name, 0o120777, target.encode())

    def chardev(self, name, major, minor, mode=0o600):
        self._entry(name, 0o020000 | mode, rdev=(major, minor))

    def finish(self):
        """The archive, gzip-compressed with a fixed header time (reproducible)."""
        self._entry("TRAILER!!!", 0)
        raw = self.out.getvalue()
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz:
            gz.write(raw)
        return buf.getvalue()
