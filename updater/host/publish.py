"""Publishing a repository: sign branch heads, list deltas, write the signed summary.

Files written (docs/summary-format.md), in this order, each durably (temp, fsync, rename,
fsync dir):

1. ``objects/XX/YYYY.sig`` of every branch head not yet signed by each publishing key;
2. ``summaries/<SHA-256 of the new summary, hex>.sig``: its signature, under a name derived
   from the summary's bytes;
3. ``summary``: the new summary;
4. ``summary.sig``: the same signature under the fixed name.

A client that fetches ``summary`` and then ``summaries/<its SHA-256>.sig`` always gets a
matching pair, however a publish interleaves: step 2 precedes step 3, and the last
KEEP_SIGNATURES content-named signatures are kept, so a client that read an older summary
still finds its signature. A client using the fixed ``summary.sig`` may see a pair from two
publishes and must fetch both again once when the check fails (a second failure is real).

Serial and timestamp only ever grow: serial = previous + 1 (or ``serial`` if larger), and the
timestamp never goes below the previous one even if the build server's clock does.
"""

import hashlib
import time

from .. import fs, objects, signature, summary
from ..errors import ConfigError, FormatError
from ..objects import to_hex
from . import keys as keys_mod

KEEP_SIGNATURES = 16
DAY = 86400
MAX_EXPIRES_DAYS = 3660


def _delta_dir_name(name):
    """(from ID or None, to ID) of ``deltas/<FROMHEX|full>-<TOHEX>``, or None if not one."""
    left, sep, right = name.partition("-")
    if not sep or not objects.is_hex(right, 64):
        return None
    if left == "full":
        return None, bytes.fromhex(right)
    if not objects.is_hex(left, 64):
        return None
    return bytes.fromhex(left), bytes.fromhex(right)


def scan_deltas(repo, warn=None):
    """DeltaEntry of every complete delta directory below REPO/deltas/ whose target commit exists."""
    top = fs.join(repo.path, "deltas")
    out = []
    if not fs.is_dir(top):
        return out
    for name in fs.listdir(top):
        if name.startswith("."):
            continue
        ids = _delta_dir_name(name)
        directory = fs.join(top, name)
        if ids is None or not fs.is_dir(directory):
            if warn:
                warn("publish: skipping deltas/%s: not a <FROMHEX|full>-<TOHEX> directory" % name)
            continue
        if ids[0] == ids[1] or not repo.has(ids[1], "commit"):
            if warn:
                warn("publish: skipping deltas/%s: its target commit is not in the repository" % name)
            continue
        superblock = fs.join(directory, "superblock")
        st = fs.lstat(superblock)
        if st is None or not st.is_reg() or st.size == 0:
            if warn:
                warn("publish: skipping deltas/%s: no superblock (incomplete delta?)" % name)
            continue
        digest, size = fs.sha256_file(superblock)
        total = 0
        for part in fs.listdir(directory):
            if part.startswith(fs.TMP_PREFIX):
                continue
            pst = fs.lstat(fs.join(directory, part))
            if pst is not None and pst.is_reg():
                total += pst.size
        out.append(summary.DeltaEntry(ids[0], ids[1], digest, size, total))
    return out


def previous_summary(repo):
    """The repository's current summary (decoded without a signature check: our own), or None."""
    path = fs.join(repo.path, "summary")
    if fs.lstat(path) is None:
        return None
    data = fs.read_bytes(path, summary.MAX_SUMMARY_BYTES, "reading the published summary")
    try:
        return summary.decode_unverified(data, "summary " + path)
    except FormatError as err:
        raise ConfigError("publishing %s: the existing summary is unreadable: %s" % (repo.path, err),
                          "restore it, or publish with --serial N above the last serial devices saw")


def _prune_signatures(directory, keep_name):
    entries = []
    for name in fs.listdir(directory):
        if name.endswith(".sig") and not name.startswith(".") and name != keep_name:
            st = fs.lstat(fs.join(directory, name))
            if st is not None:
                entries.append((st.mtime, name))
    entries.sort()
    for _, name in entries[: max(0, len(entries) - (KEEP_SIGNATURES - 1))]:
        fs.remove(fs.join(directory, name), missing_ok=True)


def publish(repo, keys, expires_days=30, now=None, serial=None, warn=None):
    """Sign heads and write the signed summary of ``repo`` (hold the repository lock); a report dict."""
    if not keys:
        raise ConfigError("publishing %s: no signing key given" % repo.path, "pass --key KEY (updater keygen makes one)")
    if not 0 < expires_days <= MAX_EXPIRES_DAYS:
        raise ConfigError("publishing %s: --expires must be 1 to %d days, got %r" % (repo.path, MAX_EXPIRES_DAYS, expires_days))
    now = int(time.time()) if now is None else int(now)
    refs = repo.list_refs()
    branches = []
    signed = {}
    for name in sorted(refs):
        cid = refs[name]
        c = repo.load_commit(cid)
        added = keys_mod.sign_commit(repo, cid, keys)
        if added:
            signed[to_hex(cid)] = added
        branches.append(summary.BranchEntry(name, cid, c.version, c.timestamp, c.board))
    deltas = scan_deltas(repo, warn)
    prev = previous_summary(repo)
    new_serial = 1 if prev is None else prev.serial + 1
    if serial is not None:
        if serial < new_serial:
            raise ConfigError("publishing %s: --serial %d is not above the current serial %d"
                              % (repo.path, serial, new_serial - 1))
        new_serial = serial
    timestamp = now if prev is None else max(now, prev.timestamp)
    expires = timestamp + int(expires_days * DAY)
    data = summary.encode(new_serial, timestamp, expires, branches, deltas)
    blob = keys_mod.sign_blob(keys, data, signature.PURPOSE_SUMMARY)
    sig_dir = fs.join(repo.path, "summaries")
    fs.makedirs(sig_dir)
    named = summary.signature_name(data)
    fs.write_atomic(fs.join(repo.path, named), blob)
    fs.write_atomic(fs.join(repo.path, "summary"), data)
    fs.write_atomic(fs.join(repo.path, "summary.sig"), blob)
    _prune_signatures(sig_dir, fs.basename(named))
    return {
        "serial": new_serial, "timestamp": timestamp, "expires": expires,
        "summary_sha256": hashlib.sha256(data).hexdigest(), "summary_size": len(data),
        "signature": named, "keys": [k.hexid() for k in keys],
        "branches": dict((b.name, {"commit": to_hex(b.commit), "version": b.version}) for b in branches),
        "deltas": [d.name() for d in deltas], "signed_commits": signed,
    }
