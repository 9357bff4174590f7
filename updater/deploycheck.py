"""Checking deployments against their commits (``updater --sysroot S fsck``).

A deployment shares inodes with the repository's objects, so a write through it would corrupt
every deployment using that object (threat T16): deployments are mounted read-only, and this
check proves they are intact. For each deployment: its commit is present; every path of the
commit's tree exists with the right type; a regular file is either the same inode as its object
(a hard link: the object's own re-hash in the repository check covers its bytes) or a copy
(zero-size files, EMLINK or cross-device fallbacks) whose content hashes to the object and
whose permission bits (and owner, in a bare repository) match; symlinks point where their
object says; directories carry their dirmeta's permission bits; nothing else is there. /etc
is the device's merged configuration and is not compared with the commit.
"""

from . import deployments, fs
from .errors import UpdaterError
from .objects import to_hex

SKIP_TOP = ("etc",)


class _Checker:
    def __init__(self, repo, report, name):
        self.repo = repo
        self.report = report
        self.name = name
        self.owner = repo.mode == "bare"
        self.metas = {}
        self.entries = 0

    def problem(self, oid, rel, text):
        self.report.add("deployment", oid, "deployment %s: /%s: %s" % (self.name, rel, text))

    def file(self, entry, path, rel):
        name, oid, header, size = entry
        self.entries += 1
        st = fs.lstat(path)
        if st is None:
            self.problem(oid, rel, "missing")
            return
        hdr = self.repo.header(header)
        obj = fs.lstat(self.repo.object_path(oid, "file"))
        same = obj is not None and obj.ino == st.ino and obj.dev == st.dev
        if hdr.is_link():
            if not st.is_link():
                self.problem(oid, rel, "expected a symlink")
            elif not same and fs.readlink(path) != hdr.target:
                self.problem(oid, rel, "symlink points to '%s', expected '%s'" % (fs.readlink(path), hdr.target))
            return
        if not st.is_reg():
            self.problem(oid, rel, "expected a regular file")
            return
        if same:
            return
        if fs.HAS_CHMOD and st.mode & 0o7777 != hdr.mode & 0o7777:
            self.problem(oid, rel, "mode 0%o, expected 0%o" % (st.mode & 0o7777, hdr.mode & 0o7777))
        if self.owner and (st.uid, st.gid) != (hdr.uid, hdr.gid):
            self.problem(oid, rel, "owner %d:%d, expected %d:%d" % (st.uid, st.gid, hdr.uid, hdr.gid))
        if st.size != size:
            self.problem(oid, rel, "%d bytes, expected %d (changed through the deployment?)" % (st.size, size))
        elif size and fs.sha256_file(path, header)[0] != oid:
            self.problem(oid, rel, "content differs from object %s (changed through the deployment?)" % to_hex(oid))

    def dir_mode(self, path, rel, meta_id, st):
        meta = self.metas.get(meta_id)
        if meta is None:
            meta = self.repo.load_dirmeta(meta_id)
            self.metas[meta_id] = meta
        if fs.HAS_CHMOD and st.mode & 0o7777 != meta.mode & 0o7777:
            self.problem(None, rel, "directory mode 0%o, expected 0%o" % (st.mode & 0o7777, meta.mode & 0o7777))

    def tree(self, tree_id, meta_id, path, rel):
        stack = [(tree_id, meta_id, path, rel)]
        while stack:
            tid, mid, directory, here = stack.pop()
            st = fs.lstat(directory)
            if st is None or not st.is_dir():
                self.problem(None, here, "missing directory" if st is None else "expected a directory")
                continue
            self.dir_mode(directory, here, mid, st)
            tree = self.repo.load_tree(tid)
            expected = {}
            for entry in tree.files:
                expected[entry[0]] = True
                self.file(entry, directory + "/" + entry[0], _rel(here, entry[0]))
            for name, sub, meta in tree.dirs:
                expected[name] = True
                if here == "" and name in SKIP_TOP:
                    continue
                stack.append((sub, meta, directory + "/" + name, _rel(here, name)))
            for name in fs.listdir(directory):
                if name not in expected:
                    self.problem(None, _rel(here, name), "not in the commit (written into the deployment?)")


def _rel(base, name):
    return base + "/" + name if base else name


def check(sysroot, report):
    """Add every deployment problem to ``report`` (an fsck.Report); returns deployments checked."""
    repo = sysroot.repo()
    names = deployments.on_disk(sysroot)
    for name in names:
        oid = deployments.commit_id(name)
        checker = _Checker(repo, report, name)
        try:
            commit = repo.load_commit(oid)
            checker.tree(commit.tree, commit.meta, sysroot.deployment_path(name), "")
        except UpdaterError as err:
            report.add("deployment", oid, "deployment %s: %s" % (name, err))
    return len(names)


def commit_roots(sysroot):
    """Commit IDs of the deployments (extra roots for fsck and prune)."""
    return [deployments.commit_id(name) for name in deployments.on_disk(sysroot)]
