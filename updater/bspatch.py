"""Applying bsdiff patches given as raw blocks, validated in Python before any C code sees them.

A patch is three blocks, exactly what ``bsdiff4.core.diff(old, new)`` returns (docs/delta-format.md):

- control: 24 bytes per tuple (x, y, z), each an int64 in bsdiff's encoding (little-endian
  magnitude in the low 63 bits, bit 63 the sign). Applying a tuple copies x bytes of old from
  the old cursor adding x bytes of the diff block to them (mod 256), then appends y bytes of the
  extra block, then moves the old cursor by z.
- diff: the sum of all x bytes; extra: the sum of all y bytes.

``parse_control`` checks every value against the sizes the caller was promised (the signed
sizes of the delta): x and y never negative; the new cursor never past the new size; the old
cursor inside [0, old size] after every step and every copied span inside old; the diff and
extra blocks used exactly; the new file exactly ``new_size`` bytes. bsdiff4's C patcher checks
only upper bounds (a negative length crashes CPython; a tiny patch can make it allocate any
declared size), so it is called only after this validation, and only as a speed-up: the pure
path below gives the same bytes and is what MicroPython runs.
"""

import sys

from .errors import FormatError

BSPATCH_FORMAT = 1
TUPLE_BYTES = 24
_MAG = (1 << 63) - 1
# bsdiff4's C code keeps sizes in C ints: beyond this the pure path is used.
_C_LIMIT = (1 << 31) - 16
_MICROPYTHON = sys.implementation.name == "micropython"
CHUNK = 64 * 1024 if not _MICROPYTHON else 8 * 1024
_ZERO = bytes(64)


def decode_int64(data, offset):
    """bsdiff's sign-magnitude little-endian int64 at ``offset``."""
    value = int.from_bytes(data[offset:offset + 8], "little")
    if value >> 63:
        return -(value & _MAG)
    return value


def encode_int64(value):
    if value < 0:
        return ((-value) | (1 << 63)).to_bytes(8, "little")
    return value.to_bytes(8, "little")


def max_control_bytes(new_size):
    """The longest control block a patch making ``new_size`` bytes may have.

    Every tuple but a few empty ones makes at least one byte; bsdiff emits well under one
    tuple per 30 bytes on real files.
    """
    return TUPLE_BYTES * (new_size + 16)


def parse_control(control, old_size, new_size, what="patch"):
    """Validated control tuples: ([(x, y, z), ...], diff_len, extra_len). FormatError otherwise."""
    n = len(control)
    if n % TUPLE_BYTES:
        raise FormatError("%s: control block of %d bytes is not a whole number of %d-byte tuples"
                          % (what, n, TUPLE_BYTES))
    if n > max_control_bytes(new_size):
        raise FormatError("%s: control block of %d bytes is too long for a %d-byte result" % (what, n, new_size))
    tuples = []
    oldpos = newpos = diff_len = extra_len = 0
    off = 0
    while off < n:
        x = decode_int64(control, off)
        y = decode_int64(control, off + 8)
        z = decode_int64(control, off + 16)
        idx = off // TUPLE_BYTES
        off += TUPLE_BYTES
        if x < 0 or y < 0:
            raise FormatError("%s: control tuple %d has a negative length (x=%d, y=%d)" % (what, idx, x, y))
        if x and oldpos + x > old_size:
            raise FormatError("%s: control tuple %d reads old bytes %d..%d past its end (%d bytes)"
                              % (what, idx, oldpos, oldpos + x, old_size))
        if newpos + x + y > new_size:
            raise FormatError("%s: control tuple %d writes past the declared size: %d bytes, expected at most %d"
                              % (what, idx, newpos + x + y, new_size))
        oldpos += x + z
        if oldpos < 0 or oldpos > old_size:
            raise FormatError("%s: control tuple %d moves the old cursor to %d, outside 0..%d"
                              % (what, idx, oldpos, old_size))
        newpos += x + y
        diff_len += x
        extra_len += y
        tuples.append((x, y, z))
    if newpos != new_size:
        raise FormatError("%s: the control block makes %d bytes, expected %d" % (what, newpos, new_size))
    return tuples, diff_len, extra_len


