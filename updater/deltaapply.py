"""Applying a static delta to a repository (device side; format in updater/delta.py).

Order of checks for each part: its size and SHA-256 against the superblock (itself checked
against the signed summary) BEFORE a byte is decompressed or parsed; decompression streams,
never producing more than the part's declared uncompressed size (decompression bombs); every
record's lengths are checked against the signed object sizes (updater.delta.PartReader) and
every patch's control block in Python (updater.bspatch) before patching; every produced object
is re-hashed and stored only if its ID is the one the superblock names (Transaction expect=).
Objects of a part become visible together when the part is done; a failed part leaves nothing.

Decompression: zlib on CPython, ``deflate.DeflateIO`` on MicroPython; xz only where CPython's
lzma is present (never on MicroPython: generate zlib deltas for such boards).
"""

from . import bspatch, delta, fs, objects
from .errors import FormatError, IntegrityError, NotFoundError, UnsupportedError
from .objects import to_hex

IN_CHUNK = 32 * 1024
OUT_CHUNK = 64 * 1024 if not fs.MICROPYTHON else 16 * 1024
XZ_MEMLIMIT = 128 * 1024 * 1024


class _Inflater:
    """``read(n)``: exactly n decompressed bytes of a compressed file (FormatError otherwise)."""

    def __init__(self, f, codec, what):
        self.f = f
        self.what = what
        self.eof_in = False
        self.tail = b""
        self.mpy = None
        self.obj = None
        self.codec = codec
        self.errors = (ValueError, EOFError, OSError)  # what a corrupt stream raises, with the codec's own
        if codec == "zlib":
            try:
                import zlib
                self.obj = zlib.decompressobj()
                self.errors += (zlib.error,)
            except ImportError:
                import deflate
                self.mpy = deflate.DeflateIO(f, deflate.ZLIB)
        elif codec == "xz":
            try:
                import lzma
            except ImportError:
                raise UnsupportedError("%s: this device cannot decompress xz" % what,
                                       "generate deltas for this board with --codec zlib")
            self.obj = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT)
            self.errors += (lzma.LZMAError,)
        else:
            raise FormatError("%s: unknown codec '%s'" % (what, codec))

    def _input(self):
        data = self.f.read(IN_CHUNK)
        if not data:
            self.eof_in = True
        return data

    def _produce(self, need):
        if self.mpy is not None:
            try:
                return self.mpy.read(need)
            except OSError:
                raise FormatError("%s: corrupt zlib stream" % self.what)
        try:
            if self.codec == "zlib":
                data = self.tail if self.tail else self._input()
                out = self.obj.decompress(data, need)
                self.tail = self.obj.unconsumed_tail
                if not out and not data and not self.tail:
                    return b""
                return out
            if self.obj.eof:
                return b""
            data = self._input() if self.obj.needs_input else b""
            out = self.obj.decompress(data, need)
            if not out and not data and self.obj.needs_input:
                return b""
            return out
        except self.errors as err:
            raise FormatError("%s: corrupt %s stream: %s" % (self.what, self.codec, err))

    def read(self, n):
        parts = []
        need = n
        stalls = 0
        while need > 0:
            out = self._produce(need)
            if out:
                parts.append(out)
                need -= len(out)
                stalls = 0
            else:
                stalls += 1
                if self.eof_in or stalls > 2 or self.mpy is not None:
                    raise FormatError("%s: the compressed stream ended %d bytes early" % (self.what, need))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def finish(self):
        """The stream must end exactly here (no further output, no trailing input)."""
        if self.mpy is not None:
            if self._produce(1):
                raise FormatError("%s: more data than the superblock declares" % self.what)
            return
        extra = self._produce(1)
        while not extra and not self.obj.eof and not self.eof_in:
            extra = self._produce(1)
        if extra or not self.obj.eof or self.tail or self.obj.unused_data or self.f.read(1):
            raise FormatError("%s: more data than the superblock declares, or a stream that does not end"
                              % self.what)


def check_part_file(path, part, what):
    """The part file's size and SHA-256 must match the superblock (before any parsing)."""
    st = fs.lstat(path)
    if st is None:
        raise NotFoundError("%s: the downloaded part is missing (%s)" % (what, path))
    if st.size != part.size:
        raise IntegrityError("%s: %d bytes, the superblock says %d" % (what, st.size, part.size),
                             "pull again; a truncated part is downloaded again")
    digest, _ = fs.sha256_file(path)
    if digest != part.sha256:
        raise IntegrityError("%s: SHA-256 %s, the superblock says %s (tampered or the wrong part)"
                             % (what, to_hex(digest), to_hex(part.sha256)), "pull again from a trusted server")


def _chunks(read, size):
    left = size
    while left > 0:
        n = left if left < OUT_CHUNK else OUT_CHUNK
        yield read(n)
        left -= n


