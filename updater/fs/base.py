"""File-system layer: platform facts, error conversion, the fault hook, paths, inspecting, reading."""

import os
import sys

from ..errors import SpaceError, StorageError, UnsupportedError

MICROPYTHON = sys.implementation.name == "micropython"
HAS_LINK = hasattr(os, "link")
HAS_SYMLINK = hasattr(os, "symlink") and hasattr(os, "readlink")
HAS_LSTAT = hasattr(os, "lstat")
HAS_CHMOD = hasattr(os, "chmod")
HAS_CHOWN = hasattr(os, "chown")
HAS_XATTR = hasattr(os, "setxattr") and hasattr(os, "listxattr")
HAS_FSYNC = hasattr(os, "fsync")

# Linux errno numbers (MicroPython's errno module lacks several names).
EPERM, ENOENT, EIO, EAGAIN, EACCES, EEXIST, EXDEV = 1, 2, 5, 11, 13, 17, 18
ENOTDIR, EISDIR, EINVAL, ENOSPC, EMLINK, ENOTEMPTY, ELOOP = 20, 21, 22, 28, 31, 39, 40
ENODATA, EOPNOTSUPP, EDQUOT = 61, 95, 122

S_IFMT, S_IFSOCK, S_IFLNK, S_IFREG = 0o170000, 0o140000, 0o120000, 0o100000
S_IFBLK, S_IFDIR, S_IFCHR, S_IFIFO = 0o060000, 0o040000, 0o020000, 0o010000

CHUNK = 16 * 1024 if MICROPYTHON else 256 * 1024  # I/O buffer: small heaps on MicroPython
TMP_PREFIX = ".tmp-"

_hook = None
_tmp_counter = [0]


def set_hook(hook):
    """Install ``hook(op, path)``, called before every durable operation; None removes it.

    Used by the crash-safety harness to number operations and stop the process at one of them.
    """
    global _hook
    _hook = hook


def _op(op, path):
    if _hook is not None:
        _hook(op, path)


def errno_of(err):
    num = getattr(err, "errno", None)
    if num is None and err.args and isinstance(err.args[0], int):
        num = err.args[0]
    return num


def _strerror(err):
    text = getattr(err, "strerror", None)
    if text:
        return text
    return {ENOENT: "no such file or directory", EEXIST: "file exists", EACCES: "permission denied",
            ENOSPC: "no space left on device", EISDIR: "is a directory", ENOTDIR: "not a directory",
            EXDEV: "cross-device link", EMLINK: "too many links", ENOTEMPTY: "directory not empty",
            EIO: "input/output error", EPERM: "operation not permitted"}.get(errno_of(err), repr(err))


def fail(doing, path, err):
    """Turn an OSError into a StorageError (SpaceError on ENOSPC) naming what and where."""
    num = errno_of(err)
    msg = "%s %s: %s" % (doing, path, _strerror(err))
    if num in (ENOSPC, EDQUOT):
        return SpaceError(msg, "free some space (updater prune) and try again")
    if num in (EACCES, EPERM):
        return StorageError(msg, "run as root, or check the permissions of %s" % path)
    return StorageError(msg)


# --- paths ------------------------------------------------------------------------------------
def join(*parts):
    out = ""
    for part in parts:
        if not part:
            continue
        if part.startswith("/") or not out:
            out = part
        elif out.endswith("/"):
            out = out + part
        else:
            out = out + "/" + part
    return out


def dirname(path):
    path = path.rstrip("/") or "/"
    idx = path.rfind("/")
    if idx < 0:
        return "."
    if idx == 0:
        return "/"
    return path[:idx]


def basename(path):
    path = path.rstrip("/")
    return path[path.rfind("/") + 1 :]


def abspath(path):
    if path.startswith("/"):
        return path
    return join(os.getcwd(), path)


