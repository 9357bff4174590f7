"""Device commands on a sysroot: deploy, upgrade, status, rollback, mark-good, boot, and the
device form of prune (``updater --sysroot S prune``; cmd_repo dispatches to it).

Every command that changes the device holds the sysroot lock (Sysroot.lock) for its whole run;
a second updater waits with a message, or with --no-wait fails at once naming the holder.
"""

import time

from .commands import Arg, Opt, command

# Implementation modules are imported inside each command: start-up stays short for all of them.
VERIFY = Opt("--verify", "re-hash before linking: 'new' objects (those the running deployment does not "
             "use) or 'all' (default: the device configuration, else new)", choices=("new", "all"))


ENV_FILE = Opt("--env-file", "U-Boot devices: use this image file as the board's env medium (same offsets; "
               "provisioning on a host)", metavar="PATH")


def _sysroot(ctx):
    from .sysroot import Sysroot

    sysroot = Sysroot.open(ctx.sysroot_path())
    sysroot.env_file = ctx.opts.get("env_file")
    return sysroot


def _locked(ctx, sysroot):
    return sysroot.lock(not ctx.opts.get("no_wait"), ctx.say)


def short(name):
    """A deployment NAME as people read it: 12 hex digits and the serial."""
    if name and len(name) >= 66 and name[64] == ".":
        return name[:12] + name[64:]
    return name or "-"


def when(ts):
    if not ts:
        return "-"
    t = time.gmtime(ts)
    return "%04d-%02d-%02d %02d:%02d UTC" % (t[0], t[1], t[2], t[3], t[4])


def deploy_text(d):
    lines = ["Deployed version %s (commit %s) as %s." % (d["version"] or "-", d["commit"][:12], short(d["deployment"]))]
    c = d["checkout"]
    lines.append("  %d files: %d hard-linked to the repository, %d copied, %d empty; %d objects re-hashed first."
                 % (c["files"], c["linked"], c["copied"], c["created_empty"], d["verified_objects"]))
    if d.get("etc"):
        e = d["etc"]
        lines.append("  /etc merged from %s: %d local changes kept, %d local deletions kept, %d conflicts."
                     % (short(d["merged_from"]), e["kept_count"], e["deleted_count"], e["conflict_count"]))
        for path in e["conflicts"]:
            lines.append("    conflict: %s (changed here and in the new version; the local file was kept)" % path)
    if d["staged"]:
        lines.append("It boots at the next restart, on trial: if it does not start, the device returns to the "
                     "current version.")
    elif d["current"]:
        lines.append("It is the device's first deployment and boots by default.")
    return "\n".join(lines)


@command("deploy", "Build a deployment of a commit and stage it for the next boot",
         args=[Arg("REV", "branch, checksum or unique prefix in the sysroot's repository")],
         options=[VERIFY, ENV_FILE], state=True)
def cmd_deploy(ctx, opts):
    from . import deploy as deploy_mod

    sysroot = _sysroot(ctx)
    with _locked(ctx, sysroot):
        cid = sysroot.repo().resolve(opts.rev)
        result = deploy_mod.deploy(sysroot, cid, ctx.progress("deploy", "files"), opts.verify,
                                   sysroot.booted(), ctx.say)
    ctx.emit(result, deploy_text)


@command("upgrade", "Pull the newest commit of the configured branch and deploy it", options=[VERIFY, ENV_FILE],
         state=True)
def cmd_upgrade(ctx, opts):
    from . import deploy as deploy_mod
    from . import pull as pull_mod

    sysroot = _sysroot(ctx)
    with _locked(ctx, sysroot):
        pulled = pull_mod.pull(sysroot, ctx.progress("pull"), notify=ctx.say)
        repo = sysroot.repo()
        cid = bytes.fromhex(pulled["commit"]) if pulled.get("commit") else repo.read_ref(sysroot.config().branch)
        booted = sysroot.booted()
        contract = sysroot.bootloader().read()
        done = deploy_mod.is_up_to_date(sysroot, cid, contract, booted) if cid is not None else None
        result = {"pull": pulled, "deploy": None, "up_to_date": done}
        if cid is not None and done is None:
            result["deploy"] = deploy_mod.deploy(sysroot, cid, ctx.progress("deploy", "files"), opts.verify,
                                                 booted, ctx.say)

    def human(d):
        from .cmd_pull import pull_text

        head = pull_text(d["pull"]) + "\n"
        if d["deploy"]:
            return head + deploy_text(d["deploy"])
        if d["up_to_date"] == "staged":
            return head + "The newest version is already staged for the next boot."
        return head + "The device already runs the newest version of %s." % sysroot.config().branch

    ctx.emit(result, human)


