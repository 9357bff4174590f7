"""The static-delta format: superblock and part opcode streams (DELTA_FORMAT 1), pure functions.

Field tables: docs/delta-format.md. A delta turns a repository holding commit FROM (or nothing,
for a full delta) into one holding commit TO. On a server it is the directory
``deltas/<FROMHEX or "full">-<TOHEX>/`` with a file ``superblock`` and part files ``0``, ``1``...

Superblock: canonical CBOR map {"format", "from", "to", "commit", "parts"}; "commit" holds the
new commit object's bytes (its SHA-256 must be "to"); each part is a map {"codec", "size",
"usize", "sha256", "objects"}: compressed and uncompressed sizes, SHA-256 of the compressed
bytes, and the objects the part produces, in order, as 41-byte records (kind u8, ID 32 bytes,
size u64 big-endian; size is the content size of a regular file, the byte size of a tree or
dirmeta, 0 for a symlink).

Part (after decompression): one opcode record per object, in the order of "objects"; integers
are big-endian. Every length is checked against the superblock's signed sizes and against the
bytes left in the part before anything is allocated.
"""

import struct

from . import bspatch, cbor
from .errors import FormatError
from .objects import ID_LEN, MAX_META_BYTES, MAX_TREE_BYTES, MAX_XATTR_BYTES, to_hex

DELTA_FORMAT = 1
CODECS = ("zlib", "xz")
KIND_CODES = {"file": 1, "tree": 2, "meta": 3}
KIND_NAMES = {1: "file", 2: "tree", 3: "meta"}
RECORD = 1 + ID_LEN + 8
MAX_SUPERBLOCK_BYTES = 64 * 1024 * 1024
MAX_PARTS = 65536
MAX_PART_OBJECTS = 1 << 20
MAX_PART_USIZE = 1 << 32
MAX_HEADER_BYTES = MAX_XATTR_BYTES + 4096
MAX_FILE_SIZE = 1 << 40

# Opcodes (one letter each, shared by writer and reader).
OP_FILE = 0x46   # 'F' u32 hlen, header, content[size]
OP_PATCH = 0x44  # 'D' u32 hlen, header, base ID, u32 clen, control, diff, extra (bspatch.py)
OP_COPY = 0x43   # 'C' u32 hlen, header, base ID: the base's content under a new header
OP_LINK = 0x4C   # 'L' u32 hlen, header: a symlink (target inside the header)
OP_RAW = 0x52    # 'R' bytes[size]: a tree or dirmeta object
OP_RAWPATCH = 0x50  # 'P' base ID, u32 clen, control, diff, extra: a tree or dirmeta patched from its base
FILE_OPS = (OP_FILE, OP_PATCH, OP_COPY, OP_LINK)
META_OPS = (OP_RAW, OP_RAWPATCH)


def delta_name(from_id, to_id):
    """Directory name of a delta below ``deltas/``."""
    return "%s-%s" % (to_hex(from_id) if from_id else "full", to_hex(to_id))


# --- superblock -------------------------------------------------------------------------------
class Part:
    __slots__ = ("index", "codec", "size", "usize", "sha256", "objects")

    def __init__(self, index, codec, size, usize, sha256, objects):
        self.index = index
        self.codec = codec
        self.size = size
        self.usize = usize
        self.sha256 = sha256
        self.objects = objects  # [(kind, oid, size)]


class Superblock:
    __slots__ = ("from_id", "to_id", "commit", "parts")

    def __init__(self, from_id, to_id, commit, parts):
        self.from_id = from_id
        self.to_id = to_id
        self.commit = commit
        self.parts = parts

    def total_size(self):
        """Compressed bytes of all parts (what a pull downloads besides the superblock)."""
        return sum(p.size for p in self.parts)

    def object_bytes(self):
        """Bytes the produced objects take once stored (file contents and metadata objects)."""
        return sum(sum(o[2] for o in p.objects) for p in self.parts)


def encode_objects(objs):
    out = []
    for kind, oid, size in objs:
        if len(oid) != ID_LEN or not 0 <= size < (1 << 64):
            raise FormatError("encoding delta objects: bad record for %s" % kind)
        out.append(struct.pack(">B", KIND_CODES[kind]) + bytes(oid) + struct.pack(">Q", size))
    return b"".join(out)


