"""The repository on disk: content-addressed objects, refs, config (REPO_FORMAT 1).

Layout (docs/repository-format.md)::

    REPO/config                  INI: [repo] format = 1, mode = bare|user
    REPO/objects/XX/YYYY.KIND    object ID = XX + YYYY (64 hex), KIND in file|tree|meta|commit
    REPO/objects/XX/YYYY.sig     detached signatures of commit XXYYYY (CBOR)
    REPO/refs/heads/BRANCH       "HEX\\n" (BRANCH may contain '/')
    REPO/tmp/                    staging area; leftovers are removed before new writes
    REPO/lock                    flock lock for writers

A file object is stored as the file itself, with its final mode, owner and xattrs in bare mode,
so a checkout can hard-link it; in user mode (not root, or MicroPython) owner and xattrs live
only in the tree entries. Symlink objects are symlinks. Tree, meta and commit objects hold their
canonical CBOR bytes.
"""

from . import fs, ini, objects
from .errors import (AmbiguousError, ConfigError, FormatError, IntegrityError, NotFoundError,
                     StorageError, UnsupportedError)
from .objects import from_hex, to_hex

REPO_FORMAT = 1
MODES = ("bare", "user")
_LIMITS = {"tree": objects.MAX_TREE_BYTES, "meta": objects.MAX_META_BYTES, "commit": objects.MAX_COMMIT_BYTES}
HEX = "0123456789abcdef"


def default_mode():
    if fs.HAS_CHOWN and fs.HAS_LINK and fs.is_root():
        return "bare"
    return "user"


