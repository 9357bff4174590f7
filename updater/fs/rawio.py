"""File-system layer: in-place reads and writes at an offset (U-Boot env areas on files or devices)."""

import os

from ..errors import StorageError
from .base import MICROPYTHON, _op, fail

def read_at(path, offset, size):
    """``size`` bytes at ``offset`` (files, block and MTD devices); short reads are an error."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(size)
    except OSError as err:
        raise fail("reading %d bytes at offset 0x%x of" % (size, offset), path, err)
    if len(data) != size:
        raise StorageError(
            "reading %d bytes at offset 0x%x of %s: only %d bytes there" % (size, offset, path, len(data)),
            "check the offset and size in the board config against the device",
        )
    return data


def write_at(path, offset, data, sync=True):
    """Overwrite ``len(data)`` bytes at ``offset`` in place (env areas on files or devices)."""
    _op("write_at", path)
    try:
        if MICROPYTHON:  # no lseek or fsync there: a file object, flushed
            with open(path, "r+b") as f:
                f.seek(offset)
                f.write(data)
                f.flush()
            return
        fd = os.open(path, os.O_WRONLY)
        try:
            os.lseek(fd, offset, 0)
            view = memoryview(data)
            done = 0
            while done < len(data):
                done += os.write(fd, view[done:])
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise fail("writing %d bytes at offset 0x%x of" % (len(data), offset), path, err)


# MEMERASE = _IOW('M', 2, struct erase_info_user {__u32 start; __u32 length}) on ARM, x86 and
# the other architectures with the generic ioctl encoding (not MIPS, PowerPC, SPARC).
MEMERASE = 0x40084D02


def erase_mtd(path, offset, length):
    """Erase ``length`` bytes at ``offset`` of an MTD character device to 0xff (MEMERASE ioctl).

    ``offset`` and ``length`` must be multiples of the device's erase block size.
    """
    _op("erase", path)
    try:
        import fcntl
        import struct
    except ImportError:
        from ..errors import UnsupportedError

        raise UnsupportedError("erasing %s: this platform has no fcntl.ioctl for MTD devices" % path,
                               "run the updater with CPython on this device, or use a block-device env")
    try:
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.ioctl(fd, MEMERASE, struct.pack("II", offset, length))
        finally:
            os.close(fd)
    except OSError as err:
        raise fail("erasing %d bytes at offset 0x%x of" % (length, offset), path, err)