def decode_objects(blob, what):
    if len(blob) % RECORD or len(blob) // RECORD > MAX_PART_OBJECTS:
        raise FormatError("%s: object list of %d bytes is not a list of %d-byte records" % (what, len(blob), RECORD))
    out = []
    for off in range(0, len(blob), RECORD):
        kind = KIND_NAMES.get(blob[off])
        if kind is None:
            raise FormatError("%s: unknown object kind %d" % (what, blob[off]))
        size = struct.unpack(">Q", blob[off + 1 + ID_LEN:off + RECORD])[0]
        limit = MAX_FILE_SIZE if kind == "file" else (MAX_TREE_BYTES if kind == "tree" else MAX_META_BYTES)
        if size > limit:
            raise FormatError("%s: %s object of %d bytes exceeds the limit of %d" % (what, kind, size, limit))
        out.append((kind, bytes(blob[off + 1:off + 1 + ID_LEN]), size))
    return out


def encode_superblock(from_id, to_id, commit, parts):
    """``parts``: [(codec, size, usize, sha256, [(kind, oid, size)])]."""
    return cbor.encode({
        "format": DELTA_FORMAT, "from": from_id, "to": to_id, "commit": commit,
        "parts": [{"codec": c, "size": s, "usize": u, "sha256": h, "objects": encode_objects(o)}
                  for c, s, u, h, o in parts],
    })


def _need(value, kind, what, field):
    if not isinstance(value, kind):
        raise FormatError("%s: field '%s' has the wrong type" % (what, field))
    return value


def parse_superblock(data, what="delta superblock"):
    """A Superblock from bytes already checked against the signed hash (bounded decoding)."""
    if len(data) > MAX_SUPERBLOCK_BYTES:
        raise FormatError("%s: %d bytes, more than the limit of %d" % (what, len(data), MAX_SUPERBLOCK_BYTES))
    value = cbor.decode(data, what, max_depth=4, max_items=8 * MAX_PARTS)
    if not isinstance(value, dict):
        raise FormatError("%s: expected a map" % what)
    for key in value:
        if key not in ("format", "from", "to", "commit", "parts"):
            raise FormatError("%s: unknown field %r" % (what, key))
    if value.get("format") != DELTA_FORMAT:
        raise FormatError("%s: format %r, expected %d" % (what, value.get("format"), DELTA_FORMAT),
                          "update the updater on this device, or generate the delta with an older format")
    from_id = value.get("from")
    to_id = _need(value.get("to"), bytes, what, "to")
    if (from_id is not None and (not isinstance(from_id, bytes) or len(from_id) != ID_LEN)) or len(to_id) != ID_LEN:
        raise FormatError("%s: 'from' and 'to' must be %d-byte checksums" % (what, ID_LEN))
    commit = _need(value.get("commit"), bytes, what, "commit")
    parts_in = _need(value.get("parts"), list, what, "parts")
    if len(parts_in) > MAX_PARTS:
        raise FormatError("%s: %d parts, more than %d" % (what, len(parts_in), MAX_PARTS))
    parts = []
    for i, p in enumerate(parts_in):
        where = "%s part %d" % (what, i)
        if not isinstance(p, dict) or len(p) != 5:
            raise FormatError("%s: expected a map of 5 fields" % where)
        codec = _need(p.get("codec"), str, where, "codec")
        if codec not in CODECS:
            raise FormatError("%s: unknown codec '%s'" % (where, codec))
        size = _need(p.get("size"), int, where, "size")
        usize = _need(p.get("usize"), int, where, "usize")
        digest = _need(p.get("sha256"), bytes, where, "sha256")
        if not 0 < size <= MAX_PART_USIZE or not 0 <= usize <= MAX_PART_USIZE or len(digest) != 32:
            raise FormatError("%s: sizes %d/%d or hash length out of range" % (where, size, usize))
        objs = decode_objects(_need(p.get("objects"), bytes, where, "objects"), where)
        if usize < len(objs):
            raise FormatError("%s: %d objects cannot come from %d bytes" % (where, len(objs), usize))
        parts.append(Part(i, codec, size, usize, digest, objs))
    return Superblock(from_id, to_id, commit, parts)


# --- part opcode streams ----------------------------------------------------------------------
def _u32(n):
    if not 0 <= n < (1 << 32):
        raise FormatError("encoding a delta op: length %d does not fit 32 bits" % n)
    return struct.pack(">I", n)


def op_file(header, content):
    return b"".join((bytes((OP_FILE,)), _u32(len(header)), header, content))


