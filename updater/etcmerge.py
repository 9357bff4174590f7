"""The /etc three-way merge that carries a device's configuration into a new deployment.

Three inputs, as OSTree has them:
- old default: /etc of the commit the merge-source deployment (the booted one) was built from,
  read from the repository;
- current: that deployment's etc directory on disk, as the device changed it;
- new default: /etc of the new commit, already copied (not linked) into the new deployment at
  ``dest``, which the merge edits in place.

Policy (``decide``, a pure function of one path's three states):
- the device did not change the path (current equals old default): the new default wins,
  including its removal;
- the device changed, added or replaced it: the local version is kept;
- the device deleted it: it stays deleted;
- a conflict is a path changed locally AND in the new default (differently): the local version
  is kept and the path is listed for ``updater status`` to show.
"Equal" compares type, content (hashed with the default's file header), permission bits, owner
(in a bare repository, where owners are real) and symlink targets; extended attributes are not
compared but copied with local files. Directories present in both are merged entry by entry; a
directory's own mode or owner changed locally is kept. Special files are not carried over and
are listed as skipped.
"""

from . import fs

FILE, LINK, DIR, OTHER = "file", "link", "dir", "other"
MAX_LISTED = 200


def decide(old, cur, new, local_changed, default_changed, local_is_new):
    """(action, conflict) for one path; kinds are FILE, LINK, DIR, OTHER or None (absent).

    action: "new" (leave the new default as it is), "local" (put the current version in),
    "delete" (remove what the new default has there), "descend" (both directories: merge inside).
    ``local_changed``: current differs from old; ``default_changed``: new differs from old;
    ``local_is_new``: current equals new (a change both sides made alike is no conflict).
    """
    if cur is None:
        if old is None:
            return "new", False
        return "delete", new is not None and default_changed
    if cur == DIR and old == DIR:
        return "descend", False
    if not local_changed:
        return "new", False
    return "local", default_changed and not local_is_new


def _kind(st):
    if st is None:
        return None
    if st.is_reg():
        return FILE
    if st.is_link():
        return LINK
    if st.is_dir():
        return DIR
    return OTHER


