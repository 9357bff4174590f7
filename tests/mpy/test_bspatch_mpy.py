# heap: 320K
"""bspatch's pure path and its validation under MicroPython (no bsdiff4 there), with hand-made patches."""

from mpytest import raises, run

from updater import bspatch, delta
from updater.errors import FormatError


def tup(x, y, z):
    return bspatch.encode_int64(x) + bspatch.encode_int64(y) + bspatch.encode_int64(z)


OLD = bytes(range(256)) * 8


def test_hand_made_patch():
    # copy 100 bytes of old adding 1 to each, 5 extra bytes, skip 10 old bytes, copy 50 unchanged
    control = tup(100, 5, 10) + tup(50, 0, 0)
    diff = b"\x01" * 100 + bytes(50)
    extra = b"hello"
    want = bytes((b + 1) & 0xFF for b in OLD[:100]) + b"hello" + OLD[110:160]
    assert bspatch.patch(OLD, len(want), control, diff, extra) == want
    assert b"".join(bspatch.patch_iter(OLD, len(want), control, diff, extra, use_c=False)) == want


def test_wraparound_and_large_chunks():
    n = 3 * bspatch.CHUNK + 7
    old = bytes(n)
    diff = b"\xff" * n
    out = bspatch.patch(old, n, tup(n, 0, 0), diff, b"")
    assert out == b"\xff" * n


def test_refusals():
    cases = [
        (tup(-1, 0, 0), 0, b"", b""),
        (tup(0, -1, 0), 0, b"", b""),
        (tup(5000, 0, 0), 5000, bytes(5000), b""),      # reads past old
        (tup(10, 0, -20), 10, bytes(10), b""),           # cursor before the start
        (tup(10, 0, 1 << 62), 10, bytes(10), b""),       # cursor past the end
        (tup(10, 0, 0)[:23], 10, bytes(10), b""),       # partial tuple
        (tup(10, 0, 0), 11, bytes(10), b""),             # declared size not made
        (tup(10, 0, 0), 10, bytes(9), b""),              # diff block too short
        (tup(0, 0, 0) * 100, 0, b"", b""),               # too many tuples
    ]
    for control, size, diff, extra in cases:
        raises(FormatError, bspatch.patch, OLD, size, control, diff, extra)


def test_part_reader_bounds():
    objs = [("tree", b"t" * 32, 3)]
    part = delta.Part(0, "zlib", 1, 4, b"h" * 32, objs)
    stream = [bytes((delta.OP_RAW,)) + b"abc"]

    def read(n):
        out = stream[0][:n]
        stream[0] = stream[0][n:]
        return out

    r = delta.PartReader(read, part, "part")
    op = r.next_op()
    assert op.data == b"abc" and r.next_op() is None
    part = delta.Part(0, "zlib", 1, 3, b"h" * 32, objs)
    stream[0] = bytes((delta.OP_RAW,)) + b"abc"
    raises(FormatError, delta.PartReader(read, part, "part").next_op)


run(globals())
