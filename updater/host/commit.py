"""Recording a directory or a tar archive as a commit (build-server side).

Sources: a directory (walked without following symlinks) or a tar archive (.tar, .tar.gz,
.tgz, .tar.xz, .tar.bz2, .tar.zst), keeping regular files, symlinks, directories, modes,
numeric owners and xattrs (tar: pax SCHILY.xattr.* and LIBARCHIVE.xattr.*). Device nodes,
FIFOs and sockets are refused with their path named, or skipped with ``skip_special``.
Names are validated per component: absolute paths and '..' are refused.
"""

import base64
import os
import stat
import tarfile
import time

from .. import fs, objects
from ..errors import FormatError, StorageError, UnsafePathError, UpdaterError

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tar.zst", ".tzst")
DEFAULT_DIR_MODE = stat.S_IFDIR | 0o755


class DirNode:
    __slots__ = ("meta", "files", "dirs")

    def __init__(self):
        self.meta = None
        self.files = {}
        self.dirs = {}


class TreeBuilder:
    """Collects entries by path, then writes trees and dirmetas bottom-up into a transaction."""

    def __init__(self, tx):
        self.tx = tx
        self.root = DirNode()
        self.count = 0

    def _parent(self, parts, where):
        node = self.root
        for part in parts[:-1]:
            objects.check_name(part, where)
            if part in node.files:
                raise FormatError("%s: '%s' is a file but is used as a directory" % (where, part))
            child = node.dirs.get(part)
            if child is None:
                child = DirNode()
                node.dirs[part] = child
            node = child
        objects.check_name(parts[-1], where)
        return node

    def set_dir(self, parts, meta):
        if not parts:
            self.root.meta = meta
            return
        parent = self._parent(parts, "/" + "/".join(parts))
        parent.files.pop(parts[-1], None)
        node = parent.dirs.get(parts[-1])
        if node is None:
            node = DirNode()
            parent.dirs[parts[-1]] = node
        node.meta = meta

    def set_file(self, parts, oid, header, size):
        where = "/" + "/".join(parts)
        if not parts:
            raise FormatError("%s: the root must be a directory" % where)
        parent = self._parent(parts, where)
        if parts[-1] in parent.dirs:
            raise FormatError("%s: both a directory and a file" % where)
        parent.files[parts[-1]] = (oid, header, size)
        self.count += 1

    def lookup_file(self, parts):
        node = self.root
        for part in parts[:-1]:
            node = node.dirs.get(part)
            if node is None:
                return None
        return node.files.get(parts[-1]) if parts else None

    def finish(self):
        """(tree ID, meta ID) of the root."""
        return self._write(self.root)

    def _write(self, node):
        dirs = []
        for name in node.dirs:
            tid, mid = self._write(node.dirs[name])
            dirs.append((name, tid, mid))
        files = [(name,) + node.files[name] for name in node.files]
        tid = self.tx.add_meta("tree", objects.tree(files, dirs))
        meta = node.meta or objects.dirmeta(DEFAULT_DIR_MODE, 0, 0)
        mid = self.tx.add_meta("meta", meta)
        return tid, mid


def split_member(name):
    """Path components of a tar member name; refuses absolute paths and '..'."""
    if name.startswith("/"):
        raise UnsafePathError("tar member '%s': absolute paths are refused" % name)
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise UnsafePathError("tar member '%s': '..' is refused" % name)
        objects.check_name(part, "tar member '%s'" % name)
        parts.append(part)
    return parts


def _special_error(path, kind):
    return UnsafePathError("committing %s: %s are not stored in commits" % (path, kind),
                           "remove it from the source, or pass --skip-special to leave such files out")


def _kind_name(mode):
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device nodes"
    if stat.S_ISFIFO(mode):
        return "FIFOs"
    if stat.S_ISSOCK(mode):
        return "sockets"
    return "files of this type"


def ingest_directory(builder, source, skip_special=False, warn=None, progress=None):
    st = os.lstat(source)
    builder.set_dir([], objects.dirmeta(stat.S_IFDIR | stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                                        fs.read_xattrs(source)))
    stack = [(source, [])]
    tx = builder.tx
    while stack:
        directory, parts = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as err:
            raise fs.fail("reading directory", directory, err)
        for entry in entries:
            path = entry.path
            sub = parts + [entry.name]
            try:
                entry.name.encode("utf-8")
            except UnicodeError:
                raise UnsafePathError("committing %r: file names must be valid UTF-8" % path)
            try:
                est = entry.stat(follow_symlinks=False)
            except OSError as err:
                raise fs.fail("inspecting", path, err)
            mode = est.st_mode
            if stat.S_ISDIR(mode):
                builder.set_dir(sub, objects.dirmeta(stat.S_IFDIR | stat.S_IMODE(mode), est.st_uid, est.st_gid,
                                                     fs.read_xattrs(path)))
                stack.append((path, sub))
            elif stat.S_ISREG(mode):
                header = objects.file_header(stat.S_IFREG | stat.S_IMODE(mode), est.st_uid, est.st_gid,
                                             fs.read_xattrs(path))
                oid, size = tx.add_file_path(header, path)
                builder.set_file(sub, oid, header, size)
            elif stat.S_ISLNK(mode):
                header = objects.file_header(stat.S_IFLNK | 0o777, est.st_uid, est.st_gid,
                                             target=fs.readlink(path))
                builder.set_file(sub, tx.add_symlink(header), header, 0)
            elif skip_special:
                if warn:
                    warn("skipping %s (%s)" % (path, _kind_name(mode)))
            else:
                raise _special_error(path, _kind_name(mode))
            if progress is not None and builder.count % 256 == 0:
                progress(builder.count, None)


