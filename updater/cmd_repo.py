"""Repository commands: init, refs, log, show, ls, diff, checkout, fsck, prune."""

import time

from .cmd_pull import INIT_OPTIONS, sysroot_init
from .commands import Arg, Opt, command
from .errors import ConfigError, UsageError

# Implementation modules are imported inside each command: start-up stays short for all of them.
S_IFMT, S_IFLNK, S_IFDIR = 0o170000, 0o120000, 0o040000


def to_hex(oid):
    from .objects import to_hex as hexed

    return hexed(oid)


def iso_time(ts):
    t = time.gmtime(ts)
    return "%04d-%02d-%02d %02d:%02d:%02d UTC" % (t[0], t[1], t[2], t[3], t[4], t[5])


def mode_string(mode):
    kind = mode & S_IFMT
    out = "l" if kind == S_IFLNK else ("d" if kind == S_IFDIR else "-")
    for shift, special, char in ((6, 0o4000, "s"), (3, 0o2000, "s"), (0, 0o1000, "t")):
        bits = (mode >> shift) & 7
        out += "r" if bits & 4 else "-"
        out += "w" if bits & 2 else "-"
        if mode & special:
            out += char if bits & 1 else char.upper()
        else:
            out += "x" if bits & 1 else "-"
    return out


def commit_dict(oid, c):
    return {"commit": to_hex(oid), "parent": to_hex(c.parent) if c.parent else None,
            "tree": to_hex(c.tree), "meta": to_hex(c.meta), "timestamp": c.timestamp,
            "date": iso_time(c.timestamp), "subject": c.subject, "version": c.version,
            "branch": c.branch, "board": c.board, "metadata": c.metadata}


def commit_text(d):
    lines = ["commit %s" % d["commit"]]
    if d.get("version"):
        lines.append("Version: %s" % d["version"])
    lines.append("Date:    %s" % d["date"])
    lines.append("Branch:  %s%s" % (d["branch"], ("   Board: " + d["board"]) if d["board"] else ""))
    if d.get("parent"):
        lines.append("Parent:  %s" % d["parent"])
    if d.get("subject"):
        lines.append("")
        lines.append("    " + d["subject"])
    return "\n".join(lines)


@command("init", "Create an empty repository at --repo, or configure a device at --sysroot",
         description="With --sysroot (and no --repo): write the device configuration and trusted keys\n"
                     "(updater --sysroot S init --remote URL --branch B --trust KEY.pub [--board NAME]).",
         options=[Opt("--mode", "bare (stored files carry owner and xattrs; needs root) or user",
                      choices=("bare", "user"))] + INIT_OPTIONS,
         state=True)
def cmd_init(ctx, opts):
    from .repo import Repo

    if opts.get("sysroot") and not opts.get("repo"):
        return sysroot_init(ctx, opts)

    path = opts.repo
    if not path:
        raise ConfigError("init needs --repo PATH", "updater --repo PATH init")
    repo = Repo.init(path, opts.mode)
    ctx.emit({"repo": repo.path, "mode": repo.mode},
             "initialised %s repository %s" % (repo.mode, repo.path))


@command("refs", "List branches and the commits they point at", state=True)
def cmd_refs(ctx, opts):
    repo = ctx.repo()
    refs = repo.list_refs()
    data = {"refs": dict((k, to_hex(v)) for k, v in refs.items())}
    ctx.emit(data, lambda d: "\n".join("%s %s" % (d["refs"][k], k) for k in sorted(d["refs"])))


@command("log", "Show the commits of a branch, newest first",
         args=[Arg("REV", "branch, checksum or unique prefix")],
         options=[Opt(("-n", "--max-count"), "show at most N commits", kind=int, metavar="N")],
         state=True)
