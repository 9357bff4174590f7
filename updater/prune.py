"""Removing old commits and every object no kept commit reaches.

Order for crash safety: commit objects first (no ref points at them), then the objects nothing
kept reaches. An interruption leaves only unreferenced objects, which the next prune removes.
"""

from . import fs, trees


def commits_to_keep(repo, keep, extra_roots=()):
    """Commit IDs to keep: the newest ``keep`` of each branch's history, plus ``extra_roots``."""
    kept = {}
    for branch, oid in repo.list_refs().items():
        n = 0
        while oid is not None and (keep is None or n < keep) and repo.has(oid, "commit"):
            kept[oid] = True
            n += 1
            oid = repo.load_commit(oid).parent
    for oid in extra_roots:
        if repo.has(oid, "commit"):
            kept[oid] = True
    return kept


def prune(repo, keep=None, extra_roots=(), dry_run=False):
    """Delete commits beyond ``keep`` per branch and unreachable objects; returns a summary."""
    kept = commits_to_keep(repo, keep, extra_roots)
    reached = trees.reachable(repo, sorted(kept))
    removed = {"commit": 0, "tree": 0, "meta": 0, "file": 0}
    freed = 0
    doomed = []
    for oid, kind in repo.iter_objects():
        if (oid + kind.encode()) not in reached:
            doomed.append((0 if kind == "commit" else 1, oid, kind))
    doomed.sort()
    touched = {}
    for _, oid, kind in doomed:
        path = repo.object_path(oid, kind)
        st = fs.lstat(path)
        if st is None:
            continue
        if kind != "file" or st.nlink <= 1:
            freed += st.size
        removed[kind] += 1
        if not dry_run:
            fs.remove(path)
            sig = repo.object_path(oid, "sig")
            if kind == "commit" and fs.lstat(sig) is not None:
                fs.remove(sig)
            touched[fs.dirname(path)] = True
    for directory in sorted(touched):
        fs.fsync_dir(directory)
    if not dry_run:
        repo.clean_tmp()
    return {"commits_kept": len(kept), "removed": removed, "bytes_freed": freed, "dry_run": dry_run}