def _file_chunks(path, size):
    f = fs.open_read(path)
    try:
        left = size
        while left > 0:
            data = f.read(OUT_CHUNK if left > OUT_CHUNK else left)
            if not data:
                raise IntegrityError("reading base object %s: it ended early" % path)
            left -= len(data)
            yield data
    finally:
        f.close()


def _base_file(repo, oid, what):
    path = repo.object_path(oid, "file")
    st = fs.lstat(path)
    if st is None or not st.is_reg():
        raise NotFoundError("%s: base object %s is not in the repository" % (what, to_hex(oid)),
                            "the device lacks the delta's base commit; a full delta or object pull repairs it")
    return path, st.size


def _apply_op(repo, tx, reader, op, use_c):
    what = "%s %s %s" % (reader.what, op.kind, to_hex(op.oid)[:12])
    if op.code in delta.FILE_OPS:
        hdr = repo.header(op.header)
        if hdr.is_link() != (op.code == delta.OP_LINK):
            raise FormatError("%s: the header does not match opcode 0x%02x" % (what, op.code))
    if op.code == delta.OP_FILE:
        tx.add_file_chunks(op.header, _chunks(reader.read, op.size), expect=op.oid)
    elif op.code == delta.OP_LINK:
        if objects.symlink_id(op.header) != op.oid:
            raise IntegrityError("%s: the symlink header hashes to %s" % (what, to_hex(objects.symlink_id(op.header))))
        tx.add_symlink(op.header)
    elif op.code == delta.OP_COPY:
        path, size = _base_file(repo, op.base, what)
        if size != op.size:
            raise IntegrityError("%s: base object holds %d bytes, the superblock says %d" % (what, size, op.size))
        tx.add_file_chunks(op.header, _file_chunks(path, size), expect=op.oid)
    elif op.code == delta.OP_PATCH:
        path, size = _base_file(repo, op.base, what)
        old = fs.read_bytes(path, size, "reading base object")
        tuples, diff, extra = reader.patch_blocks(op, len(old))
        chunks = bspatch.apply_validated(old, op.size, op.control, tuples, diff, extra, what, use_c)
        tx.add_file_chunks(op.header, chunks, expect=op.oid)
    else:
        if op.code == delta.OP_RAW:
            data = op.data
        else:
            if not repo.has(op.base, op.kind):
                raise NotFoundError("%s: base %s %s is not in the repository" % (what, op.kind, to_hex(op.base)))
            old = repo.read_object(op.base, op.kind)
            tuples, diff, extra = reader.patch_blocks(op, len(old))
            data = b"".join(bspatch.apply_validated(old, op.size, op.control, tuples, diff, extra, what, use_c))
        if objects.sha256(data) != op.oid:
            raise IntegrityError("%s: the object hashes to %s" % (what, to_hex(objects.sha256(data))))
        tx.add_meta(op.kind, data)


def apply_part(repo, path, part, what=None, use_c=True, checked=False):
    """Check, decompress and apply one downloaded part; returns how many objects became new.

    ``checked``: the caller has just run ``check_part_file`` on ``path`` (a pull does, to decide
    whether to download it again), so it is not hashed a second time."""
    what = what or "delta part %d" % part.index
    if not checked:
        check_part_file(path, part, what)
    f = fs.open_read(path)
    tx = repo.transaction()
    try:
        inflater = _Inflater(f, part.codec, what)
        reader = delta.PartReader(inflater.read, part, what)
        while True:
            op = reader.next_op()
            if op is None:
                break
            _apply_op(repo, tx, reader, op, use_c)
        inflater.finish()
        return tx.commit()
    except BaseException:
        tx.abort()
        raise
    finally:
        f.close()


def check_superblock(sb, from_id, to_id, what="delta superblock"):
    """The superblock must be the delta we asked for, and carry the commit it names."""
    if sb.from_id != from_id or sb.to_id != to_id:
        raise IntegrityError("%s: it is for %s -> %s, expected %s -> %s"
                             % (what, to_hex(sb.from_id)[:12] if sb.from_id else "full", to_hex(sb.to_id)[:12],
                                to_hex(from_id)[:12] if from_id else "full", to_hex(to_id)[:12]),
                             "the server mixed up deltas; re-publish")
    if objects.sha256(sb.commit) != to_id:
        raise IntegrityError("%s: the commit it carries hashes to %s, expected %s"
                             % (what, to_hex(objects.sha256(sb.commit)), to_hex(to_id)))
    return objects.parse_commit(sb.commit, "commit " + to_hex(to_id))


def read_superblock(data, from_id, to_id, what="delta superblock"):
    """(Superblock, Commit) from bytes already checked against the signed hash and size."""
    try:
        sb = delta.parse_superblock(data, what)
    except FormatError as err:
        raise FormatError(str(err), "the server holds a delta this updater cannot read")
    return sb, check_superblock(sb, from_id, to_id, what)