def cmd_log(ctx, opts):
    repo = ctx.repo()
    oid = repo.resolve(opts.rev)
    entries = [commit_dict(cid, c) for cid, c in repo.log(oid, opts.max_count)]
    ctx.emit({"commits": entries}, lambda d: "\n\n".join(commit_text(e) for e in d["commits"]))


@command("show", "Show one commit", args=[Arg("REV", "branch, checksum or unique prefix")], state=True)
def cmd_show(ctx, opts):
    repo = ctx.repo()
    oid = repo.resolve(opts.rev)
    d = commit_dict(oid, repo.load_commit(oid))

    def human(d):
        text = commit_text(d) + "\nTree:    %s\nMeta:    %s" % (d["tree"], d["meta"])
        for key in sorted(d["metadata"]):
            text += "\n%s: %r" % (key, d["metadata"][key])
        return text

    ctx.emit(d, human)


def _entry_dict(repo, e):
    d = {"path": e.path, "type": e.kind}
    if e.kind == "dir":
        m = repo.load_dirmeta(e.meta)
        d.update({"mode": m.mode | S_IFDIR, "uid": m.uid, "gid": m.gid, "checksum": to_hex(e.oid)})
        return d
    h = repo.header(e.header)
    d.update({"mode": h.mode, "uid": h.uid, "gid": h.gid, "size": e.size, "checksum": to_hex(e.oid)})
    if h.is_link():
        d["type"] = "symlink"
        d["target"] = h.target
    if h.xattrs:
        d["xattrs"] = sorted(k.decode("utf-8", "replace") for k in h.xattrs)
    return d


def _entry_line(d):
    size = "-" if d["type"] == "dir" else str(d.get("size", 0))
    tail = " -> " + d["target"] if d.get("target") else ("/" if d["type"] == "dir" and d["path"] != "/" else "")
    return "%s %5d:%-5d %10s %s%s" % (mode_string(d["mode"]), d["uid"], d["gid"], size, d["path"], tail)


@command("ls", "List a directory (or one file) of a commit",
         args=[Arg("REV", "branch, checksum or unique prefix"), Arg("PATH", "path inside the commit (default /)", nargs="?")],
         options=[Opt(("-R", "--recursive"), "list everything below PATH", flag=True)],
         state=True)
def cmd_ls(ctx, opts):
    from . import trees

    repo = ctx.repo()
    oid = repo.resolve(opts.rev)
    entry = trees.lookup(repo, oid, opts.path or "/")
    out = []
    if entry.kind == "file":
        out.append(_entry_dict(repo, entry))
    elif opts.recursive:
        for e in trees.walk(repo, entry.oid, entry.path.rstrip("/")):
            out.append(_entry_dict(repo, e))
    else:
        tree = repo.load_tree(entry.oid)
        base = entry.path.rstrip("/")
        from .trees import Entry

        items = [Entry(base + "/" + n, "dir", t, meta=m) for n, t, m in tree.dirs]
        items += [Entry(base + "/" + f[0], "file", f[1], f[2], f[3]) for f in tree.files]
        items.sort(key=lambda e: e.path.encode())
        for e in items:
            out.append(_entry_dict(repo, e))
    ctx.emit({"commit": to_hex(oid), "entries": out}, lambda d: "\n".join(_entry_line(e) for e in d["entries"]))


@command("diff", "List paths added (A), removed (D) and modified (M) between two commits",
         args=[Arg("REV1", "the older revision"), Arg("REV2", "the newer revision")], state=True)
def cmd_diff(ctx, opts):
    from . import trees

    repo = ctx.repo()
    a = repo.resolve(opts.rev1)
    b = repo.resolve(opts.rev2)
    added, removed, modified = trees.diff(repo, a, b)
    data = {"from": to_hex(a), "to": to_hex(b), "added": added, "removed": removed, "modified": modified}

    def human(d):
        rows = [("A", p) for p in d["added"]] + [("D", p) for p in d["removed"]] + [("M", p) for p in d["modified"]]
        rows.sort(key=lambda r: r[1].encode())
        return "\n".join("%s %s" % r for r in rows)

    ctx.emit(data, human)


