"""Factory command: provision (an image with its bmap and env, or an already-mounted root file system).

The work is done by ``updater.host.provision`` (imported inside the command: start-up stays light);
factory scripts can call that library directly (docs/provisioning.md, docs/examples/factory.py).
"""

from ..commands import Opt, command
from ..errors import UsageError


def _unit_values(pairs):
    out = {}
    for pair in pairs or ():
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise UsageError("provision: --set expects NAME=VALUE, got '%s'" % pair, "e.g. --set serial#=A0001")
        if name in out:
            raise UsageError("provision: --set %s is given twice" % name)
        out[name] = value
    return out


def _human(d):
    lines = ["provisioned %s (version %s, commit %s) for board %s" % (d.get("image") or d.get("target"),
             d["version"] or "-", d["commit"][:12], d["board"]),
             "  deployment %s%s" % (d["deployment"], ", signed by %s" % d["signed_by"] if d["signed_by"] else "")]
    if d.get("image"):
        lines.append("  image %d bytes, %d mapped (bmap %s), sha256 %s"
                     % (d["image_size"], d["mapped_size"], d["bmap"], d["image_sha256"]))
    env = d.get("env") or {}
    if env.get("written_to") == "image":
        lines.append("  U-Boot env inside the image at %s" % ", ".join("0x%x" % o for o in env["offsets"]))
    elif env.get("written_to") == "file":
        lines.append("  U-Boot env image %s (program it into %s at %s)"
                     % (env["file"], env["device"], ", ".join("0x%x" % o for o in env["offsets"])))
    else:
        lines.append("  no U-Boot env written: boot.cmd reads boot/updater-env.txt")
    if d["unit_values"]:
        lines.append("  unit values: %s" % " ".join("%s=%s" % (k, d["unit_values"][k]) for k in sorted(d["unit_values"])))
    return "\n".join(lines)


@command("provision", "Build a flashable image (or fill a mounted root file system) for a board from a commit",
         description="Needs --board NAME and --repo R (global options, accepted after the command too).\n"
                     "Writes IMAGE, IMAGE.bmap (bmaptool copy IMAGE DEST) and, for an env in flash, IMAGE.env.\n"
                     "Same inputs and SOURCE_DATE_EPOCH (default: the commit time) give the same bytes.\n"
                     "Library and details: docs/provisioning.md.",
         options=[Opt("--ref", "branch, checksum or unique prefix of the commit to provision", required=True,
                      metavar="REV"),
                  Opt("--output", "the image file to write", metavar="IMAGE"),
                  Opt("--target", "instead of an image: an empty, mounted root file system to fill", metavar="DIR"),
                  Opt("--size", "image size, e.g. 2G (default: the board's [disk] size, else twice what is needed)",
                      metavar="SIZE"),
                  Opt("--set", "a per-unit U-Boot env value (serial number, MAC); repeat", multiple=True,
                      dest="set", metavar="NAME=VALUE"),
                  Opt("--key-pub", "a public key the device trusts (checked against the commit's signature); repeat",
                      multiple=True, dest="key_pub", metavar="KEY.pub"),
                  Opt("--remote", "where the device pulls updates (http://HOST/PATH or file:///PATH)", default="",
                      metavar="URL"),
                  Opt("--branch", "the branch the device follows (default: the commit's)", metavar="B"),
                  Opt("--env-output", "where the env image goes when the env lives in flash (default IMAGE.env)",
                      metavar="PATH"),
                  Opt("--no-env", "write no U-Boot env (boot.cmd then reads boot/updater-env.txt)", flag=True,
                      dest="no_env"),
                  Opt("--boot-cmd", "boot script source (default bootloader-scripts/boot.cmd) or a compiled boot.scr",
                      metavar="PATH"),
                  Opt("--source-date-epoch", "time stamp for every file (default SOURCE_DATE_EPOCH, else the commit time)",
                      kind=int, metavar="T")],
         state=True, host=True)
def cmd_provision(ctx, opts):
    from . import provision

    if not opts.get("board"):
        raise UsageError("provision: --board is required", "updater board list shows the known boards")
    if not opts.get("repo"):
        raise UsageError("provision: --repo is required (the build server's repository)")
    if bool(opts.output) == bool(opts.target):
        raise UsageError("provision: give exactly one of --output IMAGE and --target DIR")
    common = {"unit_values": _unit_values(opts.set), "source_date_epoch": opts.source_date_epoch,
              "key_pub": opts.key_pub, "remote": opts.remote, "branch": opts.branch,
              "env_output": opts.env_output, "write_env": not opts.no_env, "boot_cmd": opts.boot_cmd,
              "say": ctx.say, "progress": ctx.progress("copying objects")}
    if opts.target:
        if opts.size:
            raise UsageError("provision: --size applies to --output images, not --target")
        record = provision.provision_target(opts.board, opts.repo, opts.ref, opts.target, **common)
    else:
        record = provision.provision_image(opts.board, opts.repo, opts.ref, opts.output, size=opts.size, **common)
    ctx.emit(record, _human)
