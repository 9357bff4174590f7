"""Checking out a commit as a farm of hard links into the object store.

Regular files are hard-linked from the repository (their stored inode already carries the final
mode, owner and xattrs in a bare repository); zero-size files are created fresh (a shared empty
inode would collect thousands of links); across file systems, at EMLINK, where hard links are
not permitted, or for paths listed in ``copy``, files are copied and given their metadata.
Symlinks are hard-linked from their symlink object or re-created.

Nothing is written outside DEST: DEST must be missing or an empty real directory (not a
symlink), every name is validated, and every entry is created new (never opened if it exists),
so no pre-existing symlink can be followed. Directory metadata is applied after the directory's
contents, deepest first, so read-only directories can still be filled.
"""

from . import fs
from .errors import UnsafePathError, UpdaterError
from .objects import S_IFDIR, to_hex

_COPY_ERRNOS = (fs.EXDEV, fs.EMLINK, fs.EPERM, fs.EACCES)


class Stats:
    def __init__(self):
        self.files = 0
        self.linked = 0
        self.copied = 0
        self.created_empty = 0
        self.symlinks = 0
        self.dirs = 0
        self.bytes = 0
        self.copied_bytes = 0

    def as_dict(self):
        return {"files": self.files, "linked": self.linked, "copied": self.copied,
                "created_empty": self.created_empty, "symlinks": self.symlinks, "dirs": self.dirs,
                "bytes": self.bytes, "copied_bytes": self.copied_bytes}


def prepare_dest(dest):
    """Create DEST, or accept an empty real directory; refuse anything else."""
    st = fs.lstat(dest)
    if st is None:
        parent = fs.dirname(fs.abspath(dest))
        if not fs.is_dir(parent):
            raise UpdaterError("checking out into %s: the parent directory %s does not exist" % (dest, parent))
        fs.mkdir(dest, 0o700)
        return
    if st.is_link():
        raise UnsafePathError("checking out into %s: it is a symlink; refusing to write through it" % dest,
                              "give a new directory path")
    if not st.is_dir():
        raise UpdaterError("checking out into %s: it exists and is not a directory" % dest)
    if fs.listdir(dest):
        raise UpdaterError("checking out into %s: the directory is not empty" % dest,
                           "give a new or empty directory")


def _try_link(repo, src, path, entry):
    """Hard-link the object; False where a copy must do instead (EXDEV, EMLINK, not permitted)."""
    try:
        fs.link(src, path)
        return True
    except OSError as err:
        if fs.errno_of(err) == fs.ENOENT:
            repo.verify_file(entry[1], entry[2], entry[3])  # names the missing object
        if fs.errno_of(err) not in _COPY_ERRNOS:
            raise fs.fail("linking %s to" % src, path, err)
        return False


def _place_file(repo, entry, path, force_copy, stats):
    name, oid, header, size = entry
    hdr = repo.header(header)
    src = repo.object_path(oid, "file")
    owner = repo.mode == "bare"
    stats.files += 1
    if hdr.is_link():
        stats.symlinks += 1
        if not force_copy and _try_link(repo, src, path, entry):
            stats.linked += 1
            return
        fs.symlink(hdr.target, path)
        if owner:
            fs.apply_meta(path, hdr.mode, hdr.uid, hdr.gid)
        stats.copied += 1
        return
    stats.bytes += size
    if size == 0:
        f = fs.create_exclusive(path, 0o600)
        f.close()
        fs.apply_meta(path, hdr.mode, hdr.uid, hdr.gid, hdr.xattrs, owner)
        stats.created_empty += 1
        return
    if not force_copy and _try_link(repo, src, path, entry):
        stats.linked += 1
        return
    fs.copy_file(src, path, 0o600)
    fs.apply_meta(path, hdr.mode, hdr.uid, hdr.gid, hdr.xattrs, owner)
    stats.copied += 1
    stats.copied_bytes += size


def _needs_meta(meta, as_root, umask, sgid_parent):
    """Whether a directory made by mkdir(path, mode) still needs chown/chmod/xattrs afterwards."""
    if not as_root:
        return True
    return (meta.uid != 0 or meta.gid != 0 or sgid_parent or meta.mode & 0o7000
            or meta.mode & umask or bool(meta.xattrs))


def checkout_tree(repo, tree_id, meta_id, dest, copy=(), progress=None, total=None):
    """Materialise tree ``tree_id`` into the empty directory ``dest``; returns Stats.

    ``copy``: relative directory paths (e.g. ("etc",)) whose files are copied, not linked.
    As root, directories are created with their final mode and touched again only when the
    owner, special bits, umask or xattrs require it; otherwise they are created 0700 and get
    their metadata afterwards, deepest first (so read-only directories can still be filled).
    """
    stats = Stats()
    copy_set = {}
    for path in copy:
        copy_set[path.strip("/")] = True
    owner = repo.mode == "bare"
    as_root = owner and fs.is_root()
    umask = fs.umask()
    metas = {}

    def meta_of(mid):
        meta = metas.get(mid)
        if meta is None:
            meta = repo.load_dirmeta(mid)
            metas[mid] = meta
        return meta

    later = [(dest, meta_of(meta_id))]
    stack = [(tree_id, dest, "", False, False)]
    while stack:
        tid, directory, rel, force_copy, sgid = stack.pop()
        tree = repo.load_tree(tid)
        for entry in tree.files:
            _place_file(repo, entry, directory + "/" + entry[0], force_copy, stats)
        if progress is not None:
            progress(stats.files, total)
        for name, sub_tree, sub_meta in tree.dirs:
            path = directory + "/" + name
            sub_rel = rel + "/" + name if rel else name
            meta = meta_of(sub_meta)
            fs.mkdir(path, meta.mode & 0o777 if as_root else 0o700)
            stats.dirs += 1
            if _needs_meta(meta, as_root, umask, sgid):
                later.append((path, meta))
            stack.append((sub_tree, path, sub_rel, force_copy or sub_rel in copy_set,
                          bool(meta.mode & 0o2000) or sgid))
    for path, meta in reversed(later):
        fs.apply_meta(path, meta.mode | S_IFDIR, meta.uid, meta.gid, meta.xattrs, owner)
    return stats


def checkout(repo, commit_id, dest, copy=(), progress=None):
    """Check out commit ``commit_id`` into ``dest`` (missing or an empty directory)."""
    commit = repo.load_commit(commit_id)
    prepare_dest(dest)
    try:
        return checkout_tree(repo, commit.tree, commit.meta, dest, copy, progress)
    except UpdaterError as err:
        raise type(err)("checking out %s into %s: %s" % (to_hex(commit_id)[:12], dest, err), err.hint)