def op_patch(header, base_id, control, diff, extra):
    return b"".join((bytes((OP_PATCH,)), _u32(len(header)), header, base_id, _u32(len(control)), control, diff, extra))


def op_copy(header, base_id):
    return b"".join((bytes((OP_COPY,)), _u32(len(header)), header, base_id))


def op_link(header):
    return b"".join((bytes((OP_LINK,)), _u32(len(header)), header))


def op_raw(data):
    return bytes((OP_RAW,)) + data


def op_rawpatch(base_id, control, diff, extra):
    return b"".join((bytes((OP_RAWPATCH,)), base_id, _u32(len(control)), control, diff, extra))


class Op:
    """One decoded record. ``kind``/``oid``/``size`` come from the superblock; the payload fields
    are set by the opcode: header, base (ID), control/diff/extra (patches), data (raw metadata).
    For OP_FILE the content is not read here: the caller reads ``size`` bytes with ``read``."""

    __slots__ = ("code", "kind", "oid", "size", "header", "base", "control", "data")

    def __init__(self, code, kind, oid, size):
        self.code = code
        self.kind = kind
        self.oid = oid
        self.size = size
        self.header = None
        self.base = None
        self.control = None
        self.data = None


class PartReader:
    """Decodes a part's records from ``read(n)`` (exactly n decompressed bytes or an error).

    ``left`` counts the bytes of the part not yet read; every length is checked against it and
    against the object's signed size before anything that large is read.
    """

    def __init__(self, read, part, what):
        self._read = read
        self.part = part
        self.what = what
        self.left = part.usize
        self.index = 0

    def read(self, n):
        if n > self.left:
            raise FormatError("%s: a record needs %d more bytes, only %d left in the part" % (self.what, n, self.left))
        self.left -= n
        data = self._read(n)
        if len(data) != n:
            raise FormatError("%s: the part ended early (%d of %d bytes)" % (self.what, len(data), n))
        return data

    def _u32(self):
        return struct.unpack(">I", self.read(4))[0]

    def _header(self, where):
        n = self._u32()
        if n > MAX_HEADER_BYTES:
            raise FormatError("%s: file header of %d bytes exceeds %d" % (where, n, MAX_HEADER_BYTES))
        return self.read(n)

    def _control(self, where, new_size):
        n = self._u32()
        if n > bspatch.max_control_bytes(new_size) or n > self.left:
            raise FormatError("%s: control block of %d bytes is too long" % (where, n))
        return self.read(n)

    def next_op(self):
        """The next Op, or None after the last object (then the part must be used up exactly)."""
        if self.index >= len(self.part.objects):
            if self.left:
                raise FormatError("%s: %d bytes left after the last object" % (self.what, self.left))
            return None
        kind, oid, size = self.part.objects[self.index]
        where = "%s object %d (%s %s)" % (self.what, self.index, kind, to_hex(oid)[:12])
        self.index += 1
        code = self.read(1)[0]
        op = Op(code, kind, oid, size)
        if (kind == "file") != (code in FILE_OPS) or code not in FILE_OPS + META_OPS:
            raise FormatError("%s: opcode 0x%02x does not make a %s object" % (where, code, kind))
        if code in FILE_OPS:
            op.header = self._header(where)
        if code in (OP_PATCH, OP_COPY, OP_RAWPATCH):
            op.base = self.read(ID_LEN)
        if code in (OP_PATCH, OP_RAWPATCH):
            op.control = self._control(where, size)
        elif code == OP_FILE and size > self.left:
            raise FormatError("%s: %d content bytes, only %d left in the part" % (where, size, self.left))
        elif code == OP_RAW:
            op.data = self.read(size)
        elif code == OP_LINK and size != 0:
            raise FormatError("%s: a symlink object must have size 0, the superblock says %d" % (where, size))
        return op

    def patch_blocks(self, op, old_size):
        """Validated (tuples, diff, extra) of a patch op whose base holds ``old_size`` bytes."""
        where = "%s %s %s" % (self.what, op.kind, to_hex(op.oid)[:12])
        tuples, diff_len, extra_len = bspatch.parse_control(op.control, old_size, op.size, where)
        if diff_len + extra_len > self.left:
            raise FormatError("%s: the patch needs %d bytes, only %d left in the part"
                              % (where, diff_len + extra_len, self.left))
        return tuples, self.read(diff_len), self.read(extra_len)
