"""Build-server commands: commit."""

from ..commands import Arg, Opt, command


@command("commit", "Record a directory or tar archive as a new commit on a branch",
         args=[Arg("SOURCE", "a directory, or a .tar/.tar.gz/.tar.xz/.tar.zst archive")],
         options=[Opt("--branch", "the branch to commit to, e.g. qemu-arm64/stable", required=True, metavar="B"),
                  Opt("--subject", "one line describing the commit", default="", metavar="S"),
                  Opt("--version", "the version string devices report, e.g. 2.1.0", default="", metavar="V"),
                  Opt("--board-name", "the board the commit is for (default: the branch's first component)",
                      dest="board_name", metavar="NAME"),
                  Opt("--timestamp", "commit time in seconds since 1970 (default: SOURCE_DATE_EPOCH or now)",
                      kind=int, metavar="T"),
                  Opt("--skip-special", "leave out device nodes, FIFOs and sockets (with a warning each)", flag=True)],
         state=True, host=True)
def cmd_commit(ctx, opts):
    from ..objects import to_hex
    from . import commit as commit_mod

    repo = ctx.repo()
    with repo.lock(not opts.no_wait, ctx.say):
        cid, stats = commit_mod.commit_source(
            repo, opts.source, opts.branch, opts.subject, opts.version, opts.board_name, opts.timestamp,
            skip_special=opts.skip_special, warn=ctx.say, progress=ctx.progress("commit", "files"))
    stats.update({"commit": to_hex(cid), "branch": opts.branch, "version": opts.version})
    ctx.emit(stats, lambda d: "committed %s to %s (%d files, %d new objects)"
             % (d["commit"], d["branch"], d["files"], d["new_objects"]))
