"""Pulling the configured branch into the device repository, over a fetcher (HTTP, file://, bundle).

Order (each step only after the previous one verified):
1. the sysroot lock; leftovers of interrupted writes removed (partial downloads are kept);
2. ``summary`` and its signature fetched (bounded) and checked by ``trust.check_summary``:
   signature over the exact bytes before decoding, expiry, no replay (floors saved durably);
3. the target commit's signature (``objects/XX/YYYY.sig``) verified;
4. a static delta from a commit the repository has (else the full delta): superblock checked
   against the signed size and hash, then its from/to and commit, then the commit against the
   summary, branch and board (T5); free space (parts + objects + [deploy] reserve) checked before
   anything is written; parts downloaded into the sysroot tmp directory as pull/<SHA-256>.part with
   ``Range`` (an interrupted pull resumes there), each hash-checked, then applied
   (updater.deltaapply: every object re-hashed);
5. objects still missing (no delta, a failed delta, a pruned base) fetched one by one
   (updater.objpull), each verified against its ID;
6. the commit object, its signature, and LAST the branch ref written.
A failure leaves the repository consistent: objects are content-addressed and only become
reachable when the ref moves.
"""

from . import bundle, deltaapply, fetch, fs, objects, objpull, signature, summary, trust
from .errors import ConfigError, FetchError, FormatError, IntegrityError, NotFoundError, TrustError, UnsupportedError
from .objects import to_hex

PULL_FORMAT = 1
PULL_DIR = "pull"
DEFAULT_DEADLINE_MS = 6 * 3600 * 1000
# Failures of a delta after which the pull continues with single objects.
DELTA_FALLBACK_ERRORS = (FetchError, FormatError, IntegrityError, NotFoundError, UnsupportedError)


class Progress:
    """Adds up bytes over the phases of a pull and reports ``progress(done, total)``."""

    def __init__(self, fn):
        self.fn = fn
        self.done = 0
        self.total = 0

    def add_total(self, n):
        self.total += n
        self.report()

    def add(self, n):
        self.done += n
        self.report()

    def report(self):
        if self.fn is not None:
            self.fn(self.done, self.total if self.total >= self.done else None)

    def counted(self, chunks):
        """Pass ``chunks`` through, counting each once the consumer has taken it (written it)."""
        for chunk in chunks:
            yield chunk
            self.add(len(chunk))


