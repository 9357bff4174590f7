"""A small deterministic CBOR codec (RFC 8949) for the device core.

Encodes exactly like ``cbor2.dumps(value, canonical=True)`` for the subset updater uses, on
CPython and MicroPython alike (tested byte for byte against cbor2 on random values).

Profile (CBOR_PROFILE 1; see docs/cbor.md):
- types: unsigned and negative integers in [-2**64, 2**64 - 1], byte strings, UTF-8 text,
  arrays, maps, false, true, null. No floats, tags, undefined or indefinite lengths.
- canonical: shortest argument encoding; map keys sorted by (length of encoded key, encoded
  key bytes); keys are integers, text or bytes.
- decoding is strict and bounded: any non-canonical encoding, duplicate or unsorted key,
  trailing byte, nesting deeper than ``max_depth`` or more than ``max_items`` items raises
  FormatError. Decode only bytes that were authenticated first (their hash or signature).
"""

import struct

from .errors import FormatError

CBOR_PROFILE = 1
MAX_DEPTH = 16
MAX_ITEMS = 1 << 20

_UINT_LIMIT = 1 << 64


def _head(major, n, out):
    mt = major << 5
    if n < 24:
        out.append(bytes((mt | n,)))
    elif n < 0x100:
        out.append(bytes((mt | 24, n)))
    elif n < 0x10000:
        out.append(struct.pack(">BH", mt | 25, n))
    elif n < 0x100000000:
        out.append(struct.pack(">BI", mt | 26, n))
    elif n < _UINT_LIMIT:
        out.append(struct.pack(">BQ", mt | 27, n))
    else:
        raise FormatError("encoding CBOR: integer %d is outside the 64-bit range" % n)


def _encode(value, out, depth):
    if depth > MAX_DEPTH:
        raise FormatError("encoding CBOR: nesting deeper than %d" % MAX_DEPTH)
    if value is None:
        out.append(b"\xf6")
    elif value is True:
        out.append(b"\xf5")
    elif value is False:
        out.append(b"\xf4")
    elif isinstance(value, int):
        if value >= 0:
            _head(0, value, out)
        else:
            _head(1, -1 - value, out)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _head(2, len(value), out)
        out.append(bytes(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        _head(3, len(raw), out)
        out.append(raw)
    elif isinstance(value, (list, tuple)):
        _head(4, len(value), out)
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, dict):
        items = []
        for key in value:
            if not isinstance(key, (int, str, bytes)) or key is True or key is False:
                raise FormatError("encoding CBOR: map key %r is not an integer, text or bytes" % (key,))
            enc = []
            _encode(key, enc, depth + 1)
            kb = b"".join(enc)
            items.append((len(kb), kb, key))
        items.sort()
        _head(5, len(items), out)
        prev = None
        for _, kb, key in items:
            if kb == prev:
                raise FormatError("encoding CBOR: duplicate map key %r" % (key,))
            prev = kb
            out.append(kb)
            _encode(value[key], out, depth + 1)
    else:
        raise FormatError("encoding CBOR: values of type %s are not in the profile" % type(value).__name__)


def encode(value):
    """Canonical CBOR bytes for ``value``."""
    out = []
    _encode(value, out, 0)
    return b"".join(out)


class _Reader:
    def __init__(self, data, max_depth, max_items, what):
        self.data = data if isinstance(data, bytes) else bytes(data)
        self.size = len(self.data)
        self.pos = 0
        self.items = 0
        self.max_depth = max_depth
        self.max_items = max_items
        self.what = what

    def fail(self, why):
        raise FormatError("decoding %s: %s at byte %d" % (self.what, why, self.pos))

    def long_head(self, pos, ib):
        """(argument, new position) of a head whose additional info is 24..31."""
        info = ib & 31
        if info == 24:
            size = 1
        elif info == 25:
            size = 2
        elif info == 26:
            size = 4
        elif info == 27:
            size = 8
        else:
            self.pos = pos
            self.fail("indefinite length or reserved value (initial byte 0x%02x)" % ib)
        end = pos + 1 + size
        if end > self.size:
            self.pos = pos
            self.fail("unexpected end of data")
        n = int.from_bytes(self.data[pos + 1 : end], "big")
        if n < (24, 0x100, 0x10000, 0x100000000)[(1, 2, 4, 8).index(size)]:
            self.pos = pos
            self.fail("non-canonical (longer than needed) integer encoding")
        return n, end

    def value(self, depth):
        # Hot path for trees: short heads are decoded inline; long ones go through long_head.
        self.items += 1
        if self.items > self.max_items:
            self.fail("more than %d items" % self.max_items)
        pos = self.pos
        if pos >= self.size:
            self.fail("unexpected end of data")
        ib = self.data[pos]
        major = ib >> 5
        if ib & 31 < 24:
            n = ib & 31
            pos += 1
        elif ib & 31 == 24 and major != 7:
            if pos + 1 >= self.size:
                self.fail("unexpected end of data")
            n = self.data[pos + 1]
            if n < 24:
                self.fail("non-canonical (longer than needed) integer encoding")
            pos += 2
        else:
            if major == 7:
                self.fail("a float or simple value (not in the profile)")
            n, pos = self.long_head(pos, ib)
        if major == 2 or major == 3:
            end = pos + n
            if end > self.size:
                self.fail("a string of %d bytes runs past the end" % n)
            raw = self.data[pos:end]
            self.pos = end
            if major == 2:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeError:
                self.fail("text that is not valid UTF-8")
        self.pos = pos
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 4 or major == 5:
            if depth >= self.max_depth:
                self.fail("nesting deeper than %d" % self.max_depth)
            if major == 4:
                if n > self.size - pos:
                    self.fail("an array of %d items cannot fit" % n)
                value = self.value
                return [value(depth + 1) for _ in range(n)]
            return self.map(n, depth)
        if major == 7:
            if n == 20:
                return False
            if n == 21:
                return True
            if n == 22:
                return None
        if major == 6:
            self.fail("a tag (not in the profile)")
        self.fail("a float or simple value (not in the profile)")

    def map(self, n, depth):
        if 2 * n > self.size - self.pos:
            self.fail("a map of %d pairs cannot fit" % n)
        out = {}
        prev = None
        for _ in range(n):
            start = self.pos
            key = self.value(depth + 1)
            kb = self.data[start : self.pos]
            if not isinstance(key, (int, str, bytes)) or key is True or key is False:
                self.fail("a map key that is not an integer, text or bytes")
            if prev is not None:
                if len(kb) < len(prev) or (len(kb) == len(prev) and kb <= prev):
                    self.fail("map keys out of canonical order or duplicated")
            prev = kb
            out[key] = self.value(depth + 1)
        return out


def decode(data, what="CBOR data", max_depth=MAX_DEPTH, max_items=MAX_ITEMS):
    """Decode exactly one canonical CBOR item filling ``data``; FormatError on any fault."""
    reader = _Reader(data, max_depth, max_items, what)
    value = reader.value(0)
    if reader.pos != reader.size:
        reader.fail("%d trailing bytes" % (reader.size - reader.pos))
    return value