def _tar_xattrs(info):
    out = {}
    for key, value in info.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            out[key[len("SCHILY.xattr."):].encode("utf-8", "surrogateescape")] = value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            from urllib.parse import unquote_to_bytes

            name = unquote_to_bytes(key[len("LIBARCHIVE.xattr."):])
            out[name] = base64.b64decode(value.encode("ascii", "surrogateescape") + b"==")
    return out


class _TarInfo(tarfile.TarInfo):
    """Notes when the end-of-archive marker (a zero block) is reached: tarfile silently treats
    a truncation at a member boundary as the end, which would commit a partial tree."""

    @classmethod
    def fromtarfile(cls, tar):
        try:
            return super().fromtarfile(tar)
        except tarfile.EOFHeaderError:
            tar.updater_saw_end = True
            raise


def open_tar(path):
    """A streaming TarFile for any supported compression."""
    try:
        raw = open(path, "rb")
    except OSError as err:
        raise fs.fail("opening archive", path, err)
    try:
        if path.endswith((".tar.zst", ".tzst")):
            import zstandard

            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            return tarfile.open(fileobj=reader, mode="r|", tarinfo=_TarInfo), raw
        return tarfile.open(fileobj=raw, mode="r|*", tarinfo=_TarInfo), raw
    except (tarfile.TarError, OSError) as err:
        raw.close()
        raise FormatError("reading archive %s: %s" % (path, err))


def ingest_tar(builder, source, skip_special=False, warn=None, progress=None):
    tar, raw = open_tar(source)
    tx = builder.tx
    try:
        for info in tar:
            parts = split_member(info.name)
            where = "%s:%s" % (source, info.name)
            if info.isdir():
                builder.set_dir(parts, objects.dirmeta(stat.S_IFDIR | (info.mode & 0o7777), info.uid, info.gid,
                                                       _tar_xattrs(info)))
            elif info.isreg():
                header = objects.file_header(stat.S_IFREG | (info.mode & 0o7777), info.uid, info.gid, _tar_xattrs(info))
                f = tar.extractfile(info)

                def chunks(f=f):
                    while True:
                        block = f.read(fs.CHUNK)
                        if not block:
                            return
                        yield block

                oid, size = tx.add_file_chunks(header, chunks())
                if size != info.size:
                    raise FormatError("%s: archive truncated (%d of %d bytes)" % (where, size, info.size))
                builder.set_file(parts, oid, header, size)
            elif info.islnk():
                target = builder.lookup_file(split_member(info.linkname))
                if target is None:
                    raise FormatError("%s: hard link to '%s', which comes later or is missing" % (where, info.linkname))
                builder.set_file(parts, *target)
            elif info.issym():
                header = objects.file_header(stat.S_IFLNK | 0o777, info.uid, info.gid, target=info.linkname)
                builder.set_file(parts, tx.add_symlink(header), header, 0)
            elif skip_special:
                if warn:
                    warn("skipping %s (special file)" % where)
            else:
                kind = "device nodes" if (info.ischr() or info.isblk()) else "FIFOs" if info.isfifo() else "special files"
                raise _special_error(where, kind)
            if progress is not None and builder.count % 256 == 0:
                progress(builder.count, None)
        if not getattr(tar, "updater_saw_end", False):
            raise FormatError("reading archive %s: it ends without the end-of-archive marker (truncated)" % source,
                              "copy or download the archive again")
    except (tarfile.TarError, EOFError) as err:
        raise FormatError("reading archive %s: %s (truncated or corrupt?)" % (source, err))
    except OSError as err:
        raise StorageError("reading archive %s: %s" % (source, err))
    finally:
        raw.close()


def commit_source(repo, source, branch, subject="", version="", board=None, timestamp=None, metadata=None,
                  skip_special=False, warn=None, progress=None, parent="auto"):
    """Record ``source`` on ``branch``; returns (commit ID, stats dict). Call with the repo locked."""
    objects.check_branch(branch)
    st = fs.lstat(source)
    if st is None:
        raise UpdaterError("committing %s: no such file or directory" % source, "check the SOURCE path")
    is_tar = not st.is_dir()
    if is_tar and not source.endswith(TAR_SUFFIXES):
        raise FormatError("committing %s: not a directory or a tar archive (%s)" % (source, ", ".join(TAR_SUFFIXES)))
    repo.clean_tmp()
    tx = repo.transaction()
    builder = TreeBuilder(tx)
    try:
        if is_tar:
            ingest_tar(builder, source, skip_special, warn, progress)
        else:
            ingest_directory(builder, source, skip_special, warn, progress)
        tree_id, meta_id = builder.finish()
        new_objects = tx.commit()
    except BaseException:
        tx.abort()
        raise
    if parent == "auto":
        parent = repo.read_ref(branch)
    if timestamp is None:
        env = os.environ.get("SOURCE_DATE_EPOCH")
        timestamp = int(env) if env and env.isdigit() else int(time.time())
    if board is None:
        board = objects.board_of_branch(branch)
    data = objects.commit(tree_id, meta_id, parent, timestamp, subject, version, branch, board, metadata or {})
    ctx = repo.transaction()
    cid = ctx.add_meta("commit", data)
    ctx.commit()
    repo.write_ref(branch, cid)
    return cid, {"files": builder.count, "new_objects": new_objects + 1, "bytes_written": tx.bytes}
