# heap: 512K
"""CBOR codec under MicroPython: fixed vectors, the differential cases file, strict decoding."""

import os

from mpytest import raises, run

from updater import cbor
from updater.errors import FormatError


def unhex(s):
    return bytes.fromhex(s)


VECTORS = [
    (0, "00"), (23, "17"), (24, "1818"), (255, "18ff"), (256, "190100"), (65536, "1a00010000"),
    (2 ** 32, "1b0000000100000000"), (2 ** 64 - 1, "1bffffffffffffffff"), (-1, "20"), (-2 ** 64, "3bffffffffffffffff"),
    (b"", "40"), (b"\x01\x02", "420102"), ("", "60"), ("a", "6161"), ("\u00fc", "62c3bc"),
    ([], "80"), ([1, [2, 3]], "8201820203"), ({}, "a0"), (True, "f5"), (False, "f4"), (None, "f6"),
    ({"bb": 1, "a": 2, 1: 4, -1: 5, b"a": 6, "c": 3}, "a60104200541610661610261630362626201"),
]


def test_vectors():
    for value, hexed in VECTORS:
        assert cbor.encode(value) == unhex(hexed), (value, hexed)
        assert cbor.decode(unhex(hexed)) == value, hexed


def test_differential_cases():
    # Written by tests/test_cbor.py from cbor2.dumps(value, canonical=True): "repr<TAB>hex" lines.
    path = os.getenv("CBOR_CASES")
    if not path:
        return
    n = 0
    with open(path) as f:
        for line in f:
            text, hexed = line.rstrip("\n").split("\t")
            value = eval(text)
            want = unhex(hexed)
            assert cbor.encode(value) == want, "encode " + text
            assert cbor.decode(want) == value, "decode " + hexed
            n += 1
    assert n > 0


def test_strict_decoding():
    for bad in ("1817", "190017", "5f4100ff", "f93c00", "c100", "a2616101616101", "a2616201616101",
                "0000", "62c3", "61ff", "9b00000000000000ff", "f7", "a1800102"):
        raises(FormatError, cbor.decode, unhex(bad))


def test_depth_and_items_bounded():
    deep = b"\x81" * 40 + b"\x00"
    raises(FormatError, cbor.decode, deep)
    raises(FormatError, cbor.decode, b"\x9a\xff\xff\xff\xff")
    raises(FormatError, cbor.decode, b"\x83\x00\x00\x00", "x", 16, 2)


def test_encode_refuses_out_of_profile():
    raises(FormatError, cbor.encode, 2 ** 64)
    raises(FormatError, cbor.encode, 1.5)
    raises(FormatError, cbor.encode, {(1, 2): 3})


run(globals())
