"""Repository object formats: pure functions from values to canonical bytes and back.

Object IDs are SHA-256 digests (32 bytes; 64 hex digits in text). OBJECT_FORMAT 1, see
docs/repository-format.md for the field tables:

- file header: canonical CBOR map {"mode", "uid", "gid"[, "xattrs"][, "target"]}. A regular
  file's ID is SHA-256(header || content); a symlink's is SHA-256(header) ("target" inside).
- tree ("dirtree"): {"files": [[name, file_id, header, size], ...], "dirs": [[name, tree_id,
  meta_id], ...]}, each list sorted by the UTF-8 bytes of the names; names unique across both.
- meta ("dirmeta"): {"mode", "uid", "gid"[, "xattrs"]} of a directory.
- commit: {"tree", "meta", "parent", "timestamp", "subject", "version", "branch", "board",
  "metadata"}.
The ID of a tree, meta or commit object is SHA-256 of its bytes.
"""

import binascii
import hashlib

from . import cbor
from .errors import FormatError, UnsafePathError

OBJECT_FORMAT = 1
KINDS = ("file", "tree", "meta", "commit")
ID_LEN = 32
MAX_NAME_BYTES = 255
MAX_TARGET_BYTES = 4095
MAX_XATTR_BYTES = 65536
MAX_TREE_BYTES = 32 * 1024 * 1024
MAX_META_BYTES = 64 * 1024
MAX_COMMIT_BYTES = 1024 * 1024

S_IFMT, S_IFLNK, S_IFREG, S_IFDIR = 0o170000, 0o120000, 0o100000, 0o040000


def sha256(data):
    return hashlib.sha256(data).digest()


def to_hex(oid):
    return binascii.hexlify(oid).decode()


def from_hex(text, what="checksum"):
    if len(text) != 2 * ID_LEN:
        raise FormatError("%s '%s': expected %d hex digits, got %d" % (what, text, 2 * ID_LEN, len(text)))
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise FormatError("%s '%s': not hexadecimal" % (what, text))


def is_hex(text, length=None):
    if length is not None and len(text) != length:
        return False
    for ch in text:
        if ch not in "0123456789abcdef":
            return False
    return bool(text)


def is_int(value):
    """An integer and not a boolean (CPython counts bools as ints, MicroPython does not)."""
    return isinstance(value, int) and value is not True and value is not False


def check_name(name, where="tree"):
    """Refuse a file name that could escape its directory or is not portable text."""
    if not isinstance(name, str):
        raise UnsafePathError("%s: a file name is not text: %r" % (where, name))
    if name in ("", ".", ".."):
        raise UnsafePathError("%s: forbidden file name '%s'" % (where, name))
    if "/" in name or "\x00" in name:
        raise UnsafePathError("%s: file name %r contains '/' or NUL" % (where, name))
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise UnsafePathError("%s: file name longer than %d bytes: %s..." % (where, MAX_NAME_BYTES, name[:40]))


def check_branch(name):
    """A branch (ref) name: components of [A-Za-z0-9._-], not starting with '.', joined by '/'."""
    ok = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
    if not name or len(name) > 200:
        raise FormatError("branch name '%s': expected 1 to 200 characters" % name)
    for part in name.split("/"):
        if not part or part.startswith(".") or part.endswith(".lock"):
            raise FormatError("branch name '%s': empty component or one starting with '.'" % name,
                              "use names like qemu-arm64/stable")
        for ch in part:
            if ch not in ok:
                raise FormatError("branch name '%s': character %r not allowed" % (name, ch),
                                  "use letters, digits, '.', '_', '-' and '/'")


# --- file headers -----------------------------------------------------------------------------
class FileHeader:
    __slots__ = ("mode", "uid", "gid", "xattrs", "target")

    def __init__(self, mode, uid, gid, xattrs=None, target=None):
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.xattrs = xattrs or {}
        self.target = target

    def is_link(self):
        return self.mode & S_IFMT == S_IFLNK


def _check_ids(uid, gid, what):
    for value in (uid, gid):
        if not is_int(value) or value < 0 or value > 0xFFFFFFFF:
            raise FormatError("%s: owner id %r out of range" % (what, value))


def _check_xattrs(xattrs, what):
    total = 0
    for name in xattrs:
        value = xattrs[name]
        if not isinstance(name, bytes) or not isinstance(value, bytes) or not name or b"\x00" in name:
            raise FormatError("%s: malformed extended attribute %r" % (what, name))
        total += len(name) + len(value)
    if total > MAX_XATTR_BYTES:
        raise FormatError("%s: extended attributes larger than %d bytes" % (what, MAX_XATTR_BYTES))