class Repo:
    def __init__(self, path, mode):
        self.path = path.rstrip("/") or "/"
        self.mode = mode
        self.objects_dir = fs.join(self.path, "objects")
        self.tmp_dir = fs.join(self.path, "tmp")
        self.refs_dir = fs.join(self.path, "refs", "heads")
        self._headers = {}

    # --- creation and opening -------------------------------------------------------------
    @staticmethod
    def init(path, mode=None):
        """Create a repository at ``path`` (which must be missing or empty); idempotent."""
        mode = mode or default_mode()
        if mode not in MODES:
            raise ConfigError("creating repository %s: mode must be bare or user, got '%s'" % (path, mode))
        config = fs.join(path, "config")
        if fs.exists(config):
            return Repo.open(path)
        st = fs.lstat(path)
        if st is not None:
            if not st.is_dir():
                raise ConfigError("creating repository %s: it exists and is not a directory" % path)
            if fs.listdir(path):
                raise ConfigError("creating repository %s: the directory is not empty and has no config file" % path,
                                  "choose an empty or new directory")
        fs.makedirs(path)
        for sub in ("objects", "refs", "refs/heads", "tmp"):
            fs.mkdir(fs.join(path, sub), exist_ok=True)
        objdir = fs.join(path, "objects")
        for a in HEX:
            for b in HEX:
                fs.mkdir(fs.join(objdir, a + b), exist_ok=True)
        fs.sync_fs(path)
        text = ini.dump([("repo", [("format", REPO_FORMAT), ("mode", mode)])],
                        header="updater repository (docs/repository-format.md)")
        fs.write_atomic(config, text.encode())
        return Repo(path, mode)

    @staticmethod
    def open(path):
        config = fs.join(path, "config")
        if not fs.exists(config):
            raise ConfigError("opening repository %s: not an updater repository (no config file)" % path,
                              "check the path, or create one with: updater --repo %s init" % path)
        text = fs.read_bytes(config, 65536, "reading repository config").decode("utf-8", "replace")
        parsed = ini.parse(text, config)
        parsed.only(("repo",))
        sec = parsed.section("repo")
        fmt = sec.get_int("format")
        if fmt != REPO_FORMAT:
            raise ConfigError("opening repository %s: format %d, expected %d" % (path, fmt, REPO_FORMAT),
                              "use an updater release that reads format %d" % fmt)
        mode = sec.get("mode")
        if mode not in MODES:
            raise ConfigError("%s: mode must be bare or user, got '%s'" % (config, mode))
        sec.done()
        return Repo(path, mode)

    def lock(self, wait=True, notify=None):
        return fs.FileLock(fs.join(self.path, "lock"), "repository " + self.path).acquire(wait, notify)

    def clean_tmp(self):
        """Remove leftovers of interrupted writes (call with the lock held)."""
        fs.makedirs(self.tmp_dir)
        return fs.clean_temps(self.tmp_dir)

    # --- objects --------------------------------------------------------------------------
    def object_path(self, oid, kind):
        h = to_hex(oid)
        return "%s/%s/%s.%s" % (self.objects_dir, h[:2], h[2:], kind)

    def has(self, oid, kind):
        return fs.lstat(self.object_path(oid, kind)) is not None

    def read_object(self, oid, kind):
        """The verified bytes of a tree, meta or commit object."""
        path = self.object_path(oid, kind)
        try:
            data = fs.read_bytes(path, _LIMITS[kind], "reading %s object" % kind)
        except StorageError:
            if fs.lstat(path) is None:
                raise NotFoundError("reading %s object %s: it is missing from %s" % (kind, to_hex(oid), self.path),
                                    "run updater fsck; pull again to repair the repository")
            raise
        if objects.sha256(data) != oid:
            raise IntegrityError("reading %s object %s: corrupt (its bytes hash to %s)"
                                 % (kind, to_hex(oid), to_hex(objects.sha256(data))),
                                 "run updater fsck; pull again to repair the repository")
        return data

    def load_tree(self, oid):
        return objects.parse_tree(self.read_object(oid, "tree"), "tree " + to_hex(oid))

    def load_dirmeta(self, oid):
        return objects.parse_dirmeta(self.read_object(oid, "meta"), "dirmeta " + to_hex(oid))

    def load_commit(self, oid):
        return objects.parse_commit(self.read_object(oid, "commit"), "commit " + to_hex(oid))

    def header(self, data):
        """Parsed file header, memoised: most files of a tree share a few headers."""
        hdr = self._headers.get(data)
        if hdr is None:
            hdr = objects.parse_file_header(data)
            if len(self._headers) < 4096:
                self._headers[data] = hdr
        return hdr

    def iter_objects(self):
        """(oid, kind) of every stored object (signatures excluded)."""
        for sub in fs.listdir(self.objects_dir):
            if len(sub) != 2:
                continue
            for name in fs.listdir(fs.join(self.objects_dir, sub)):
                dot = name.find(".")
                stem, kind = name[:dot], name[dot + 1 :]
                if kind in objects.KINDS and objects.is_hex(sub + stem, 64):
                    yield bytes.fromhex(sub + stem), kind

    def verify_file(self, oid, header, size=None):
        """Re-hash a stored file object against its tree entry; IntegrityError if it differs."""
        path = self.object_path(oid, "file")
        st = fs.lstat(path)
        if st is None:
            raise NotFoundError("checking file object %s: it is missing" % to_hex(oid),
                                "pull again to repair the repository")
        hdr = self.header(header)
        if hdr.is_link():
            if fs.HAS_SYMLINK:
                if not st.is_link():
                    raise IntegrityError("checking file object %s: expected a symlink" % to_hex(oid))
                got = fs.readlink(path)
                if got != hdr.target:
                    raise IntegrityError("checking symlink object %s: target is '%s', expected '%s'"
                                         % (to_hex(oid), got, hdr.target))
            digest = objects.symlink_id(header)
        else:
            if not st.is_reg():
                raise IntegrityError("checking file object %s: expected a regular file" % to_hex(oid))
            digest, got_size = fs.sha256_file(path, header)
            if size is not None and got_size != size:
                raise IntegrityError("checking file object %s: %d bytes, expected %d" % (to_hex(oid), got_size, size))
        if digest != oid:
            raise IntegrityError("checking file object %s: corrupt (content and header hash to %s)"
                                 % (to_hex(oid), to_hex(digest)), "pull again to repair the repository")
        if self.mode == "bare" and fs.HAS_CHOWN:
            self._check_stored_meta(oid, st, hdr, path)

    def _check_stored_meta(self, oid, st, hdr, path):
        want = hdr.mode if not hdr.is_link() else None
        if want is not None and st.mode != want:
            raise IntegrityError("checking file object %s: mode is 0o%o, expected 0o%o (changed through a deployment?)"
                                 % (to_hex(oid), st.mode, want), "deployments must be mounted read-only")
        if (st.uid, st.gid) != (hdr.uid, hdr.gid):
            raise IntegrityError("checking file object %s: owner is %d:%d, expected %d:%d"
                                 % (to_hex(oid), st.uid, st.gid, hdr.uid, hdr.gid))
        if not hdr.is_link() and fs.read_xattrs(path) != hdr.xattrs:
            raise IntegrityError("checking file object %s: extended attributes differ from its header" % to_hex(oid))

    # --- writing --------------------------------------------------------------------------
    def transaction(self):
        return Transaction(self)

    # --- refs -----------------------------------------------------------------------------
    def ref_path(self, branch):
        objects.check_branch(branch)
        return fs.join(self.refs_dir, branch)

    def read_ref(self, branch):
        """The commit ID a branch points at, or None."""
        path = self.ref_path(branch)
        st = fs.lstat(path)
        if st is None or not st.is_reg():
            return None
        text = fs.read_bytes(path, 200, "reading ref").decode("utf-8", "replace").strip()
        try:
            return from_hex(text, "ref %s" % branch)
        except FormatError as err:
            raise IntegrityError("reading ref %s: %s" % (branch, err), "set it again with commit or pull")

    def write_ref(self, branch, oid):
        path = self.ref_path(branch)
        fs.makedirs(fs.dirname(path))
        fs.write_atomic(path, (to_hex(oid) + "\n").encode())

    def delete_ref(self, branch):
        path = self.ref_path(branch)
        fs.remove(path, missing_ok=True)
        fs.fsync_dir(fs.dirname(path))

    def list_refs(self):
        """{branch: commit ID} of every ref."""
        out = {}
        stack = [("", self.refs_dir)]
        while stack:
            prefix, directory = stack.pop()
            if not fs.is_dir(directory):
                continue
            for name in fs.listdir(directory):
                if name.startswith(fs.TMP_PREFIX):
                    continue
                path = fs.join(directory, name)
                branch = prefix + name
                if fs.is_dir(path):
                    stack.append((branch + "/", path))
                else:
                    oid = self.read_ref(branch)
                    if oid is not None:
                        out[branch] = oid
        return out

    # --- revisions ------------------------------------------------------------------------
    def resolve(self, rev):
        """Commit ID for a branch, a full checksum or a unique prefix (4+ hex digits); 'REV^' = parent."""
        if not rev:
            raise NotFoundError("resolving revision: empty revision")
        parents = 0
        while rev.endswith("^"):
            rev = rev[:-1]
            parents += 1
        oid = self._resolve_base(rev)
        for _ in range(parents):
            parent = self.load_commit(oid).parent
            if parent is None:
                raise NotFoundError("resolving %s%s: commit %s has no parent" % (rev, "^" * parents, to_hex(oid)[:12]))
            oid = parent
        return oid

    def _resolve_base(self, rev):
        try:
            objects.check_branch(rev)
            oid = self.read_ref(rev)
            if oid is not None:
                return oid
        except FormatError:
            pass
        low = rev.lower()
        if objects.is_hex(low, 64):
            oid = bytes.fromhex(low)
            if not self.has(oid, "commit"):
                raise NotFoundError("resolving %s: no such commit in %s" % (rev, self.path))
            return oid
        if objects.is_hex(low) and len(low) >= 4:
            sub = fs.join(self.objects_dir, low[:2])
            found = []
            if fs.is_dir(sub):
                for name in fs.listdir(sub):
                    if name.endswith(".commit") and name.startswith(low[2:]):
                        found.append(low[:2] + name[: -len(".commit")])
            if len(found) == 1:
                return bytes.fromhex(found[0])
            if len(found) > 1:
                raise AmbiguousError("resolving %s: the prefix matches %d commits (%s)"
                                     % (rev, len(found), ", ".join(f[:12] for f in found[:5])),
                                     "give more hex digits")
        raise NotFoundError("resolving %s: no branch or commit of %s matches" % (rev, self.path),
                            "list branches with: updater --repo %s refs" % self.path)

    def log(self, oid, limit=None):
        """(commit ID, Commit) from ``oid`` back through its parents that are present."""
        out = []
        while oid is not None and (limit is None or len(out) < limit):
            if not self.has(oid, "commit"):
                break
            c = self.load_commit(oid)
            out.append((oid, c))
            oid = c.parent
        return out


