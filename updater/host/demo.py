"""The README's main job: a walk through updater on the embedded default, in plain words.

Today's steps (the repository foundation): build v1 and v2 of a small sample OS tree, commit
both to a branch, show what changed, check each out as a hard-link farm and show that unchanged
files share storage with the repository.
"""

import os
import shutil
import sys

from .. import checkout, fsck, trees
from ..objects import to_hex
from ..repo import Repo
from .commit import commit_source

BRANCH = "demo-board/stable"


def say(text=""):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def sample_tree(root, version):
    """A tiny OS image: a 'kernel', a 'library', a program, /etc defaults and a version file."""
    shutil.rmtree(root, ignore_errors=True)
    write(os.path.join(root, "boot/vmlinuz"), b"KERNEL" + bytes(range(256)) * 2000)
    lib = b"libc 2.36 " + bytes((i * 7) % 251 for i in range(300000))
    if version >= 2:
        lib = lib.replace(b"libc 2.36", b"libc 2.37", 1)
    write(os.path.join(root, "usr/lib/libc.so.6"), lib)
    write(os.path.join(root, "usr/bin/app"), b"#!/bin/sh\necho app v%d\n" % version, 0o755)
    write(os.path.join(root, "etc/app.conf"), b"greeting = hello\n" + (b"colour = blue\n" if version >= 2 else b""))
    write(os.path.join(root, "etc/os-release"), b'NAME="Demo OS"\nVERSION_ID="%d.0"\n' % version)
    os.symlink("usr/bin", os.path.join(root, "bin"))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    work = os.path.abspath(argv[0] if argv else "demo-work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    repo = Repo.init(os.path.join(work, "repo"))
    say("updater demo: working in %s" % work)
    say("")
    ids = []
    for version in (1, 2):
        src = os.path.join(work, "build-v%d" % version)
        sample_tree(src, version)
        cid, stats = commit_source(repo, src, BRANCH, subject="demo OS %d.0" % version, version="%d.0" % version)
        ids.append(cid)
        say("1.%d  built demo OS %d.0 and committed it to branch %s" % (version, version, BRANCH))
        say("     commit %s: %d files, %d new objects stored" % (to_hex(cid)[:16], stats["files"], stats["new_objects"]))
    added, removed, modified = trees.diff(repo, ids[0], ids[1])
    say("")
    say("2.   what changed from 1.0 to 2.0:")
    for path in modified:
        say("       modified  %s" % path)
    for path in added:
        say("       added     %s" % path)
    for path in removed:
        say("       removed   %s" % path)
    say("")
    for i, cid in enumerate(ids):
        dest = os.path.join(work, "checkout-v%d" % (i + 1))
        stats = checkout.checkout(repo, cid, dest)
        say("3.%d  checked out %d.0 into %s: %d files hard-linked, %d copied"
            % (i + 1, i + 1, dest, stats.linked, stats.copied + stats.created_empty))
    shared = 0
    for path in ("usr/bin/app", "usr/lib/libc.so.6", "boot/vmlinuz", "etc/app.conf"):
        a = os.stat(os.path.join(work, "checkout-v1", path))
        b = os.stat(os.path.join(work, "checkout-v2", path))
        same = a.st_ino == b.st_ino
        shared += same
        say("       %-20s %s" % (path, "shared by both checkouts (one copy on disk)" if same else "differs: stored twice"))
    report = fsck.fsck(repo)
    say("")
    say("4.   fsck re-hashed %d objects: %s" % (sum(report.checked.values()), "all good" if not report.problems else "PROBLEMS"))
    say("")
    say("Done. Try: .venv/bin/updater --repo %s log %s" % (repo.path, BRANCH))
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
