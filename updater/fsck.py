"""Checking a repository: every reachable object re-hashed, every ref and commit parsed.

Problems are collected (not raised) so one run reports them all; the command exits 1 if any.
"""

from . import trees
from .errors import UpdaterError
from .objects import to_hex


class Report:
    def __init__(self):
        self.problems = []
        self.checked = {"commit": 0, "tree": 0, "meta": 0, "file": 0}
        self.unreferenced = 0
        self.refs = 0

    def add(self, kind, oid, message):
        self.problems.append({"kind": kind, "object": to_hex(oid) if oid else None, "problem": message})

    def as_dict(self):
        return {"ok": not self.problems, "problems": self.problems, "checked": self.checked,
                "unreferenced_objects": self.unreferenced, "refs": self.refs}


def fsck(repo, progress=None, extra_commits=()):
    """Check every ref, every commit and every object reachable from them; returns a Report."""
    report = Report()
    stored = {}
    for oid, kind in repo.iter_objects():
        stored[oid + kind.encode()] = (oid, kind)
    commits = {}
    for branch, oid in sorted(repo.list_refs().items()):
        report.refs += 1
        if not repo.has(oid, "commit"):
            report.add("ref", oid, "ref %s points at a missing commit" % branch)
            continue
        commits[oid] = True
    for oid in extra_commits:
        commits[oid] = True
    for key in stored:
        oid, kind = stored[key]
        if kind == "commit":
            commits[oid] = True
    total = len(stored)
    done = 0
    reached = {}
    for cid in sorted(commits):
        try:
            found = trees.reachable(repo, [cid])
        except UpdaterError as err:
            report.add("commit", cid, str(err))
            continue
        for key in found:
            reached[key] = found[key]
    for key in sorted(reached):
        oid, kind, header, size = reached[key]
        try:
            if kind == "file":
                repo.verify_file(oid, header, size)
            else:
                repo.read_object(oid, kind)
            report.checked[kind] += 1
        except UpdaterError as err:
            report.add(kind, oid, str(err))
        done += 1
        if progress is not None and done % 64 == 0:
            progress(done, max(total, done))
    for key in stored:
        if key not in reached:
            report.unreferenced += 1
    if progress is not None:
        progress(done, max(total, done))
    return report