@command("checkout", "Check out a commit into a new directory as hard links to the object store",
         args=[Arg("REV", "branch, checksum or unique prefix"), Arg("DEST", "a new or empty directory")],
         options=[Opt("--copy", "copy files below this relative directory instead of linking (repeatable)",
                      multiple=True, metavar="DIR")],
         state=True)
def cmd_checkout(ctx, opts):
    from . import checkout as checkout_mod

    repo = ctx.repo()
    oid = repo.resolve(opts.rev)
    stats = checkout_mod.checkout(repo, oid, opts.dest, copy=opts.copy, progress=ctx.progress("checkout", "files"))
    d = stats.as_dict()
    d.update({"commit": to_hex(oid), "dest": opts.dest})
    ctx.emit(d, lambda d: "checked out %s into %s: %d files (%d linked, %d copied, %d empty), %d directories"
             % (d["commit"][:12], d["dest"], d["files"], d["linked"], d["copied"], d["created_empty"], d["dirs"]))


@command("fsck", "Re-hash every object; exit 1 on any mismatch or missing object", state=True)
def cmd_fsck(ctx, opts):
    from . import fsck as fsck_mod

    repo = ctx.repo()
    sysroot = None
    extra = ()
    if opts.get("sysroot") and not opts.get("repo"):
        from . import deploycheck
        from .sysroot import Sysroot

        sysroot = Sysroot.open(opts.sysroot)
        extra = deploycheck.commit_roots(sysroot)
    report = fsck_mod.fsck(repo, ctx.progress("fsck", "objects"), extra_commits=extra)
    if sysroot is not None:
        report.checked["deployment"] = deploycheck.check(sysroot, report)
    d = report.as_dict()

    def human(d):
        lines = ["%s %s: %s" % (p["kind"], (p["object"] or "")[:12], p["problem"]) for p in d["problems"]]
        c = d["checked"]
        lines.append("%s: checked %d commits, %d trees, %d dirmetas, %d files%s; %d unreferenced objects; %d problems"
                     % ("ok" if d["ok"] else "FAILED", c["commit"], c["tree"], c["meta"], c["file"],
                        ", %d deployments" % c["deployment"] if "deployment" in c else "",
                        d["unreferenced_objects"], len(d["problems"])))
        return "\n".join(lines)

    ctx.emit(d, human)
    return 0 if report.as_dict()["ok"] else 1


@command("prune", "Delete commits beyond the newest N of each branch, then unreferenced objects",
         description="With --sysroot (and no --repo): remove deployments beyond the device's [deploy] keep\n"
                     "(never the running, known-good, staged or rollback one), then objects no kept\n"
                     "deployment or branch head needs; --keep N then counts deployments.",
         options=[Opt("--keep", "commits to keep per branch (default: all); with --sysroot: deployments",
                      kind=int, metavar="N"),
                  Opt("--dry-run", "only report what would be removed", flag=True)],
         state=True)
def cmd_prune(ctx, opts):
    if opts.get("sysroot") and not opts.get("repo"):
        from .cmd_device import device_prune

        return device_prune(ctx, opts)
    if opts.keep is not None and opts.keep < 1:
        raise UsageError("prune: --keep must be at least 1, got %d" % opts.keep)
    from . import prune as prune_mod

    repo = ctx.repo()
    with repo.lock(not opts.no_wait, ctx.say):
        result = prune_mod.prune(repo, opts.keep, dry_run=opts.dry_run)
    r = result["removed"]
    ctx.emit(result, "%s %d commits, %d trees, %d dirmetas, %d files (%d bytes); %d commits kept"
             % ("would remove" if result["dry_run"] else "removed", r["commit"], r["tree"], r["meta"],
                r["file"], result["bytes_freed"], result["commits_kept"]))