class Merge:
    """One merge: ``run`` fills kept, deleted, conflicts and skipped ("/etc/..." paths)."""

    def __init__(self, repo, owner):
        self.repo = repo
        self.owner = owner
        self.kept = []
        self.deleted = []
        self.conflicts = []
        self.skipped = []
        self.compared = 0
        self.root = None

    def as_dict(self):
        def cap(items):
            return items[:MAX_LISTED]

        return {"kept": cap(self.kept), "deleted": cap(self.deleted), "conflicts": cap(self.conflicts),
                "skipped": cap(self.skipped), "kept_count": len(self.kept), "deleted_count": len(self.deleted),
                "conflict_count": len(self.conflicts), "compared": self.compared}

    def run(self, old_etc, current_dir, new_etc, dest):
        """``old_etc``/``new_etc``: (tree ID, meta ID) of /etc in the old/new commit, or None."""
        self.root = fs.dirname(dest)
        if not fs.is_dir(current_dir):
            return self
        self._walk("/etc", old_etc, current_dir, new_etc, dest)
        return self

    # --- reading the three sides ------------------------------------------------------------
    def _level(self, entry):
        out = {}
        if entry is None:
            return out
        tree = self.repo.load_tree(entry[0])
        for name, oid, header, size in tree.files:
            kind = LINK if self.repo.header(header).is_link() else FILE
            out[name] = (kind, oid, header, size)
        for name, sub, meta in tree.dirs:
            out[name] = (DIR, sub, meta, None)
        return out

    def _same(self, path, st, entry):
        """True if the file or symlink at ``path`` equals the repository ``entry``."""
        self.compared += 1
        kind, oid, header, size = entry
        hdr = self.repo.header(header)
        if kind == LINK:
            return st.is_link() and fs.readlink(path) == hdr.target
        if not st.is_reg() or st.size != size:
            return False
        if fs.HAS_CHMOD and st.mode & 0o7777 != hdr.mode & 0o7777:
            return False
        if self.owner and (st.uid, st.gid) != (hdr.uid, hdr.gid):
            return False
        return fs.sha256_file(path, header)[0] == oid

    @staticmethod
    def _differs(old, new):
        if old is None or new is None:
            return (old is None) != (new is None)
        if old[0] != new[0]:
            return True
        if old[0] == DIR:
            return old[1] != new[1] or old[2] != new[2]
        return old[1] != new[1]

    # --- the walk ---------------------------------------------------------------------------
    def _walk(self, rel, old_entry, cur_dir, new_entry, dest_dir):
        olds = self._level(old_entry)
        news = self._level(new_entry)
        names = {}
        for name in olds:
            names[name] = True
        for name in news:
            names[name] = True
        cur_names = fs.listdir(cur_dir)
        for name in cur_names:
            names[name] = True
        have_cur = {}
        for name in cur_names:
            have_cur[name] = True
        for name in sorted(names):
            old, new = olds.get(name), news.get(name)
            cur_path = cur_dir + "/" + name
            st = fs.lstat(cur_path) if name in have_cur else None
            ok, ck, nk = old[0] if old else None, _kind(st), new[0] if new else None
            path = rel + "/" + name
            dest = dest_dir + "/" + name
            if ck is None:
                local_changed = ok is not None
            elif ok is None or ok != ck:
                local_changed = True
            elif ck == DIR:
                local_changed = False
            else:
                local_changed = not self._same(cur_path, st, old)
            default_changed = self._differs(old, new)
            local_is_new = False
            if local_changed and default_changed and ck is not None and ck == nk and ck in (FILE, LINK):
                local_is_new = self._same(cur_path, st, new)
            action, conflict = decide(ok, ck, nk, local_changed, default_changed, local_is_new)
            if conflict:
                self.conflicts.append(path)
            if action == "descend":
                self._walk(path, old[1:3], cur_path, new[1:3] if nk == DIR else None, dest)
                self._dir_meta(path, st, old[2], dest)
            elif action == "local":
                self._put_local(path, cur_path, st, dest, cur_dir, dest_dir)
            elif action == "delete":
                if fs.lstat(dest) is not None:
                    fs.remove_tree(dest)
                self.deleted.append(path)

    def _dir_meta(self, path, st, old_meta, dest):
        dst = fs.lstat(dest)
        if dst is None or not dst.is_dir():
            return
        meta = self.repo.load_dirmeta(old_meta)
        changed = fs.HAS_CHMOD and st.mode & 0o7777 != meta.mode & 0o7777
        if self.owner and (st.uid, st.gid) != (meta.uid, meta.gid):
            changed = True
        if changed:
            fs.apply_meta(dest, st.mode, st.uid, st.gid, None, self.owner)
            self.kept.append(path + "/")

    def _ensure_dir(self, dest_dir, cur_dir):
        """Create ``dest_dir`` (and parents inside the deployment) with the current dirs' metadata."""
        st = fs.lstat(dest_dir)
        if st is not None and st.is_dir():
            return
        parent = fs.dirname(dest_dir)
        if parent != self.root:
            self._ensure_dir(parent, fs.dirname(cur_dir))
        if st is not None:
            fs.remove_tree(dest_dir)
        fs.mkdir(dest_dir, 0o700)
        cst = fs.lstat(cur_dir)
        fs.apply_meta(dest_dir, cst.mode, cst.uid, cst.gid, None, self.owner)

    def _put_local(self, path, cur_path, st, dest, cur_dir, dest_dir):
        if _kind(st) == OTHER:
            self.skipped.append(path)
            return
        self._ensure_dir(dest_dir, cur_dir)
        if fs.lstat(dest) is not None:
            fs.remove_tree(dest)
        self._copy(cur_path, st, dest, path)
        self.kept.append(path)

    def _copy(self, src, st, dest, path):
        kind = _kind(st)
        if kind == FILE:
            fs.copy_file(src, dest, 0o600)
            xattrs = fs.read_xattrs(src) if self.owner else None
            fs.apply_meta(dest, st.mode, st.uid, st.gid, xattrs, self.owner)
        elif kind == LINK:
            fs.symlink(fs.readlink(src), dest)
            if self.owner:
                fs.apply_meta(dest, st.mode, st.uid, st.gid)
        elif kind == DIR:
            fs.mkdir(dest, 0o700)
            for name in fs.listdir(src):
                child = src + "/" + name
                cst = fs.lstat(child)
                if _kind(cst) == OTHER:
                    self.skipped.append(path + "/" + name)
                    continue
                self._copy(child, cst, dest + "/" + name, path + "/" + name)
            fs.apply_meta(dest, st.mode, st.uid, st.gid, None, self.owner)


def merge(repo, old_etc, current_dir, new_etc, dest):
    """Run the three-way merge into ``dest`` (the new deployment's etc); returns the Merge."""
    return Merge(repo, repo.mode == "bare").run(old_etc, current_dir, new_etc, dest)
