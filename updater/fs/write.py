"""File-system layer: creating, writing, renaming, linking and removing, durably."""

import binascii
import os

from ..errors import UnsupportedError
from .base import (CHUNK, EEXIST, EINVAL, ENOENT, EXDEV, HAS_CHMOD, HAS_CHOWN, HAS_FSYNC, HAS_LINK,
                   HAS_SYMLINK, HAS_XATTR, MICROPYTHON, S_IFLNK, S_IFMT, TMP_PREFIX, _op, basename,
                   dirname, errno_of, fail, is_dir, join, listdir, lstat, open_read)

_tmp_counter = [0]

def _fsync_file(f):
    f.flush()
    if HAS_FSYNC:
        os.fsync(f.fileno())


def fsync_dir(path):
    """Make a directory's entries durable (no-op where directories cannot be opened)."""
    if not HAS_FSYNC:
        return
    _op("fsync", path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        raise fail("syncing directory", path, err)
    try:
        os.fsync(fd)
    except OSError as err:
        if errno_of(err) != EINVAL:
            raise fail("syncing directory", path, err)
    finally:
        os.close(fd)


def sync_fs(path):
    """Flush every dirty page of the file system holding ``path`` (syncfs, else sync)."""
    _op("sync", path)
    if MICROPYTHON:
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    except (ImportError, OSError, AttributeError):
        pass
    if hasattr(os, "sync"):
        os.sync()


def temp_name(directory, stem="x"):
    _tmp_counter[0] += 1
    rnd = os.urandom(6)
    tag = binascii.hexlify(rnd).decode()
    return join(directory, "%s%s-%s-%d" % (TMP_PREFIX, stem, tag, _tmp_counter[0]))


def create_exclusive(path, mode=0o644):
    """Open a new file for writing; fails if anything (even a dangling symlink) is there."""
    _op("write", path)
    try:
        if MICROPYTHON:
            if lstat(path) is not None:
                raise OSError(EEXIST)
            return open(path, "wb")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, mode & 0o7777)
        return os.fdopen(fd, "wb")
    except OSError as err:
        raise fail("creating", path, err)


def write_atomic(path, data, mode=0o644, sync=True):
    """Replace ``path`` with ``data``: temp in the same directory, fsync, rename, fsync dir."""
    directory = dirname(path)
    tmp = temp_name(directory, basename(path)[:24])
    f = create_exclusive(tmp, mode)
    try:
        try:
            f.write(data)
            if sync:
                _op("fsync", tmp)
                _fsync_file(f)
        finally:
            f.close()
        if HAS_CHMOD:
            os.chmod(tmp, mode & 0o7777)
    except OSError as err:
        remove(tmp, missing_ok=True)
        raise fail("writing", tmp, err)
    except BaseException:
        remove(tmp, missing_ok=True)
        raise
    rename(tmp, path)
    if sync:
        fsync_dir(directory)


def rename(src, dst):
    _op("rename", dst)
    try:
        os.rename(src, dst)
    except OSError as err:
        raise fail("renaming %s to" % src, dst, err)


def remove(path, missing_ok=False):
    _op("unlink", path)
    try:
        os.remove(path)
    except OSError as err:
        if missing_ok and errno_of(err) == ENOENT:
            return
        raise fail("removing", path, err)


def mkdir(path, mode=0o755, exist_ok=False):
    _op("mkdir", path)
    try:
        os.mkdir(path, mode) if not MICROPYTHON else os.mkdir(path)
    except OSError as err:
        if exist_ok and errno_of(err) == EEXIST and is_dir(path):
            return
        raise fail("creating directory", path, err)


def makedirs(path, mode=0o755):
    """Create ``path`` and missing parents (no error if it is already a directory)."""
    if is_dir(path):
        return
    parent = dirname(path)
    if parent != path and not is_dir(parent):
        makedirs(parent, mode)
    mkdir(path, mode, exist_ok=True)


def rmdir(path):
    _op("rmdir", path)
    try:
        os.rmdir(path)
    except OSError as err:
        raise fail("removing directory", path, err)