class _Pull:
    def __init__(self, sysroot, fetcher, progress, branch, have, now, allow_objects, use_c, use_deltas=True):
        self.sysroot = sysroot
        self.fetcher = fetcher
        self.progress = Progress(progress)
        self.config = sysroot.config()
        self.branch = branch or self.config.branch
        self.have = have
        self.now = now
        self.allow_objects = allow_objects
        self.use_c = use_c
        self.use_deltas = use_deltas
        self.repo = sysroot.repo()
        self.pull_dir = fs.join(sysroot.tmp_dir, PULL_DIR)
        self.result = {"branch": self.branch, "source": fetcher.source,
                       "delta": None, "delta_used": False, "delta_error": None, "objects_fetched": 0,
                       "new_objects": 0, "bytes_fetched": 0, "bytes_resumed": 0}

    # --- summary and commit signature -----------------------------------------------------------
    def fetch_summary(self):
        data = self.fetcher.fetch_bytes("summary", summary.MAX_SUMMARY_BYTES)
        try:
            sig = self.fetcher.fetch_bytes(summary.signature_name(data), signature.MAX_SIG_BYTES)
            fixed = False
        except FetchError as err:
            if fetch.status_of(err) != 404:
                raise
            sig = self.fetcher.fetch_bytes("summary.sig", signature.MAX_SIG_BYTES)
            fixed = True
        try:
            return trust.check_summary(self.sysroot, data, sig, self.branch, self.now)
        except TrustError:
            if not fixed:
                raise
        # summary and summary.sig may come from two publishes: fetch the pair once more.
        data = self.fetcher.fetch_bytes("summary", summary.MAX_SUMMARY_BYTES)
        sig = self.fetcher.fetch_bytes("summary.sig", signature.MAX_SIG_BYTES)
        return trust.check_summary(self.sysroot, data, sig, self.branch, self.now)

    def fetch_commit_sig(self, cid):
        blob = self.fetcher.fetch_bytes(objpull.object_name(cid, "sig"), signature.MAX_SIG_BYTES)
        trust.verify_commit_blob(self.sysroot.trusted_keys(), cid, blob)
        return blob

    # --- deltas ---------------------------------------------------------------------------------
    def choose_delta(self, s, target):
        """The listed delta from a commit this repository has (the current one first), else full."""
        best = None
        for d in s.deltas:
            if d.to != target or d.from_commit is None or not self.repo.has(d.from_commit, "commit"):
                continue
            if not self.fetcher.has("deltas/%s/superblock" % d.name()):
                continue
            if d.from_commit == self.have:
                return d
            if best is None or d.total_size < best.total_size:
                best = d
        full = s.find_delta(None, target)
        if best is None and full is not None and self.fetcher.has("deltas/%s/superblock" % full.name()):
            return full
        return best

    def part_path(self, part):
        return fs.join(self.pull_dir, to_hex(part.sha256) + ".part")

    def clean_parts(self, keep):
        if not fs.is_dir(self.pull_dir):
            return
        for name in fs.listdir(self.pull_dir):
            if name not in keep:
                fs.remove_tree(fs.join(self.pull_dir, name))

    def download_part(self, d, part):
        """Download (resuming a kept partial) and hash-check one part; returns its path."""
        path = self.part_path(part)
        name = "deltas/%s/%d" % (d.name(), part.index)
        what = "delta %s part %d" % (d.name()[:25], part.index)
        st = fs.lstat(path)
        offset = st.size if st is not None and st.is_reg() and st.size <= part.size else 0
        if st is not None and not offset:
            fs.remove_tree(path)
        before = self.progress.done
        self.result["bytes_resumed"] += offset
        self.progress.add(offset)
        try:
            if offset < part.size:
                fs.append_stream(path, self.progress.counted(self.fetcher.stream(name, part.size, offset)))
            deltaapply.check_part_file(path, part, what)
            return path
        except (FetchError, IntegrityError) as err:
            if offset == 0 or (isinstance(err, FetchError) and fetch.status_of(err) != 416):
                raise
        # The kept partial was bad (or longer than the server's copy): download it again once.
        fs.remove(path, missing_ok=True)
        self.result["bytes_resumed"] -= offset
        self.progress.done = before
        fs.append_stream(path, self.progress.counted(self.fetcher.stream(name, part.size, 0)))
        deltaapply.check_part_file(path, part, what)
        return path

    def fetch_superblock(self, d):
        """(bytes, path to keep them at or None) of the delta's superblock, checked against the
        signed size and hash; kept in the pull directory (named by its hash) once the space check
        passed, so that a resumed pull does not fetch it again."""
        kept = fs.join(self.pull_dir, to_hex(d.superblock_sha256) + ".superblock")
        st = fs.lstat(kept)
        if st is not None and st.is_reg() and st.size == d.superblock_size:
            data = fs.read_bytes(kept, d.superblock_size, "reading the kept superblock")
            if objects.sha256(data) == d.superblock_sha256:
                return data, None
        name = "deltas/%s/superblock" % d.name()
        data = self.fetcher.fetch_bytes(name, d.superblock_size)
        if len(data) != d.superblock_size or objects.sha256(data) != d.superblock_sha256:
            raise IntegrityError("fetching %s: %d bytes hashing to %s, the summary says %d bytes, %s"
                                 % (name, len(data), to_hex(objects.sha256(data))[:16], d.superblock_size,
                                    to_hex(d.superblock_sha256)[:16]), "re-publish the repository")
        return data, kept

    def apply_delta(self, s, d, target):
        data, keep_at = self.fetch_superblock(d)
        sb, commit = deltaapply.read_superblock(data, d.from_commit, target, "superblock of delta " + d.name())
        summary.check_commit(s, self.branch, target, commit, self.config.board)
        keep = {to_hex(d.superblock_sha256) + ".superblock": True}
        pending = 0
        for part in sb.parts:
            keep[to_hex(part.sha256) + ".part"] = True
            st = fs.lstat(self.part_path(part))
            pending += part.size - (st.size if st is not None and st.size <= part.size else 0)
        self.clean_parts(keep)
        self.sysroot.check_space(pending + len(data) + sb.object_bytes(), "pulling delta %s" % d.name())
        if keep_at is not None:
            fs.write_atomic(keep_at, data, 0o600, sync=False)
        self.progress.add_total(sb.total_size())
        for part in sb.parts:
            path = self.download_part(d, part)
            self.result["new_objects"] += deltaapply.apply_part(self.repo, path, part, use_c=self.use_c,
                                                                checked=True)
        return sb.commit, commit

    # --- the whole pull -------------------------------------------------------------------------
    def run(self):
        if not self.branch:
            raise ConfigError("pulling: no branch configured", "set [remote] branch (updater init --branch B)")
        self.repo.clean_tmp()
        fs.makedirs(self.pull_dir)
        s, entry = self.fetch_summary()
        target = entry.commit
        if self.have is None:
            self.have = self.repo.read_ref(self.branch)
        self.result.update({"commit": to_hex(target), "version": entry.version,
                            "previous": to_hex(self.have) if self.have else None})
        if self.have == target and self.repo.has(target, "commit") and trust.read_commit_sig(self.repo, target):
            self.result["changed"] = False
            return self.finish()
        sig = self.fetch_commit_sig(target)
        commit_bytes = commit = None
        if self.repo.has(target, "commit"):  # e.g. pulled before, then the ref moved back
            commit_bytes = self.repo.read_object(target, "commit")
            commit = objects.parse_commit(commit_bytes, "commit " + to_hex(target))
            summary.check_commit(s, self.branch, target, commit, self.config.board)
        d = self.choose_delta(s, target) if self.use_deltas and commit is None else None
        if d is not None:
            self.result["delta"] = d.name()
            try:
                commit_bytes, commit = self.apply_delta(s, d, target)
                self.result["delta_used"] = True
            except DELTA_FALLBACK_ERRORS as err:
                if not self.allow_objects:
                    raise
                self.result["delta_error"] = str(err)
        if commit is None and not self.allow_objects and self.result["delta"] is None:
            raise NotFoundError("pulling %s from %s: it holds no delta to it from a commit this device has (%s)"
                                % (to_hex(target)[:12], self.fetcher.source,
                                   to_hex(self.have)[:12] if self.have else "nothing yet"),
                                "make one for this device: updater bundle --to B [--from %s]"
                                % (to_hex(self.have)[:12] if self.have else "(omit for a full bundle)"))
        if commit is None:
            commit_bytes = objpull.fetch_commit(self.fetcher, target)
            commit = objects.parse_commit(commit_bytes, "commit " + to_hex(target))
            summary.check_commit(s, self.branch, target, commit, self.config.board)
        if objpull.count_missing(self.repo, commit):
            if not self.allow_objects:
                raise IntegrityError("pulling %s: objects are still missing after the delta" % to_hex(target)[:12],
                                     "this source holds no single objects; use a full bundle or a network pull")

            def space(n):
                self.sysroot.check_space(n, "pulling single objects")

            got = objpull.fetch_missing(self.repo, self.fetcher, commit, self.progress, space)
            self.result["objects_fetched"] += got
            self.result["new_objects"] += got
        tx = self.repo.transaction()
        tx.add_meta("commit", commit_bytes)
        tx.commit()
        trust.store_commit_sig(self.repo, target, sig)
        self.repo.write_ref(self.branch, target)
        self.result["changed"] = True
        self.clean_parts({})
        return self.finish()

    def finish(self):
        self.result["bytes_fetched"] = self.fetcher.bytes_fetched
        self.progress.report()
        return self.result


