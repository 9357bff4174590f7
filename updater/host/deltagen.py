"""Generating static deltas (build-server side). Format: updater/delta.py, docs/delta-format.md.

For every object of TO that FROM lacks:
- regular file: find a base in FROM by path, else by file name, else by the name before its
  first dot (libfoo.so.1.2 -> libfoo.so.1.3, and files of versioned directories such as
  /usr/lib/modules/6.1.0-1/... -> 6.1.0-2/...), with a size within +-30% (as OSTree does).
  Same content under a new header: a copy op. Otherwise bsdiff against the base (unless both
  together exceed ``max_bsdiff`` bytes or the new file is already compressed) and keep the patch
  only if it compresses smaller than the whole file; else the whole file.
- symlink: its header (a link op). Tree: bsdiff against the tree at the same path if smaller.
  Dirmeta: raw.
Ops are written in path order (similar files next to each other) into parts of at most
``part_size`` uncompressed bytes (a single larger op gets a part of its own), each compressed
as one stream, so the diff blocks of many files share one compression window.
bsdiff runs in worker processes (one per CPU by default).
"""

import hashlib
import lzma
import os
import zlib

from .. import board as board_mod
from .. import delta, fs, trees
from ..errors import ConfigError, NotFoundError, UsageError
from ..objects import to_hex

DEFAULT_PART_SIZE = 32 * 1024 * 1024
DEFAULT_MAX_BSDIFF = 64 * 1024 * 1024  # bsdiff needs about 16 bytes per byte of the old file
SIZE_SIMILARITY = 0.30
XZ_DICT_MAX = 8 * 1024 * 1024  # decoder memory on the device is about the dictionary size
COMPRESSED_MAGIC = (b"\xfd7zXZ\x00", b"BZh", b"\x28\xb5\x2f\xfd", b"\x04\x22\x4d\x18", b"\x5d\x00\x00")
NO_DIFF_SUFFIXES = (".xz", ".bz2", ".zst", ".lz4", ".lzma", ".txz", ".tbz2")


# --- codecs -------------------------------------------------------------------------------------
class Compressor:
    """Streaming compression of one part (zlib: level 9, 32 KiB window; xz: LZMA2, preset 9e)."""

    def __init__(self, codec, usize_hint):
        self.codec = codec
        if codec == "zlib":
            self.obj = zlib.compressobj(9, zlib.DEFLATED, 15, 9)
        elif codec == "xz":
            dict_size = 1 << 16
            while dict_size < usize_hint and dict_size < XZ_DICT_MAX:
                dict_size <<= 1
            filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": dict_size}]
            self.obj = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=filters)
        else:
            raise UsageError("unknown codec '%s' (known: %s)" % (codec, ", ".join(delta.CODECS)))

    def compress(self, data):
        return self.obj.compress(data)

    def flush(self):
        return self.obj.flush()


def choose_codec(codec=None, board_name=None):
    """The codec to use: --codec if given (checked against the board), else the board's best."""
    codecs = ["zlib"]
    if board_name:
        codecs = list(board_mod.load(board_name).device.codecs)
    if codec:
        if codec not in delta.CODECS:
            raise UsageError("delta: unknown codec '%s' (known: %s)" % (codec, ", ".join(delta.CODECS)))
        if board_name and codec not in codecs:
            raise ConfigError("delta: board %s cannot decompress %s (its [device] codecs: %s)"
                              % (board_name, codec, " ".join(codecs)), "use --codec zlib, or fix the board config")
        return codec
    return "xz" if "xz" in codecs else "zlib"


# --- planning -----------------------------------------------------------------------------------
def _index_commit(repo, cid):
    """({path: Entry} of files, {path: (tree_id, meta_id)} of directories; root path is "")."""
    c = repo.load_commit(cid)
    files, dirs = {}, {"": (c.tree, c.meta)}
    for e in trees.walk(repo, c.tree):
        if e.kind == "dir":
            dirs[e.path] = (e.oid, e.meta)
        else:
            files[e.path] = e
    return files, dirs


def _stem(name):
    dot = name.find(".", 1)
    return name if dot < 0 else name[:dot]