def remove_tree(path):
    """Remove ``path`` and everything below it, never following symlinks. Missing is fine."""
    st = lstat(path)
    if st is None:
        return
    if not st.is_dir():
        remove(path)
        return
    if HAS_CHMOD and not st.mode & 0o200:
        chmod(path, 0o700)
    for name in listdir(path):
        remove_tree(join(path, name))
    rmdir(path)


def chmod(path, mode):
    if HAS_CHMOD:
        _op("chmod", path)
        try:
            os.chmod(path, mode & 0o7777)
        except OSError as err:
            raise fail("setting the mode of", path, err)


def apply_meta(path, mode, uid, gid, xattrs=None, owner=True):
    """Give ``path`` its owner, xattrs and mode (in that order: chown clears setuid bits).

    Symlinks get owner only. ``owner=False`` (user-mode repos) skips chown and xattrs.
    """
    is_link = mode & S_IFMT == S_IFLNK
    try:
        if owner and HAS_CHOWN:
            if is_link:
                os.lchown(path, uid, gid)
            else:
                os.chown(path, uid, gid)
        if owner and xattrs and HAS_XATTR and not is_link:
            for name in sorted(xattrs):
                os.setxattr(path, name.decode() if isinstance(name, bytes) else name, xattrs[name],
                            follow_symlinks=False)
        if not is_link and HAS_CHMOD:
            os.chmod(path, mode & 0o7777)
    except OSError as err:
        raise fail("setting owner, mode or xattrs of", path, err)


def symlink(target, path):
    if not HAS_SYMLINK:
        raise UnsupportedError("creating symlink %s: this platform has no symlinks" % path)
    _op("symlink", path)
    try:
        os.symlink(target, path)
    except OSError as err:
        raise fail("creating symlink", path, err)


def link(src, dst):
    """Hard-link ``src`` (never following a symlink) to the new name ``dst``; raises OSError."""
    if not HAS_LINK:
        raise OSError(EXDEV)
    _op("link", dst)
    os.link(src, dst, follow_symlinks=False)


def copy_file(src, dst, mode=0o644):
    """Copy regular file contents to the new name ``dst`` (exclusive create)."""
    out = create_exclusive(dst, mode)
    try:
        with open_read(src) as f:
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                out.write(view[:n])
    except OSError as err:
        out.close()
        remove(dst, missing_ok=True)
        raise fail("copying %s to" % src, dst, err)
    out.close()


def write_stream(path, chunks, mode=0o644, sync=False):
    """Write an iterable of byte chunks to the new file ``path``; fsync it if ``sync`` (batches
    leave that to Staging). On any error the file is removed."""
    out = create_exclusive(path, mode)
    try:
        for chunk in chunks:
            out.write(chunk)
        if sync:
            _op("fsync", path)
            _fsync_file(out)
    except OSError as err:
        out.close()
        remove(path, missing_ok=True)
        raise fail("writing", path, err)
    except BaseException:
        out.close()
        remove(path, missing_ok=True)
        raise
    out.close()


def append_stream(path, chunks, mode=0o600):
    """Append an iterable of byte chunks to ``path`` (created if missing, never through a symlink).

    For resumable downloads: whatever was written stays when ``chunks`` raises (no fsync: the
    caller checks the finished file's hash). Returns the number of bytes appended.
    """
    _op("write", path)
    try:
        if MICROPYTHON:
            out = open(path, "ab")
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
            out = os.fdopen(os.open(path, flags, mode & 0o7777), "ab")
    except OSError as err:
        raise fail("opening for append", path, err)
    n = 0
    try:
        for chunk in chunks:
            out.write(chunk)
            n += len(chunk)
    except BaseException as err:
        try:
            out.close()
        except OSError:
            pass
        if isinstance(err, OSError):
            raise fail("writing", path, err)
        raise
    try:
        out.close()
    except OSError as err:
        raise fail("writing", path, err)
    return n


def open_temp(directory, stem="x", mode=0o644):
    """(path, file) of a new temp file in ``directory``; see Staging for making it durable."""
    path = temp_name(directory, stem)
    return path, create_exclusive(path, mode)


def clean_temps(directory):
    """Remove leftovers of interrupted writes (``.tmp-*``) directly inside ``directory``."""
    if not is_dir(directory):
        return 0
    n = 0
    for name in listdir(directory):
        if name.startswith(TMP_PREFIX):
            remove_tree(join(directory, name))
            n += 1
    return n

