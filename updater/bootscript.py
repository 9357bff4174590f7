"""The compiled U-Boot boot script on the sysroot: checking its two copies, restoring a bad one.

Provisioning writes two identical copies, ``/boot.scr`` and ``/boot/boot.scr`` (distro_bootcmd
tries them in that order and skips a copy that fails its checks). U-Boot says so only on the
console; ``updater boot`` calls ``check_and_restore`` so the device says it too, in plain words,
and puts a valid copy back over a missing or damaged one while the other copy is intact.

A copy is a U-Boot legacy image (``mkimage -T script``; docs/uboot.md, "Boot script image"):
a 64-byte big-endian header, then ``size`` bytes of data.

    offset  size  field
    0       4     magic 0x27051956
    4       4     header CRC-32 (of the 64 header bytes with this field zeroed)
    8       4     time stamp
    12      4     data size
    16      8     load address, entry point
    24      4     data CRC-32
    28      4     OS, architecture, image type (6 = script), compression
    32      32    name (NUL-padded)
"""

import struct

from . import fs
from .ubootenv import crc32

SCRIPT_FORMAT = 1  # the legacy image fields above, as U-Boot 2023.01 checks them
MAGIC = 0x27051956
HEADER_SIZE = 64
TYPE_SCRIPT = 6
MAX_SCRIPT = 1 << 20
COPIES = ("boot.scr", "boot/boot.scr")  # distro_bootcmd's order (boot_prefixes "/ /boot/")


def _u32(data, offset):
    return struct.unpack_from(">I", data, offset)[0]


def problem(data):
    """Why U-Boot would refuse ``data`` as a boot script (text), or None if it is a valid one."""
    if len(data) < HEADER_SIZE:
        return "only %d bytes, shorter than the %d-byte image header" % (len(data), HEADER_SIZE)
    if _u32(data, 0) != MAGIC:
        return "bad magic 0x%08x (expected 0x%08x: not a mkimage image)" % (_u32(data, 0), MAGIC)
    got = crc32(bytes(data[:4]) + b"\0\0\0\0" + bytes(data[8:HEADER_SIZE]))
    if got != _u32(data, 4):
        return "header CRC 0x%08x, expected 0x%08x" % (got, _u32(data, 4))
    if data[30] != TYPE_SCRIPT:
        return "image type %d, expected %d (script)" % (data[30], TYPE_SCRIPT)
    size = _u32(data, 12)
    if len(data) - HEADER_SIZE < size:
        return "truncated: %d data bytes, the header says %d" % (len(data) - HEADER_SIZE, size)
    got = crc32(bytes(data[HEADER_SIZE:HEADER_SIZE + size]))
    if got != _u32(data, 24):
        return "data CRC 0x%08x, expected 0x%08x" % (got, _u32(data, 24))
    return None


def check_and_restore(root):
    """Check both copies under the sysroot ``root``; restore a missing or bad copy from a valid
    one. Returns plain-word lines of what was found and done (empty when all is well, or when
    the sysroot holds no boot script at all: a board that keeps it elsewhere)."""
    found = []
    for rel in COPIES:
        path = fs.join(root, rel)
        st = fs.lstat(path)
        if st is None:
            found.append((rel, path, None, "missing"))
        elif not st.is_reg() or st.size > MAX_SCRIPT:
            found.append((rel, path, None, "not a regular file of at most %d bytes" % MAX_SCRIPT))
        else:
            data = fs.read_bytes(path, MAX_SCRIPT, "reading the boot script")
            found.append((rel, path, data, problem(data)))
    good = [f for f in found if f[3] is None]
    if not good:
        bad = [f for f in found if f[3] != "missing"]
        return ["no valid boot script on the sysroot: %s" % "; ".join("/%s: %s" % (f[0], f[3]) for f in bad)] if bad else []
    out = []
    source = good[0]
    for rel, path, data, why in found:
        if why is None:
            continue
        fs.write_atomic(path, source[2])
        fs.sync_fs(path)  # in place for U-Boot (it does not replay the ext4 journal)
        out.append("the boot script copy /%s was %s; restored it from /%s" % (
            rel, "missing" if why == "missing" else "damaged (%s)" % why, source[0]))
    return out