class BaseFinder:
    """Base candidates among FROM's regular files: by path, then name, then stem; size +-30%."""

    def __init__(self, repo, from_files):
        self.repo = repo
        self.by_path = {}
        self.by_name = {}
        self.by_stem = {}
        for path, e in from_files.items():
            if repo.header(e.header).is_link():
                continue
            self.by_path[path] = e
            name = path[path.rfind("/") + 1:]
            self.by_name.setdefault(name, []).append(e)
            self.by_stem.setdefault(_stem(name), []).append(e)

    def find(self, path, size):
        e = self.by_path.get(path)
        if e is not None:
            return e
        name = path[path.rfind("/") + 1:]
        for table, key in ((self.by_name, name), (self.by_stem, _stem(name))):
            best = None
            for cand in table.get(key, ()):
                if abs(cand.size - size) <= SIZE_SIMILARITY * max(size, 1):
                    if best is None or abs(cand.size - size) < abs(best.size - size) or (
                            abs(cand.size - size) == abs(best.size - size) and cand.path < best.path):
                        best = cand
            if best is not None:
                return best
        return None


def _worth_diffing(path, data):
    if path.endswith(NO_DIFF_SUFFIXES):
        return False
    for magic in COMPRESSED_MAGIC:
        if data.startswith(magic):
            return False
    return True


def _read_file(repo_path, oid):
    h = to_hex(oid)
    return fs.read_bytes("%s/objects/%s/%s.file" % (repo_path, h[:2], h[2:]), None, "reading file object")


def _estimate(data):
    return len(zlib.compress(data, 6))


def file_op(job):
    """Worker: (op bytes, method) for one regular file. ``job`` is a plain tuple (picklable)."""
    repo_path, path, oid, header, size, base_oid, base_size, max_bsdiff = job
    new = _read_file(repo_path, oid)
    if len(new) != size:
        raise NotFoundError("reading file object %s: %d bytes, the tree says %d" % (to_hex(oid), len(new), size))
    if base_oid is None or size == 0:
        return delta.op_file(header, new), "new"
    old = _read_file(repo_path, base_oid)
    if old == new:
        return delta.op_copy(header, base_oid), "copy"
    if len(old) + len(new) > max_bsdiff or not _worth_diffing(path, new):
        return delta.op_file(header, new), "new"
    import bsdiff4.core

    control, diff, extra = bsdiff4.core.diff(old, new)
    if _estimate(control + diff + extra) + len(control) // 8 < _estimate(new):
        return delta.op_patch(header, base_oid, control, diff, extra), "bsdiff"
    return delta.op_file(header, new), "new"


def _map_jobs(jobs, workers):
    if workers is None:
        workers = os.cpu_count() or 1
    if workers <= 1 or len(jobs) < 8:
        for job in jobs:
            yield file_op(job)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        for result in pool.imap(file_op, jobs, chunksize=4):
            yield result


def plan(repo, to_id, from_id=None, max_bsdiff=DEFAULT_MAX_BSDIFF):
    """(file jobs, other ops as [(kind, oid, size, op bytes)], commit bytes), in path order."""
    commit = repo.read_object(to_id, "commit")
    to_files, to_dirs = _index_commit(repo, to_id)
    have = {}
    from_dirs = {}
    finder = None
    if from_id is not None:
        from_files, from_dirs = _index_commit(repo, from_id)
        for key in trees.reachable(repo, [from_id]):
            have[key] = True
        finder = BaseFinder(repo, from_files)
    seen = {}
    jobs = []
    for path in sorted(to_files):
        e = to_files[path]
        key = e.oid + b"file"
        if key in have or key in seen:
            continue
        seen[key] = True
        if repo.header(e.header).is_link():
            jobs.append(("link", e.oid, e.header))
            continue
        base = finder.find(path, e.size) if finder else None
        jobs.append((repo.path, path, e.oid, e.header, e.size, base.oid if base else None,
                     base.size if base else 0, max_bsdiff))
    metas = []
    for path in sorted(to_dirs):
        tree_id, meta_id = to_dirs[path]
        if tree_id + b"tree" not in have and tree_id + b"tree" not in seen:
            seen[tree_id + b"tree"] = True
            data = repo.read_object(tree_id, "tree")
            op = delta.op_raw(data)
            base = from_dirs.get(path)
            if base is not None:
                old = repo.read_object(base[0], "tree")
                import bsdiff4.core

                control, diff, extra = bsdiff4.core.diff(old, data)
                patched = delta.op_rawpatch(base[0], control, diff, extra)
                if _estimate(patched) < _estimate(op):
                    op = patched
            metas.append(("tree", tree_id, len(data), op))
        if meta_id + b"meta" not in have and meta_id + b"meta" not in seen:
            seen[meta_id + b"meta"] = True
            data = repo.read_object(meta_id, "meta")
            metas.append(("meta", meta_id, len(data), delta.op_raw(data)))
    return jobs, metas, commit