class Transaction:
    """Objects written as temp files in REPO/tmp and made visible together by commit().

    Visible objects are always complete and durable; an interrupted transaction leaves only
    temp files, which the next writer removes (Repo.clean_tmp).
    """

    def __init__(self, repo):
        self.repo = repo
        self.staging = fs.Staging(repo.path)
        self.staged = {}
        self.count = 0
        self.bytes = 0

    def _stage(self, tmp, oid, kind):
        key = oid + kind.encode()
        if key in self.staged or self.repo.has(oid, kind):
            fs.remove(tmp)
            return False
        self.staged[key] = True
        self.staging.add(tmp, self.repo.object_path(oid, kind))
        self.count += 1
        return True

    def add_meta(self, kind, data):
        """Store a tree, meta or commit object; returns its ID."""
        oid = objects.sha256(data)
        key = oid + kind.encode()
        if key in self.staged or self.repo.has(oid, kind):
            return oid
        tmp, f = fs.open_temp(self.repo.tmp_dir, kind)
        try:
            f.write(data)
        finally:
            f.close()
        self._stage(tmp, oid, kind)
        self.bytes += len(data)
        return oid

    def _finish_file(self, tmp, header, hdr):
        bare = self.repo.mode == "bare"
        if bare:
            fs.apply_meta(tmp, hdr.mode, hdr.uid, hdr.gid, hdr.xattrs)
        else:
            fs.chmod(tmp, (hdr.mode & 0o777) | 0o600)

    def add_file_chunks(self, header, chunks, expect=None):
        """Store a regular file from an iterable of byte chunks; returns (ID, size).

        ``expect``: the ID the caller was promised (a pull); a mismatch raises IntegrityError
        and stores nothing.
        """
        hdr = self.repo.header(header)
        h = objects.file_hasher(header)
        size = [0]

        def feed():
            for chunk in chunks:
                h.update(chunk)
                size[0] += len(chunk)
                yield chunk

        tmp = fs.temp_name(self.repo.tmp_dir, "file")
        fs.write_stream(tmp, feed(), 0o600)
        oid = h.digest()
        if expect is not None and oid != expect:
            fs.remove(tmp)
            raise IntegrityError("storing file object %s: its content hashes to %s" % (to_hex(expect), to_hex(oid)))
        if self.repo.has(oid, "file") or (oid + b"file") in self.staged:
            fs.remove(tmp)
            return oid, size[0]
        self._finish_file(tmp, header, hdr)
        self._stage(tmp, oid, "file")
        self.bytes += size[0]
        return oid, size[0]

    def add_file_path(self, header, src):
        """Store a regular file read from ``src`` (hashed first; copied only if new)."""
        digest, size = fs.sha256_file(src, header)
        if self.repo.has(digest, "file") or (digest + b"file") in self.staged:
            return digest, size
        hdr = self.repo.header(header)
        tmp = fs.temp_name(self.repo.tmp_dir, "file")
        fs.copy_file(src, tmp, 0o600)
        again, _ = fs.sha256_file(tmp, header)
        if again != digest:
            fs.remove(tmp)
            raise IntegrityError("storing %s: the file changed while it was being read" % src, "commit again")
        self._finish_file(tmp, header, hdr)
        self._stage(tmp, digest, "file")
        self.bytes += size
        return digest, size

    def add_symlink(self, header):
        hdr = self.repo.header(header)
        if not hdr.is_link():
            raise FormatError("storing a symlink: the header is not a symlink header")
        oid = objects.symlink_id(header)
        if self.repo.has(oid, "file") or (oid + b"file") in self.staged:
            return oid
        if not fs.HAS_SYMLINK:
            raise UnsupportedError("storing symlink %s: this platform has no symlinks" % hdr.target)
        tmp = fs.temp_name(self.repo.tmp_dir, "link")
        fs.symlink(hdr.target, tmp)
        if self.repo.mode == "bare":
            fs.apply_meta(tmp, hdr.mode, hdr.uid, hdr.gid)
        self._stage(tmp, oid, "file")
        return oid

    def commit(self):
        """Make every staged object durable and visible; returns how many were new."""
        return self.staging.commit()

    def abort(self):
        self.staging.discard()
        self.staged = {}