def status_text(d):
    lines = ["Device %s: board %s, following %s%s." % (d["sysroot"], d["board"] or "-", d["branch"] or "-",
                                                        (" from " + d["remote"]) if d["remote"] else "")]
    if not d["deployments"]:
        lines.append("No deployments yet: 'updater --sysroot %s deploy REV' creates one." % d["sysroot"])
    for row in d["deployments"]:
        tags = [t for t, on in (("running", row["booted"]), ("known-good", row["current"]),
                                ("staged for the next boot", row["staged"]), ("rollback target", row["rollback"]),
                                ("FAILED: " + (row["failed_why"] or "did not boot"), row["failed"]),
                                ("missing", not row["present"])) if on]
        mark = "*" if row["booted"] else " "
        lines.append("%s %s  version %-10s %s" % (mark, short(row["name"]), row["version"] or "-",
                                                   ", ".join(tags)))
        if "files" in row:
            lines.append("      built %s, %d files, %d bytes of its own (the rest shared with other versions)"
                         % (when(row["created"]), row["files"], row["private_bytes"]))
        for path in row["etc_conflicts"]:
            lines.append("      /etc conflict: %s (changed here and in this version; the local file was kept)" % path)
    if d["staged"]:
        lines.append("Next boot: %s on trial (%s of %s attempts used)." % (short(d["staged"]), d["boot_count"] or 0,
                                                                        d["boot_limit"] or "-"))
    else:
        lines.append("Next boot: %s." % short(d["current"]))
    if not d["env_ok"]:
        lines.append("WARNING: the boot environment is unusable: %s" % d["env_problem"])
    lines.append("Free space: %d MiB (%d MiB kept in reserve)." % (d["free_bytes"] >> 20, d["reserve"] >> 20))
    for ev in d["boot_history"][-3:]:
        lines.append("  %s  %s %s %s" % (when(ev.get("time")), ev.get("event"), short(ev.get("booted")),
                                         ev.get("detail") or ""))
    return "\n".join(lines)


@command("status", "Show the deployments: running, known-good, staged, rollback target, disk use",
         options=[ENV_FILE], state=True)
def cmd_status(ctx, opts):
    from . import deployments

    sysroot = _sysroot(ctx)
    ctx.emit(deployments.status(sysroot, sysroot.booted()), status_text)


@command("rollback", "Cancel a staged update, or stage the previous deployment for the next boot",
         options=[ENV_FILE], state=True)
def cmd_rollback(ctx, opts):
    from . import bootflow

    sysroot = _sysroot(ctx)
    with _locked(ctx, sysroot):
        result = bootflow.rollback(sysroot)

    def human(d):
        if d["cancelled"]:
            return "Cancelled the staged update %s; the next boot uses %s." % (short(d["cancelled"]), short(d["next_boot"]))
        return "Staged %s for the next boot (on trial: if it fails, the current version comes back)." % short(d["staged"])

    ctx.emit(result, human)


@command("mark-good", "Confirm the running deployment after a healthy boot", options=[ENV_FILE], state=True)
def cmd_mark_good(ctx, opts):
    from . import bootflow

    sysroot = _sysroot(ctx)
    with _locked(ctx, sysroot):
        result = bootflow.mark_good(sysroot)
    ctx.emit(result, lambda d: ("%s is now the known-good version." if d["changed"] else
                                "%s was already the known-good version.") % short(d["deployment"]))


@command("boot", "Early-boot step: clean up interrupted work, record fallbacks, run health checks, mark good",
         options=[Opt("--skip-health-checks", "mark a trial good without running the health-check hooks", flag=True),
                  ENV_FILE],
         state=True)
def cmd_boot(ctx, opts):
    from . import bootflow

    sysroot = _sysroot(ctx)
    with _locked(ctx, sysroot):
        result = bootflow.boot(sysroot, health=not opts.skip_health_checks, say=ctx.say)

    def human(d):
        booted = d["booted"]
        lines = ["Booted %s." % short(booted) if booted else "Booted deployment unknown."]
        for event in d["events"]:
            lines.append(event.replace(booted, short(booted)) if booted else event)
        return "\n".join(lines)

    ctx.emit(result, human)
    return 0 if result["ok"] else 1


def device_prune(ctx, opts):
    """``updater --sysroot S prune``: old deployments beyond [deploy] keep, then unused objects."""
    from . import deployments

    if opts.keep is not None and opts.keep < 2:
        from .errors import UsageError

        raise UsageError("prune: a device keeps at least 2 deployments (--keep 2), got %d" % opts.keep)
    sysroot = _sysroot(ctx)
    with _locked(ctx, sysroot):
        result = deployments.prune(sysroot, sysroot.booted(), opts.keep, opts.dry_run)
    r = result["removed"]
    verb = "would remove" if result["dry_run"] else "removed"
    ctx.emit(result, "%s %d deployments (%s); kept %d; %s %d objects (%d bytes)"
             % (verb, len(result["deployments_removed"]), ", ".join(short(n) for n in result["deployments_removed"]) or "-",
                len(result["deployments_kept"]), verb, r["commit"] + r["tree"] + r["meta"] + r["file"],
                result["bytes_freed"]))
