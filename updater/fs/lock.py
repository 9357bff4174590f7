"""File-system layer: the flock lock that serialises updater processes."""

import os
import sys

from .base import EACCES, EAGAIN, errno_of, fail

class FileLock:
    """An exclusive flock on ``path``, released when the process dies (no stale locks).

    The holder writes "pid command" into the file so a waiting process can name it.
    Where fcntl is missing (MicroPython) the lock is a no-op: such a device runs one process.
    """

    def __init__(self, path, what):
        self.path = path
        self.what = what
        self.fd = None

    def holder(self):
        try:
            with open(self.path, "rb") as f:
                return f.read(200).decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def acquire(self, wait=True, notify=None):
        try:
            import fcntl
        except ImportError:
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as err:
            raise fail("opening the lock file", self.path, err)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if errno_of(err) not in (EAGAIN, EACCES):
                os.close(fd)
                raise fail("locking", self.path, err)
            holder = self.holder() or "another process"
            if not wait:
                os.close(fd)
                from ..errors import LockedError

                raise LockedError(
                    "%s is locked by %s" % (self.what, holder),
                    "wait for it to finish, or run again without --no-wait to wait",
                )
            if notify:
                notify("waiting for the lock on %s held by %s" % (self.what, holder))
            fcntl.flock(fd, fcntl.LOCK_EX)
        self.fd = fd
        try:
            argv = " ".join(sys.argv)[:160]
            os.ftruncate(fd, 0)
            os.write(fd, ("pid %d: %s\n" % (os.getpid(), argv)).encode())
        except OSError:
            pass
        return self

    def release(self):
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
