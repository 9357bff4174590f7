"""Device commands: the sysroot form of init (``updater --sysroot S init``; cmd_repo dispatches to
it), pull, and install (an offline bundle)."""

from .commands import Arg, Opt, command
from .errors import ConfigError, UsageError

INIT_OPTIONS = [
    Opt("--remote", "with --sysroot: the repository URL (http://HOST[:PORT]/PATH or file:///PATH)", metavar="URL"),
    Opt("--branch", "with --sysroot: the branch to follow, e.g. qemu-arm64/stable", metavar="B"),
    Opt("--trust", "with --sysroot: a trusted public key file (KEY.pub); repeat for several", multiple=True,
        metavar="KEY.pub"),
    Opt("--keep", "with --sysroot: deployments to keep (default 3)", kind=int, metavar="N"),
    Opt("--bootloader", "with --sysroot: uboot (the board's U-Boot env) or file (default)",
        choices=("uboot", "file")),
]


def sysroot_init(ctx, opts):
    """Write the device configuration and trusted keys of a new (or existing) sysroot."""
    from . import fs, objects
    from .sysroot import DeviceConfig, Sysroot, parse_public_key

    path = ctx.sysroot_path()
    if not opts.get("branch"):
        raise UsageError("init --sysroot: --branch is required", "updater --sysroot S init --remote URL --branch B --trust KEY.pub")
    objects.check_branch(opts.branch)
    if not opts.get("trust"):
        raise UsageError("init --sysroot: at least one --trust KEY.pub is required (no key means every pull is refused)",
                         "copy the build server's KEY.pub to the device and pass --trust KEY.pub")
    url = opts.get("remote") or ""
    if url and not (url.startswith("http://") or url.startswith("file:///")):
        raise UsageError("init: --remote must be http://HOST[:PORT]/PATH or file:///PATH, got '%s'" % url)
    keys = {}
    for key_path in opts.trust:
        data = fs.read_bytes(key_path, 4096, "reading trusted key")
        parse_public_key(data, key_path)
        name = fs.basename(key_path)
        if not name.endswith(".pub"):
            name += ".pub"
        if name.startswith("."):
            raise UsageError("init: key file name '%s' must not start with '.'" % name)
        keys[name] = data
    board = opts.get("board") or ""
    if board:
        from . import board as board_mod

        board = board_mod.load(board).name
    keep = opts.get("keep") or 3
    if not 2 <= keep <= 100:
        raise UsageError("init: --keep must be 2 to 100, got %d" % keep)
    cfg = DeviceConfig(board=board, bootloader=opts.get("bootloader") or "file", url=url.rstrip("/"),
                       branch=opts.branch, keys=sorted(keys), keep=keep)
    if fs.exists(fs.join(path, "updater", "config")):
        old = Sysroot.open(path).config()
        cfg.reserve, cfg.health_checks, cfg.verify = old.reserve, old.health_checks, old.verify
    root = Sysroot.create(path, cfg, keys, opts.get("mode"))
    ctx.emit({"sysroot": root.path, "remote": cfg.url, "branch": cfg.branch, "board": cfg.board,
              "keys": cfg.keys, "bootloader": cfg.bootloader, "keep": cfg.keep},
             lambda d: "initialised device %s: branch %s from %s, trusting %s"
             % (d["sysroot"], d["branch"], d["remote"] or "(bundles only)", ", ".join(d["keys"])))


def pull_text(d):
    if not d.get("changed"):
        return "%s is up to date at version %s (commit %s)." % (d["branch"], d["version"] or "-", d["commit"][:12])
    if not d["delta_used"]:
        how = "single objects" if d["objects_fetched"] else "objects already in the repository"
    elif d["delta"].startswith("full-"):
        how = "the full delta"
    else:
        how = "a delta from %s" % d["delta"][:12]
    lines = ["Pulled %s version %s (commit %s) using %s: %d bytes fetched%s, %d new objects."
             % (d["branch"], d["version"] or "-", d["commit"][:12], how, d["bytes_fetched"],
                (", %d resumed from an earlier attempt" % d["bytes_resumed"]) if d["bytes_resumed"] else "",
                d["new_objects"])]
    if d.get("delta_error"):
        lines.append("The delta could not be used (%s); the missing objects were fetched one by one." % d["delta_error"])
    return "\n".join(lines)


def _sysroot(ctx):
    from .sysroot import Sysroot

    return Sysroot.open(ctx.sysroot_path())


@command("pull", "Fetch the newest commit of the configured branch into the device repository",
         description="Verifies the signed summary, then downloads a static delta (resuming an interrupted\n"
                     "download) or single objects, checks every object, and moves the branch ref last.",
         options=[Opt("--no-delta", "fetch single objects even if a delta is published", flag=True,
                      dest="no_delta")],
         state=True)
def cmd_pull(ctx, opts):
    from . import pull as pull_mod

    sysroot = _sysroot(ctx)
    reporter = ctx.progress("pull")
    result = pull_mod.pull(sysroot, reporter, wait=not opts.no_wait, notify=ctx.say, use_deltas=not opts.no_delta)
    if hasattr(reporter, "finish"):
        reporter.finish()
    ctx.emit(result, pull_text)


@command("install", "Install an offline bundle (made by 'updater bundle') into the device repository",
         description="The bundle is copied into a private directory first, then verified exactly like a\n"
                     "network pull (signed summary, hashes of every part and object) before anything is used.",
         args=[Arg("FILE", "the bundle file")], state=True)
def cmd_install(ctx, opts):
    from . import pull as pull_mod

    sysroot = _sysroot(ctx)
    if not sysroot.config().branch:
        raise ConfigError("install: no branch configured", "updater --sysroot S init --branch B --trust KEY.pub")
    reporter = ctx.progress("install")
    result = pull_mod.install(sysroot, opts.file, reporter, wait=not opts.no_wait, notify=ctx.say)
    if hasattr(reporter, "finish"):
        reporter.finish()
    ctx.emit(result, pull_text)
