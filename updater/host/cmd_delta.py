"""Build-server commands: delta (static deltas), serve (development HTTP server), bundle (offline file)."""

from ..commands import Opt, command
from ..errors import UsageError


@command("delta", "Generate a static delta from one commit to another (a full delta without --from)",
         description="Writes REPO/deltas/<FROM|full>-<TO>/ (superblock and parts); run publish afterwards so\n"
                     "devices see it. The codec is --codec, else the best the --board's config lists, else zlib.",
         options=[Opt("--from", "the commit devices have (omit for a full delta)", dest="from_rev", metavar="REV"),
                  Opt("--to", "the new commit", required=True, dest="to_rev", metavar="REV"),
                  Opt("--codec", "part compression: zlib (every device) or xz (boards whose config lists it)",
                      choices=("zlib", "xz")),
                  Opt("--part-size", "uncompressed bytes per part (default 32 MiB)", kind=int, metavar="N",
                      dest="part_size"),
                  Opt("--max-bsdiff", "skip bsdiff when old + new exceed N bytes (memory: about 16 x old; default 64 MiB)",
                      kind=int, metavar="N", dest="max_bsdiff"),
                  Opt("--jobs", "bsdiff worker processes (default: one per CPU)", kind=int, metavar="N")],
         state=True, host=True)
def cmd_delta(ctx, opts):
    from . import deltagen

    repo = ctx.repo()
    codec = deltagen.choose_codec(opts.codec, opts.get("board"))
    part_size = opts.part_size or deltagen.DEFAULT_PART_SIZE
    if part_size < 4096:
        raise UsageError("delta: --part-size must be at least 4096, got %d" % part_size)
    with repo.lock(not opts.no_wait, ctx.say):
        to_id = repo.resolve(opts.to_rev)
        from_id = repo.resolve(opts.from_rev) if opts.from_rev else None
        if from_id == to_id:
            raise UsageError("delta: --from and --to are the same commit")
        reporter = ctx.progress("delta", "objects")
        stats = deltagen.generate(repo, to_id, from_id, codec, part_size,
                                  opts.max_bsdiff or deltagen.DEFAULT_MAX_BSDIFF, opts.jobs, reporter)
    ctx.emit(stats, lambda d: "wrote deltas/%s: %d bytes in %d part(s) (%s), %d objects: %d bsdiff, %d whole, "
             "%d copies, %d symlinks, %d tree patches" % (d["delta"][:40], d["size"], d["parts"], d["codec"],
                                                          d["objects"], d["bsdiff"], d["new"], d["copy"],
                                                          d["link"], d["tree_patches"]))


@command("serve", "Serve the repository over HTTP for development (GET/HEAD with Range)",
         description="Production devices pull from any static web server; this one is for tests and demos.",
         options=[Opt("--bind", "address to listen on (default 127.0.0.1)", default="127.0.0.1", metavar="ADDR"),
                  Opt("--port", "port (default 8080; 0 picks a free one)", kind=int, default=8080, metavar="P")],
         host=True)
def cmd_serve(ctx, opts):
    from . import serve

    repo = ctx.repo()
    server = serve.RepoServer(repo.path, (opts.bind, opts.port), quiet=bool(opts.get("quiet")), log=ctx.say)
    ctx.say("serving %s on %s/ (Ctrl-C stops)" % (repo.path, server.url()))
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


@command("bundle", "Write a self-contained signed offline bundle for 'updater install' (USB, serial console)",
         description="Takes the published summary and signatures and one published delta; --from omitted\n"
                     "bundles the full delta (for devices that have nothing yet).",
         options=[Opt("--from", "the commit the device has (omit for a full bundle)", dest="from_rev", metavar="REV"),
                  Opt("--to", "the new commit (a branch head in the published summary)", required=True,
                      dest="to_rev", metavar="REV"),
                  Opt(("-o", "--output"), "the bundle file to write", required=True, metavar="FILE")],
         state=True, host=True)
def cmd_bundle(ctx, opts):
    from . import bundler

    repo = ctx.repo()
    to_id = repo.resolve(opts.to_rev)
    from_id = repo.resolve(opts.from_rev) if opts.from_rev else None
    report = bundler.write(repo, to_id, from_id, opts.output)
    ctx.emit(report, lambda d: "wrote %s: %d bytes (delta %s, %d entries)"
             % (d["bundle"], d["size"], d["delta"][:40], len(d["entries"])))
