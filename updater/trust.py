"""Trust on the device: commit signatures in the repository, and summaries checked against the
device's keys and durable floors. The thin I/O layer over updater.signature and updater.summary.

- A commit's signature file is ``REPO/objects/XX/YYYY.sig`` next to ``YYYY.commit`` (prune
  removes it with the commit). It signs the commit ID (= SHA-256 of the exact commit bytes,
  which the repository re-checks on every read) with purpose "commit".
- ``check_summary`` is the whole device-side summary policy: signature over the exact bytes,
  bounded decode, expiry, no replay of an older summary or branch head, then the floors raised
  durably in the state map. Call it with the sysroot lock held.
"""

import time

from . import fs, signature, summary
from .objects import to_hex


def commit_sig_path(repo, commit_id):
    return repo.object_path(commit_id, "sig")


def read_commit_sig(repo, commit_id):
    """The signature file of a commit, or None if there is none."""
    path = commit_sig_path(repo, commit_id)
    if fs.lstat(path) is None:
        return None
    return fs.read_bytes(path, signature.MAX_SIG_BYTES, "reading commit signature")


def store_commit_sig(repo, commit_id, blob):
    """Store a commit's signature file durably (well-formed only; verify it before storing)."""
    signature.parse_blob(blob, "signature of commit " + to_hex(commit_id))
    path = commit_sig_path(repo, commit_id)
    fs.makedirs(fs.dirname(path))
    fs.write_atomic(path, blob)


def verify_commit_blob(trusted, commit_id, sig_blob):
    """Check a commit signature held in memory (e.g. just fetched); returns the key name."""
    return signature.verify_digest(trusted, commit_id, sig_blob, "commit " + to_hex(commit_id),
                                   signature.PURPOSE_COMMIT)


def verify_commit(repo, commit_id, trusted):
    """Check the stored signature of a commit in ``repo``; returns the key name (TrustError)."""
    return verify_commit_blob(trusted, commit_id, read_commit_sig(repo, commit_id))


def device_now():
    """The device clock in whole seconds (the clock policy is in updater.summary)."""
    return int(time.time())


def check_summary(sysroot, summary_bytes, sig_bytes, branch=None, now=None, record=True):
    """Authenticate and check a fetched summary for ``sysroot``; returns (Summary, BranchEntry).

    ``branch`` defaults to the configured [remote] branch; ``now`` to the device clock. With
    ``record`` the state floors (updater.summary STATE_*) are raised and saved before returning,
    so a later replay of anything older is refused even if this pull does not complete.
    """
    trusted = sysroot.trusted_keys()
    branch = branch or sysroot.config().branch
    s = summary.parse_verified(summary_bytes, sig_bytes, trusted, device_now() if now is None else now)
    state = sysroot.load_state()
    entry = summary.check_not_older(s, branch, state)
    if record:
        summary.record_accepted(s, branch, state)
        sysroot.save_state(state)
    return s, entry
