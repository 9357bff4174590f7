"""Build-server commands: keygen, sign, publish, summary (show and verify what is published)."""

from .. import fs
from ..commands import Arg, Lazy, Opt, command
from ..errors import ConfigError, UsageError

signature = Lazy("updater.signature")
summary = Lazy("updater.summary")
trust = Lazy("updater.trust")
objects = Lazy("updater.objects")
sysroot_mod = Lazy("updater.sysroot")
keys_mod = Lazy("updater.host.keys")
publish_mod = Lazy("updater.host.publish")

_KEY_OPT = Opt("--key", "private key file (repeat to sign with several, e.g. old and new during a rotation)",
               multiple=True, required=True, metavar="KEY")


def _load_keys(ctx, paths):
    return [keys_mod.load_key(p, ctx.say) for p in paths]


@command("keygen", "Create an Ed25519 signing key pair: KEY (private, mode 0600) and KEY.pub",
         options=[Opt("--out", "where to write the private key; the public key goes to OUT.pub",
                      required=True, metavar="KEY"),
                  Opt("--force", "replace existing files (the old key is lost)", flag=True)],
         state=True, host=True)
def cmd_keygen(ctx, opts):
    key = keys_mod.keygen(opts.out, force=opts.force)
    ctx.emit({"private_key": opts.out, "public_key": opts.out + ".pub", "key_id": key.hexid(),
              "public": key.public.hex()},
             lambda d: "wrote %s (keep it secret) and %s\nkey id %s; give devices the .pub file (init --trust)"
             % (d["private_key"], d["public_key"], d["key_id"]))


@command("sign", "Sign one commit (adds to its signature file REPO/objects/XX/YYYY.sig)",
         args=[Arg("REV", "branch, checksum or unique prefix")], options=[_KEY_OPT], state=True, host=True)
def cmd_sign(ctx, opts):
    repo = ctx.repo()
    keys = _load_keys(ctx, opts.key)
    with repo.lock(not opts.no_wait, ctx.say):
        cid = repo.resolve(opts.rev)
        added = keys_mod.sign_commit(repo, cid, keys)
    blob = trust.read_commit_sig(repo, cid)
    ctx.emit({"commit": objects.to_hex(cid), "added": added, "signed_by": signature.signers(blob)},
             lambda d: "commit %s: %s; signed by %s" % (d["commit"][:12], "added " + ", ".join(d["added"])
                                                         if d["added"] else "already signed", ", ".join(d["signed_by"])))


@command("publish", "Sign branch heads and write the signed summary (REPO/summary, summary.sig)",
         options=[_KEY_OPT,
                  Opt("--expires", "days until devices refuse this summary unless re-published (default 30)",
                      kind=int, default=30, metavar="DAYS"),
                  Opt("--serial", "use this serial (only to recover a lost summary: must exceed the last one)",
                      kind=int, metavar="N")],
         state=True, host=True)
def cmd_publish(ctx, opts):
    repo = ctx.repo()
    keys = _load_keys(ctx, opts.key)
    with repo.lock(not opts.no_wait, ctx.say):
        report = publish_mod.publish(repo, keys, opts.expires, serial=opts.serial, warn=ctx.say)

    def human(d):
        lines = ["published serial %d, expires %s, signed by %s"
                 % (d["serial"], summary.iso(d["expires"]), ", ".join(d["keys"]))]
        for name in sorted(d["branches"]):
            b = d["branches"][name]
            lines.append("  %s %s %s" % (name, b["commit"][:12], b["version"]))
        lines.append("  %d deltas; %d commits newly signed" % (len(d["deltas"]), len(d["signed_commits"])))
        return "\n".join(lines)

    ctx.emit(report, human)


def _read_trusted(paths):
    out = {}
    for path in paths:
        if fs.lstat(path) is None:
            raise ConfigError("reading trusted key %s: no such file" % path)
        out[fs.basename(path)] = sysroot_mod.parse_public_key(fs.read_bytes(path, 4096, "reading trusted key"), path)
    return out


@command("summary", "Show the repository's published summary; with --trust, verify it as a device would",
         options=[Opt("--trust", "a public key file to verify with (repeatable)", multiple=True, metavar="KEY.pub"),
                  Opt("--now", "the time to check expiry at (seconds since 1970; default now)", kind=int, metavar="T")],
         state=True, host=True)
def cmd_summary(ctx, opts):
    repo = ctx.repo()
    path = fs.join(repo.path, "summary")
    if fs.lstat(path) is None:
        raise UsageError("showing the summary of %s: nothing is published yet" % repo.path,
                         "updater --repo %s publish --key KEY" % repo.path)
    data = fs.read_bytes(path, summary.MAX_SUMMARY_BYTES, "reading summary")
    sig_path = fs.join(repo.path, summary.signature_name(data))
    if fs.lstat(sig_path) is None:
        sig_path = fs.join(repo.path, "summary.sig")
    blob = fs.read_bytes(sig_path, signature.MAX_SIG_BYTES, "reading summary signature") if fs.exists(sig_path) else b""
    if opts.trust:
        s = summary.parse_verified(data, blob, _read_trusted(opts.trust),
                                   opts.now if opts.now is not None else trust.device_now())
    else:
        s = summary.decode_unverified(data)
    d = {"serial": s.serial, "timestamp": s.timestamp, "expires": s.expires, "verified_by": s.verified_by,
         "signed_by": signature.signers(blob),
         "branches": dict((n, {"commit": objects.to_hex(b.commit), "version": b.version, "timestamp": b.timestamp,
                               "board": b.board}) for n, b in s.branches.items()),
         "deltas": [{"name": x.name(), "superblock_sha256": objects.to_hex(x.superblock_sha256),
                     "superblock_size": x.superblock_size, "total_size": x.total_size} for x in s.deltas]}

    def human(d):
        lines = ["serial %d, published %s, expires %s" % (d["serial"], summary.iso(d["timestamp"]), summary.iso(d["expires"])),
                 "signed by %s%s" % (", ".join(d["signed_by"]) or "nobody",
                                     ("; verified with " + d["verified_by"]) if d["verified_by"] else " (not verified)")]
        for name in sorted(d["branches"]):
            b = d["branches"][name]
            lines.append("branch %s: %s version %s" % (name, b["commit"], b["version"] or '""'))
        for x in d["deltas"]:
            lines.append("delta %s: %d bytes" % (x["name"], x["total_size"]))
        return "\n".join(lines)

    ctx.emit(d, human)