# --- writing ------------------------------------------------------------------------------------
class PartWriter:
    """Ops streamed into compressed part files of a delta directory being built."""

    def __init__(self, directory, codec, part_size, usize_hint=None):
        self.directory = directory
        self.codec = codec
        self.part_size = part_size
        self.usize_hint = usize_hint or part_size
        self.parts = []
        self._open()

    def _open(self):
        self.path = fs.join(self.directory, str(len(self.parts)))
        self.f = fs.create_exclusive(self.path, 0o644)
        self.comp = Compressor(self.codec, self.usize_hint)
        self.h = hashlib.sha256()
        self.size = 0
        self.usize = 0
        self.objects = []

    def _write(self, data):
        if data:
            self.h.update(data)
            self.size += len(data)
            self.f.write(data)

    def add(self, kind, oid, size, op):
        if self.objects and self.usize + len(op) > self.part_size:
            self._close()
            self._open()
        self._write(self.comp.compress(op))
        self.usize += len(op)
        self.objects.append((kind, oid, size))

    def _close(self):
        self._write(self.comp.flush())
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        self.parts.append((self.codec, self.size, self.usize, self.h.digest(), self.objects))

    def finish(self):
        if self.objects or not self.parts:
            self._close()
        else:
            self.f.close()
            fs.remove(self.path)
        return self.parts


def generate(repo, to_id, from_id=None, codec="zlib", part_size=DEFAULT_PART_SIZE, max_bsdiff=DEFAULT_MAX_BSDIFF,
             workers=None, progress=None):
    """Write REPO/deltas/<FROM|full>-<TO>/ (replacing an older one); returns a stats dict."""
    jobs, metas, commit = plan(repo, to_id, from_id, max_bsdiff)
    name = delta.delta_name(from_id, to_id)
    top = fs.join(repo.path, "deltas")
    fs.makedirs(top)
    fs.clean_temps(top)
    tmp = fs.temp_name(top, name[:16])
    fs.mkdir(tmp)
    stats = {"new": 0, "bsdiff": 0, "copy": 0, "link": 0, "tree_patches": 0, "metadata": 0}
    try:
        estimate = sum(j[4] for j in jobs if j[0] != "link") + sum(m[2] for m in metas)
        writer = PartWriter(tmp, codec, part_size, min(part_size, estimate))
        links = [j for j in jobs if j[0] == "link"]
        regular = [j for j in jobs if j[0] != "link"]
        for _, oid, header in links:
            writer.add("file", oid, 0, delta.op_link(header))
            stats["link"] += 1
        total = len(regular) + len(metas)
        done = 0
        for job, (op, method) in zip(regular, _map_jobs(regular, workers)):
            writer.add("file", job[2], job[4], op)
            stats[method] += 1
            done += 1
            if progress is not None and done % 32 == 0:
                progress(done, total)
        for kind, oid, size, op in metas:
            writer.add(kind, oid, size, op)
            stats["tree_patches" if op[0] == delta.OP_RAWPATCH else "metadata"] += 1
            done += 1
        parts = writer.finish()
        sb = delta.encode_superblock(from_id, to_id, commit, parts)
        fs.write_atomic(fs.join(tmp, "superblock"), sb)  # also syncs tmp's entries (the parts' names)
        final = fs.join(top, name)
        if fs.exists(final):
            fs.remove_tree(final)
        fs.rename(tmp, final)
        fs.fsync_dir(top)
    except BaseException:
        fs.remove_tree(tmp)
        raise
    if progress is not None:
        progress(total, total)
    stats.update({"delta": name, "from": to_hex(from_id) if from_id else None, "to": to_hex(to_id),
                  "codec": codec, "parts": len(parts), "superblock_size": len(sb),
                  "size": len(sb) + sum(p[1] for p in parts), "usize": sum(p[2] for p in parts),
                  "objects": sum(len(p[4]) for p in parts)})
    return stats
