"""bspatch: every control value checked in Python before bsdiff4's C patcher sees it; the pure path
makes the same bytes as the C one."""

import os
import random

import bsdiff4.core
import pytest

from updater import bspatch
from updater.errors import FormatError


def tup(x, y, z):
    return bspatch.encode_int64(x) + bspatch.encode_int64(y) + bspatch.encode_int64(z)


def sample_pair(seed=1, size=20000):
    rnd = random.Random(seed)
    old = bytes(rnd.getrandbits(8) for _ in range(size))
    new = bytearray(old)
    for _ in range(40):  # scattered small edits, an insertion and a deletion, like a rebuilt binary
        pos = rnd.randrange(len(new) - 4)
        new[pos:pos + 4] = bytes(rnd.getrandbits(8) for _ in range(4))
    new[5000:5000] = b"inserted bytes" * 20
    del new[12000:12300]
    return old, bytes(new)


@pytest.fixture
def c_calls(monkeypatch):
    """Record every call that reaches bsdiff4's C patcher."""
    calls = []
    real = bsdiff4.core.patch

    def spy(*args):
        calls.append(args)
        return real(*args)

    bspatch.c_available()
    monkeypatch.setattr(bspatch, "_C", [spy])
    return calls


def test_int64_encoding_matches_bsdiff4():
    for v in (0, 1, -1, 255, -256, 2 ** 40 + 3, -(2 ** 62), 2 ** 63 - 1):
        assert bspatch.encode_int64(v) == bsdiff4.core.encode_int64(v)
        assert bspatch.decode_int64(bsdiff4.core.encode_int64(v), 0) == v
    assert bspatch.decode_int64(b"\x00" * 7 + b"\x80", 0) == 0  # "-0"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pure_and_c_paths_make_the_new_file(seed, c_calls):
    old, new = sample_pair(seed)
    control, diff, extra = bsdiff4.core.diff(old, new)
    assert bspatch.patch(old, len(new), control, diff, extra, use_c=False) == new
    assert not c_calls
    assert bspatch.patch(old, len(new), control, diff, extra) == new
    assert len(c_calls) == 1
    chunks = list(bspatch.patch_iter(old, len(new), control, diff, extra, use_c=False))
    assert b"".join(chunks) == new and max(len(c) for c in chunks) <= bspatch.CHUNK


def test_both_pure_adders_agree_with_bytewise_addition():
    """The integer-arithmetic adder (CPython) and the loop (MicroPython) make the same bytes."""
    rnd = random.Random(5)
    for n in (0, 1, 7, 63, 64, 65, 1000, bspatch.CHUNK):
        seg = bytes(rnd.getrandbits(8) for _ in range(n))
        for diff in (bytes(n + 9), bytes(rnd.getrandbits(8) for _ in range(n + 9)), b"\xff" * (n + 9),
                     bytes(rnd.getrandbits(8) if rnd.random() < 0.03 else 0 for _ in range(n + 9))):
            want = bytes((a + b) & 0xFF for a, b in zip(seg, diff[9:]))
            assert bspatch._added_ints(memoryview(seg), diff, 9) == want
            assert bspatch._added_loop(memoryview(seg), diff, 9) == want


def test_empty_and_identical_files():
    for old, new in ((b"", b"abc"), (b"abc", b""), (b"same" * 100, b"same" * 100), (b"", b"")):
        control, diff, extra = bsdiff4.core.diff(old, new)
        assert bspatch.patch(old, len(new), control, diff, extra, use_c=False) == new
        assert bspatch.patch(old, len(new), control, diff, extra) == new