_HEADER_MEMO = {}


def file_header(mode, uid, gid, xattrs=None, target=None):
    """Canonical header bytes of a regular file (target None) or a symlink."""
    plain = not xattrs and target is None and is_int(mode) and is_int(uid) and is_int(gid)
    if plain:
        memo = _HEADER_MEMO.get((mode, uid, gid))
        if memo is not None:
            return memo
    data = _file_header(mode, uid, gid, xattrs, target)
    if plain and len(_HEADER_MEMO) < 1024:
        _HEADER_MEMO[(mode, uid, gid)] = data
    return data


def _file_header(mode, uid, gid, xattrs, target):
    kind = mode & S_IFMT
    _check_ids(uid, gid, "file header")
    value = {"mode": mode, "uid": uid, "gid": gid}
    if kind == S_IFREG:
        if target is not None:
            raise FormatError("file header: a regular file has no symlink target")
        if mode & ~(S_IFMT | 0o7777):
            raise FormatError("file header: mode 0o%o has unknown bits" % mode)
    elif kind == S_IFLNK:
        if not isinstance(target, str) or not target or len(target.encode("utf-8")) > MAX_TARGET_BYTES or "\x00" in target:
            raise FormatError("file header: bad symlink target %r" % (target,))
        value["target"] = target
    else:
        raise FormatError("file header: mode 0o%o is neither a regular file nor a symlink" % mode)
    if xattrs:
        _check_xattrs(xattrs, "file header")
        value["xattrs"] = xattrs
    return cbor.encode(value)


def parse_file_header(data, what="file header"):
    value = cbor.decode(data, what, max_depth=3, max_items=4096)
    if not isinstance(value, dict):
        raise FormatError("%s: expected a map" % what)
    for key in value:
        if key not in ("mode", "uid", "gid", "xattrs", "target"):
            raise FormatError("%s: unknown field %r" % (what, key))
    mode = value.get("mode")
    if not is_int(mode):
        raise FormatError("%s: missing mode" % what)
    xattrs = value.get("xattrs") or {}
    target = value.get("target")
    # Re-building checks every rule and that the bytes were canonical.
    if file_header(mode, value.get("uid"), value.get("gid"), xattrs, target) != bytes(data):
        raise FormatError("%s: not in canonical form" % what)
    return FileHeader(mode, value["uid"], value["gid"], xattrs, target)


def file_hasher(header):
    """A sha256 object fed with ``header``; update with the content, then digest() = file ID."""
    return hashlib.sha256(header)


def symlink_id(header):
    return sha256(header)


# --- dirmeta ----------------------------------------------------------------------------------
def dirmeta(mode, uid, gid, xattrs=None):
    _check_ids(uid, gid, "directory metadata")
    if mode & S_IFMT != S_IFDIR or mode & ~(S_IFMT | 0o7777):
        raise FormatError("directory metadata: mode 0o%o is not a directory mode" % mode)
    value = {"mode": mode, "uid": uid, "gid": gid}
    if xattrs:
        _check_xattrs(xattrs, "directory metadata")
        value["xattrs"] = xattrs
    return cbor.encode(value)


def parse_dirmeta(data, what="directory metadata"):
    value = cbor.decode(data, what, max_depth=3, max_items=4096)
    if not isinstance(value, dict) or "mode" not in value:
        raise FormatError("%s: expected a map with a mode" % what)
    for key in value:
        if key not in ("mode", "uid", "gid", "xattrs"):
            raise FormatError("%s: unknown field %r" % (what, key))
    dirmeta(value["mode"], value.get("uid"), value.get("gid"), value.get("xattrs"))
    return FileHeader(value["mode"], value["uid"], value["gid"], value.get("xattrs"))


# --- trees ------------------------------------------------------------------------------------
class Tree:
    """files: [(name, file_id, header, size)], dirs: [(name, tree_id, meta_id)], both sorted."""

    __slots__ = ("files", "dirs")

    def __init__(self, files, dirs):
        self.files = files
        self.dirs = dirs

    def find(self, name):
        """("file", entry) or ("dir", entry) or (None, None)."""
        for entry in self.files:
            if entry[0] == name:
                return "file", entry
        for entry in self.dirs:
            if entry[0] == name:
                return "dir", entry
        return None, None


def _name_key(entry):
    return entry[0].encode("utf-8")