def _check_blocks(diff, extra, diff_len, extra_len, what):
    if len(diff) != diff_len or len(extra) != extra_len:
        raise FormatError("%s: diff and extra blocks hold %d and %d bytes, the control block uses %d and %d"
                          % (what, len(diff), len(extra), diff_len, extra_len))


def _added_loop(seg, diff, start):
    """bytes(seg[i] + diff[start + i] mod 256), byte by byte but skipping zero runs of the diff
    (most of it): MicroPython's path, where this beats its big-integer arithmetic."""
    out = bytearray(seg)
    n = len(out)
    i = 0
    while i < n:
        if i + 64 <= n and diff[start + i:start + i + 64] == _ZERO:
            i += 64
            continue
        end = n if n - i < 64 else i + 64
        while i < end:
            d = diff[start + i]
            if d:
                out[i] = (out[i] + d) & 0xFF
            i += 1
    return bytes(out)


def _added_ints(seg, diff, start):
    """bytes(seg[i] + diff[start + i] mod 256) in whole-chunk integer arithmetic (C loops on
    CPython, about 6x the loop on real binaries): the low 7 bits of every byte are summed apart
    from the top bits, so no carry crosses into the next byte."""
    n = len(seg)
    b = int.from_bytes(diff[start:start + n], "little")
    if not b:
        return bytes(seg)
    a = int.from_bytes(seg, "little")
    low = int.from_bytes(b"\x7f" * n, "little")
    high = int.from_bytes(b"\x80" * n, "little")
    return (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(n, "little")


_added = _added_loop if _MICROPYTHON else _added_ints


def patch_chunks(old, new_size, tuples, diff, extra, what="patch"):
    """The new bytes as an iterator of chunks (pure Python), from ``tuples`` and blocks that
    ``parse_control`` and ``apply_validated`` checked.

    Memory: ``old``, the blocks and one chunk of the result.
    """
    oldpos = dpos = epos = 0
    oldv = memoryview(old)
    extrav = memoryview(extra)
    for x, y, z in tuples:
        done = 0
        while done < x:
            step = x - done if x - done < CHUNK else CHUNK
            yield _added(oldv[oldpos + done:oldpos + done + step], diff, dpos + done)
            done += step
        dpos += x
        oldpos += x
        done = 0
        while done < y:
            step = y - done if y - done < CHUNK else CHUNK
            yield bytes(extrav[epos + done:epos + done + step])
            done += step
        epos += y
        oldpos += z


def _c_patcher():
    try:
        import bsdiff4.core as core
    except ImportError:
        return None
    return getattr(core, "patch", None)


_C = []


def c_available():
    if not _C:
        _C.append(_c_patcher())
    return _C[0] is not None


def apply_validated(old, new_size, control, tuples, diff, extra, what="patch", use_c=True):
    """The new bytes as chunks from ``tuples`` that ``parse_control`` returned for ``control``.

    bsdiff4's C patcher is used when present (a speed-up only: the pure path makes the same bytes).
    """
    diff_len = extra_len = 0
    for x, y, _ in tuples:
        diff_len += x
        extra_len += y
    _check_blocks(diff, extra, diff_len, extra_len, what)
    if use_c and new_size < _C_LIMIT and len(old) < _C_LIMIT and c_available():
        # Everything the C code reads was checked: lengths, cursors, block sizes, new size.
        data = _C[0](bytes(old), new_size, bytes(control), bytes(diff), bytes(extra))
        if len(data) != new_size:
            raise FormatError("%s: the patcher made %d bytes, expected %d" % (what, len(data), new_size))
        return iter((data,))
    return patch_chunks(old, new_size, tuples, diff, extra, what)


def patch_iter(old, new_size, control, diff, extra, what="patch", use_c=True):
    """Validate, then produce the new bytes as chunks."""
    tuples, _, _ = parse_control(control, len(old), new_size, what)
    return apply_validated(old, new_size, control, tuples, diff, extra, what, use_c)


def patch(old, new_size, control, diff, extra, what="patch", use_c=True):
    """The whole new bytes (validated first)."""
    return b"".join(patch_iter(old, new_size, control, diff, extra, what, use_c))