# Each: (why, old size, new size, control, diff length, extra length)
MALICIOUS = [
    ("negative diff length", 100, 10, tup(-5, 15, 0), 0, 15),
    ("negative extra length", 100, 10, tup(10, -1, 0) + tup(0, 1, 0), 10, 1),
    ("huge diff length", 100, 10, tup(2 ** 62, 0, 0), 10, 0),
    ("huge extra length", 100, 10, tup(0, 2 ** 62, 0), 0, 10),
    ("new size larger than the tuples make", 100, 1 << 40, tup(10, 0, 0), 10, 0),
    ("writes past the declared size", 100, 10, tup(10, 5, 0), 10, 5),
    ("reads past the end of old", 100, 50, tup(50, 0, 60) + tup(0, 0, 0) + tup(10, 0, 0), 50, 0),
    ("old cursor before the start", 100, 20, tup(10, 0, -50) + tup(10, 0, 0), 20, 0),
    ("old cursor past the end", 100, 20, tup(10, 0, 200), 10, 10),
    ("cursor past the end on the last tuple", 100, 10, tup(10, 0, 2 ** 62), 10, 0),
    ("a partial tuple", 100, 10, tup(10, 0, 0)[:20], 10, 0),
    ("more tuples than bytes", 100, 0, tup(0, 0, 0) * 40, 0, 0),
]


@pytest.mark.parametrize("why,old_size,new_size,control,dlen,elen", MALICIOUS, ids=[m[0] for m in MALICIOUS])
def test_malicious_control_blocks_never_reach_c(why, old_size, new_size, control, dlen, elen, c_calls):
    old = bytes(old_size)
    with pytest.raises(FormatError):
        bspatch.patch(old, new_size, control, bytes(max(dlen, 0)), bytes(max(elen, 0)))
    with pytest.raises(FormatError):
        bspatch.patch(old, new_size, control, bytes(max(dlen, 0)), bytes(max(elen, 0)), use_c=False)
    assert not c_calls


def test_blocks_must_be_used_exactly(c_calls):
    old, new = sample_pair()
    control, diff, extra = bsdiff4.core.diff(old, new)
    for d, e in ((diff + b"\x00", extra), (diff[:-1], extra), (diff, extra + b"x"), (diff, extra[:-1])):
        with pytest.raises(FormatError, match="blocks hold"):
            bspatch.patch(old, len(new), control, d, e)
    with pytest.raises(FormatError, match="makes"):
        bspatch.patch(old, len(new) + 1, control, diff, extra)
    assert not c_calls


def test_random_mutations_are_refused_or_agree(c_calls):
    """Mutated control blocks: either refused in Python, or both paths make the same bytes."""
    old, new = sample_pair(7, 4000)
    control, diff, extra = bsdiff4.core.diff(old, new)
    rnd = random.Random(11)
    agreed = refused = 0
    for _ in range(300):
        c = bytearray(control)
        for _ in range(rnd.randint(1, 3)):
            c[rnd.randrange(len(c))] = rnd.getrandbits(8)
        try:
            pure = bspatch.patch(old, len(new), bytes(c), diff, extra, use_c=False)
        except FormatError:
            refused += 1
            with pytest.raises(FormatError):
                bspatch.patch(old, len(new), bytes(c), diff, extra)
            continue
        assert bspatch.patch(old, len(new), bytes(c), diff, extra) == pure
        agreed += 1
    assert refused > 100 and len(c_calls) == agreed


def test_what_the_c_patcher_lets_through_is_refused_here(c_calls):
    """bsdiff4's C patcher accepts a cursor moved far outside old (it then adds zeros) and trusts the
    declared new size for its allocation; the Python checks refuse both before it runs."""
    ctrl = tup(10, 0, -100000000)
    assert len(bsdiff4.core.patch(b"x" * 64, 10, ctrl, bytes(10), b"")) == 10
    c_calls.clear()
    with pytest.raises(FormatError, match="old cursor"):
        bspatch.patch(b"x" * 64, 10, ctrl, bytes(10), b"")
    with pytest.raises(FormatError, match="makes 10 bytes"):
        bspatch.patch(b"x" * 64, (1 << 31) - 100, tup(10, 0, 0), bytes(10), b"")
    assert not c_calls


def test_large_file_patch_is_chunked():
    old = os.urandom(300 * 1024)
    new = old[:100000] + b"NEW" + old[100000:]
    control, diff, extra = bsdiff4.core.diff(old, new)
    chunks = list(bspatch.patch_iter(old, len(new), control, diff, extra, use_c=False))
    assert b"".join(chunks) == new and len(chunks) > 3