# --- inspecting -------------------------------------------------------------------------------
class Stat:
    """The fields updater uses, the same on CPython and MicroPython."""

    def __init__(self, st):
        self.mode = st[0]
        self.ino = st[1]
        self.dev = st[2]
        self.nlink = st[3]
        self.uid = st[4]
        self.gid = st[5]
        self.size = st[6]
        self.mtime = st[8]

    def kind(self):
        return self.mode & S_IFMT

    def is_dir(self):
        return self.mode & S_IFMT == S_IFDIR

    def is_reg(self):
        return self.mode & S_IFMT == S_IFREG

    def is_link(self):
        return self.mode & S_IFMT == S_IFLNK


def lstat(path):
    """Stat without following a final symlink; None if the path does not exist."""
    try:
        return Stat(os.lstat(path) if HAS_LSTAT else os.stat(path))
    except OSError as err:
        if errno_of(err) in (ENOENT, ENOTDIR):
            return None
        raise fail("inspecting", path, err)


def stat(path):
    try:
        return Stat(os.stat(path))
    except OSError as err:
        if errno_of(err) in (ENOENT, ENOTDIR):
            return None
        raise fail("inspecting", path, err)


def exists(path):
    return lstat(path) is not None


def is_dir(path):
    st = lstat(path)
    return st is not None and st.is_dir()


def listdir(path):
    """Sorted entry names of a directory."""
    try:
        names = os.listdir(path)
    except OSError as err:
        raise fail("listing", path, err)
    names.sort()
    return names


def readlink(path):
    if not HAS_SYMLINK:
        raise UnsupportedError("reading symlink %s: this platform has no symlinks" % path)
    try:
        return os.readlink(path)
    except OSError as err:
        raise fail("reading symlink", path, err)


def read_xattrs(path):
    """Extended attributes of ``path`` (not following symlinks) as {bytes name: bytes value}."""
    if not HAS_XATTR:
        return {}
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
        for name in names:
            out[name.encode()] = os.getxattr(path, name, follow_symlinks=False)
    except OSError as err:
        if errno_of(err) in (EOPNOTSUPP, ENODATA):
            return out
        raise fail("reading extended attributes of", path, err)
    return out


def free_bytes(path):
    """Bytes available to unprivileged writers on the file system holding ``path``."""
    try:
        st = os.statvfs(path)
    except OSError as err:
        raise fail("checking free space on", path, err)
    return st[0] * st[4]


def read_bytes(path, limit=None, what="reading"):
    """The whole file, refusing one larger than ``limit`` bytes (without allocating past it)."""
    try:
        with open(path, "rb") as f:
            if limit is None:
                return f.read()
            size = os.stat(path)[6]
            if size > limit:
                raise StorageError("%s %s: %d bytes, larger than the limit of %d" % (what, path, size, limit))
            if size:
                data = f.read(size)
                if len(data) == size and not f.read(1):
                    return data
                raise StorageError("%s %s: the file changed size while being read" % (what, path))
            chunks = []
            total = 0
            while True:  # files that report size 0 (/proc, /sys)
                chunk = f.read(4096)
                if not chunk:
                    return b"".join(chunks)
                total += len(chunk)
                if total > limit:
                    raise StorageError("%s %s: larger than the limit of %d bytes" % (what, path, limit))
                chunks.append(chunk)
    except OSError as err:
        raise fail(what, path, err)


def open_read(path):
    """A binary file object for streaming reads (the caller closes it)."""
    try:
        return open(path, "rb")
    except OSError as err:
        raise fail("opening", path, err)


def sha256_file(path, prefix=b""):
    """(digest, size) of ``prefix`` followed by the file's bytes, read in chunks."""
    import hashlib

    h = hashlib.sha256(prefix)
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    try:
        with open(path, "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(view[:n])
                size += n
    except OSError as err:
        raise fail("reading", path, err)
    return h.digest(), size



def is_root():
    """True when running as root (owners and xattrs can be set), False elsewhere or unknown."""
    geteuid = getattr(os, "geteuid", None)
    return bool(geteuid and geteuid() == 0)


def umask():
    """The process umask (read without changing it for longer than a call); 0o022 if unknown."""
    fn = getattr(os, "umask", None)
    if fn is None:
        return 0o022
    old = fn(0o022)
    fn(old)
    return old