def tree(files, dirs):
    """Canonical tree bytes; ``files`` and ``dirs`` in any order (sorted here)."""
    files = sorted(files, key=_name_key)
    dirs = sorted(dirs, key=_name_key)
    seen = {}
    for entry in files + dirs:
        check_name(entry[0])
        if entry[0] in seen:
            raise FormatError("tree: the name '%s' appears twice" % entry[0])
        seen[entry[0]] = True
    return cbor.encode({
        "files": [[f[0], f[1], f[2], f[3]] for f in files],
        "dirs": [[d[0], d[1], d[2]] for d in dirs],
    })


def _arg(data, pos, major):
    """(argument, next position) of a canonical head of ``major`` at ``pos``; (None, pos) otherwise."""
    if pos >= len(data) or data[pos] >> 5 != major:
        return None, pos
    info = data[pos] & 31
    if info < 24:
        return info, pos + 1
    if info > 27:
        return None, pos
    size = (1, 2, 4, 8)[info - 24]
    end = pos + 1 + size
    if end > len(data):
        return None, pos
    value = data[pos + 1] if size == 1 else int.from_bytes(data[pos + 1 : end], "big")
    if value < (24, 0x100, 0x10000, 0x100000000)[info - 24]:
        return None, pos
    return value, end


def _string(data, pos, major):
    n, pos = _arg(data, pos, major)
    if n is None or pos + n > len(data):
        return None, pos
    return data[pos : pos + n], pos + n


def _scan_tree(data):
    """The canonical tree shape read straight from the bytes (checkout's hot path).

    Returns (files, dirs) with names as UTF-8 bytes, or None at the first byte that differs from
    the one shape a canonical tree can have; parse_tree then falls back to the generic decoder,
    which names the fault. tests/test_objects.py checks both paths agree on valid and damaged trees.
    """
    if data[:6] != b"\xa2\x64dirs":
        return None
    count, pos = _arg(data, 6, 4)
    if count is None:
        return None
    dirs = []
    for _ in range(count):
        if data[pos : pos + 1] != b"\x83":
            return None
        name, pos = _string(data, pos + 1, 3)
        if name is None or data[pos : pos + 2] != b"\x58\x20" or data[pos + 34 : pos + 36] != b"\x58\x20":
            return None
        dirs.append((name, data[pos + 2 : pos + 34], data[pos + 36 : pos + 68]))
        pos += 68
    if data[pos : pos + 6] != b"\x65files":
        return None
    count, pos = _arg(data, pos + 6, 4)
    if count is None:
        return None
    files = []
    for _ in range(count):
        if data[pos : pos + 1] != b"\x84":
            return None
        name, pos = _string(data, pos + 1, 3)
        if name is None or data[pos : pos + 2] != b"\x58\x20":
            return None
        oid = data[pos + 2 : pos + 34]
        header, pos = _string(data, pos + 34, 2)
        if header is None:
            return None
        size, pos = _arg(data, pos, 0)
        if size is None:
            return None
        files.append((name, oid, header, size))
    if pos != len(data) or len(dirs) + len(files) > 8 * 1024 * 1024:
        return None
    return files, dirs


def _generic_tree(data, what):
    value = cbor.decode(data, what, max_depth=4, max_items=8 * 1024 * 1024)
    if not isinstance(value, dict) or len(value) != 2 or "files" not in value or "dirs" not in value:
        raise FormatError("%s: expected a map with 'files' and 'dirs'" % what)
    files = value["files"]
    dirs = value["dirs"]
    if not isinstance(files, list) or not isinstance(dirs, list):
        raise FormatError("%s: 'files' and 'dirs' must be arrays" % what)
    out_files = []
    for entry in files:
        if (not isinstance(entry, list) or len(entry) != 4 or not isinstance(entry[0], str)
                or not isinstance(entry[1], bytes) or len(entry[1]) != ID_LEN
                or not isinstance(entry[2], bytes) or not is_int(entry[3]) or entry[3] < 0):
            raise FormatError("%s: malformed file entry %r" % (what, entry[:1]))
        out_files.append((entry[0].encode("utf-8"), entry[1], entry[2], entry[3]))
    out_dirs = []
    for entry in dirs:
        if (not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[0], str)
                or not isinstance(entry[1], bytes) or len(entry[1]) != ID_LEN
                or not isinstance(entry[2], bytes) or len(entry[2]) != ID_LEN):
            raise FormatError("%s: malformed directory entry %r" % (what, entry[:1]))
        out_dirs.append((entry[0].encode("utf-8"), entry[1], entry[2]))
    return out_files, out_dirs