def _locked(sysroot, lock, wait, notify, fn):
    """Run ``fn`` holding the sysroot lock (re-entrant: ``upgrade`` already holds it)."""
    if not lock:
        return fn()
    with sysroot.lock(wait, notify):
        return fn()


def pull(sysroot, progress=None, fetcher=None, branch=None, have=None, now=None, lock=True, wait=True,
         notify=None, allow_objects=True, use_deltas=True, use_c=True, deadline_ms=DEFAULT_DEADLINE_MS,
         **fetch_opts):
    """Pull the configured branch from [remote] url; returns a result dict:

    branch, commit (hex reached), version, previous (hex or None), changed (bool), source, delta
    (name tried or None), delta_used (bool), delta_error (why the delta was abandoned for single
    objects, or None), objects_fetched, new_objects, bytes_fetched (payload bytes received),
    bytes_resumed (bytes of kept partial parts not fetched again).

    ``progress(done, total)``: bytes. ``have``: the commit the device runs (default: the branch
    ref). The sysroot lock is taken unless ``lock=False`` or this process already holds it. ``fetcher``: any
    updater.fetch.Fetcher (default: one for [remote] url with ``deadline_ms`` and ``fetch_opts``).
    """
    if fetcher is None:
        url = sysroot.config().url
        if not url:
            raise ConfigError("pulling: no remote configured", "set [remote] url (updater init --remote URL)")
        fetcher = fetch.for_url(url, deadline_ms=deadline_ms, **fetch_opts)
    job = _Pull(sysroot, fetcher, progress, branch, have, now, allow_objects, use_c, use_deltas)
    return _locked(sysroot, lock, wait, notify, job.run)


