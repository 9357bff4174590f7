"""The offline bundle container (BUNDLE_FORMAT 1): a repository's files for one update in one file.

A bundle carries exactly the files a network pull would fetch (the signed summary and its
signature, the commit signature, a delta's superblock and parts), under the same relative
names, so ``updater install`` verifies it with the pull's own code (a fetcher over the bundle):
nothing in the container is trusted. Field table: docs/delta-format.md ("Bundles"). Integers
are big-endian::

    magic    8 bytes  b"UPDBNDL1"
    format   u32      1
    count    u32      number of entries (1..MAX_ENTRIES)
    entries  count x { u16 name length, name (UTF-8, a relative path), u64 offset, u64 length }
    data     the entries' bytes; offsets count from the start of the file

The index is bounded (entry count, name length, every slice inside the file, no duplicate
names) and parsed before anything else is read.
"""

import struct

from .errors import FormatError

BUNDLE_FORMAT = 1
MAGIC = b"UPDBNDL1"
MAX_ENTRIES = 65536
MAX_NAME = 512
FIXED = 16


def _check_name(name, what):
    if not name or name.startswith("/") or len(name) > MAX_NAME:
        raise FormatError("%s: entry name '%s' is not a relative path" % (what, name))
    for part in name.split("/"):
        if part in ("", ".", "..") or "\x00" in part:
            raise FormatError("%s: entry name '%s' is not a relative path" % (what, name))


def encode_index(entries):
    """Header bytes for ``entries`` [(name, length)] laid out in order right after the header."""
    names = [n.encode("utf-8") for n, _ in entries]
    size = FIXED + sum(2 + len(n) + 16 for n in names)
    out = [MAGIC, struct.pack(">II", BUNDLE_FORMAT, len(entries))]
    offset = size
    seen = {}
    for (name, length), raw in zip(entries, names):
        _check_name(name, "writing bundle")
        if name in seen:
            raise FormatError("writing bundle: entry '%s' twice" % name)
        seen[name] = True
        out.append(struct.pack(">H", len(raw)) + raw + struct.pack(">QQ", offset, length))
        offset += length
    return b"".join(out)


def header_size(head, what="bundle"):
    """Bytes of the header, from its first 16 bytes (checks magic, format and count)."""
    if len(head) < FIXED or head[:8] != MAGIC:
        raise FormatError("%s: not an updater bundle (bad magic)" % what, "give the .bundle file made by updater bundle")
    fmt, count = struct.unpack(">II", head[8:16])
    if fmt != BUNDLE_FORMAT:
        raise FormatError("%s: bundle format %d, this updater reads %d" % (what, fmt, BUNDLE_FORMAT))
    if not 0 < count <= MAX_ENTRIES:
        raise FormatError("%s: %d entries (1..%d allowed)" % (what, count, MAX_ENTRIES))
    return count


def parse_index(read_at, file_size, what="bundle"):
    """{name: (offset, length)} of a bundle; ``read_at(offset, n)`` reads its bytes."""
    count = header_size(read_at(0, FIXED), what)
    pos = FIXED
    index = {}
    for _ in range(count):
        raw_len = struct.unpack(">H", read_at(pos, 2))[0]
        if raw_len > MAX_NAME or pos + 2 + raw_len + 16 > file_size:
            raise FormatError("%s: index entry at %d runs past the file or has a name of %d bytes" % (what, pos, raw_len))
        raw = read_at(pos + 2, raw_len)
        try:
            name = raw.decode("utf-8")
        except UnicodeError:
            raise FormatError("%s: entry name at %d is not UTF-8" % (what, pos))
        _check_name(name, what)
        offset, length = struct.unpack(">QQ", read_at(pos + 2 + raw_len, 16))
        pos += 2 + raw_len + 16
        if offset > file_size or length > file_size - offset:
            raise FormatError("%s: entry '%s' (%d bytes at %d) runs past the end of the file (%d bytes)"
                              % (what, name, length, offset, file_size), "the bundle is truncated; copy it again")
        if name in index:
            raise FormatError("%s: entry '%s' appears twice" % (what, name))
        index[name] = (offset, length)
    return index