def _check_entry_name(raw, prev, what, kind):
    try:
        name = raw.decode("utf-8")
    except UnicodeError:
        raise FormatError("%s: a %s name that is not valid UTF-8" % (what, kind))
    check_name(name, what)
    if prev is not None and raw <= prev:
        raise FormatError("%s: %s entries out of order or duplicated at '%s'" % (what, kind, name))
    return name


def parse_tree(data, what="tree", fast=True):
    """Tree from canonical bytes: names validated, entries sorted and unique, sizes bounded."""
    scanned = _scan_tree(data) if fast else None
    files, dirs = scanned if scanned is not None else _generic_tree(data, what)
    names = {}
    prev = None
    out_files = []
    for raw, oid, header, size in files:
        name = _check_entry_name(raw, prev, what, "file")
        prev = raw
        names[name] = True
        out_files.append((name, oid, header, size))
    prev = None
    out_dirs = []
    for raw, tid, mid in dirs:
        name = _check_entry_name(raw, prev, what, "directory")
        if name in names:
            raise FormatError("%s: '%s' is both a file and a directory" % (what, name))
        prev = raw
        out_dirs.append((name, tid, mid))
    return Tree(out_files, out_dirs)


# --- commits ----------------------------------------------------------------------------------
class Commit:
    __slots__ = ("tree", "meta", "parent", "timestamp", "subject", "version", "branch", "board", "metadata")

    def __init__(self, tree, meta, parent, timestamp, subject, version, branch, board, metadata):
        self.tree = tree
        self.meta = meta
        self.parent = parent
        self.timestamp = timestamp
        self.subject = subject
        self.version = version
        self.branch = branch
        self.board = board
        self.metadata = metadata


_COMMIT_FIELDS = ("tree", "meta", "parent", "timestamp", "subject", "version", "branch", "board", "metadata")


def commit(tree_id, meta_id, parent, timestamp, subject, version, branch, board="", metadata=None):
    for oid, what in ((tree_id, "tree"), (meta_id, "meta")):
        if not isinstance(oid, bytes) or len(oid) != ID_LEN:
            raise FormatError("commit: %s must be a %d-byte checksum" % (what, ID_LEN))
    if parent is not None and (not isinstance(parent, bytes) or len(parent) != ID_LEN):
        raise FormatError("commit: parent must be a %d-byte checksum or null" % ID_LEN)
    if not is_int(timestamp) or timestamp < 0:
        raise FormatError("commit: timestamp must be a non-negative integer")
    for text, what in ((subject, "subject"), (version, "version"), (board, "board")):
        if not isinstance(text, str) or len(text) > 4096:
            raise FormatError("commit: %s must be text of at most 4096 characters" % what)
    check_branch(branch)
    metadata = metadata or {}
    if not isinstance(metadata, dict):
        raise FormatError("commit: metadata must be a map")
    for key in metadata:
        if not isinstance(key, str):
            raise FormatError("commit: metadata keys must be text")
    data = cbor.encode({
        "tree": tree_id, "meta": meta_id, "parent": parent, "timestamp": timestamp,
        "subject": subject, "version": version, "branch": branch, "board": board,
        "metadata": metadata,
    })
    if len(data) > MAX_COMMIT_BYTES:
        raise FormatError("commit: larger than %d bytes" % MAX_COMMIT_BYTES)
    return data


def parse_commit(data, what="commit"):
    value = cbor.decode(data, what, max_depth=12, max_items=65536)
    if not isinstance(value, dict):
        raise FormatError("%s: expected a map" % what)
    for key in _COMMIT_FIELDS:
        if key not in value:
            raise FormatError("%s: missing field '%s' (truncated or not a commit)" % (what, key))
    for key in value:
        if key not in _COMMIT_FIELDS:
            raise FormatError("%s: unknown field %r" % (what, key))
    try:
        commit(value["tree"], value["meta"], value["parent"], value["timestamp"], value["subject"],
               value["version"], value["branch"], value["board"], value["metadata"])
    except FormatError as err:
        raise FormatError("%s: %s" % (what, err), err.hint)
    return Commit(value["tree"], value["meta"], value["parent"], value["timestamp"], value["subject"],
                  value["version"], value["branch"], value["board"], value["metadata"])


def board_of_branch(branch):
    """The board a branch is for by convention ``BOARD/CHANNEL``; "" for a one-part name."""
    return branch.split("/")[0] if "/" in branch else ""