def open_bundle(path):
    """A BundleFetcher over the bundle file ``path`` (its index checked)."""
    st = fs.stat(path)
    if st is None or not st.is_reg():
        raise NotFoundError("opening bundle %s: no such file" % path, "give the path of a .bundle file")
    index = bundle.parse_index(lambda off, n: fs.read_at(path, off, n), st.size, "bundle " + path)
    return fetch.BundleFetcher(path, index)


def install(sysroot, bundle_path, progress=None, branch=None, have=None, now=None, lock=True, wait=True,
            notify=None, use_c=True):
    """Install an offline bundle: copied into a private directory first (T10), then verified and
    applied exactly like a network pull (a fetcher over the copy; no single-object fallback)."""

    def run():
        fs.makedirs(sysroot.tmp_dir)
        for name in fs.listdir(sysroot.tmp_dir):  # private copies left by an interrupted install
            if name.startswith(fs.TMP_PREFIX + "bundle-"):
                fs.remove_tree(fs.join(sysroot.tmp_dir, name))
        private = fs.temp_name(sysroot.tmp_dir, "bundle")
        fs.mkdir(private, 0o700)
        try:
            copy = fs.join(private, "bundle")
            st = fs.stat(bundle_path)
            if st is None or not st.is_reg():
                raise NotFoundError("installing %s: no such file" % bundle_path, "give the path of a .bundle file")
            sysroot.check_space(st.size, "copying bundle %s" % bundle_path)
            fs.copy_file(bundle_path, copy, 0o600)
            job = _Pull(sysroot, open_bundle(copy), progress, branch, have, now, False, use_c)
            result = job.run()
            result["source"] = bundle_path
            return result
        finally:
            fs.remove_tree(private)

    return _locked(sysroot, lock, wait, notify, run)
