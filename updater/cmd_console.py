"""Device commands for the serial console: ``receive`` (the device end of ``updater console push``)."""

from .commands import Lazy, Opt, command
from .errors import UsageError

sf = Lazy("updater.serialframe")
ENCODINGS = ("raw", "base64")  # serialframe.ENCODINGS (kept here so option parsing needs no import)


def parse_size(text):
    from .board import parse_size as parse

    return parse(text, "option --max-size")


@command("receive", "Receive a bundle over the serial console and install it (run by 'updater console push')",
         options=[Opt("--port", "the serial device to use (default: this console, stdin/stdout)", metavar="PATH"),
                  Opt("--baud", "line speed for --port", kind=int, default=115200),
                  Opt("--encoding", "raw (tty in raw mode) or base64 (lines, for consoles that cannot be raw)",
                      choices=ENCODINGS, default="raw"),
                  Opt("--max-size", "refuse bundles larger than this", metavar="SIZE", default="512M"),
                  Opt("--no-deploy", "only install into the repository (as 'updater install'), do not stage a "
                      "deployment", flag=True, dest="no_deploy"),
                  Opt("--idle-timeout", "give up after this many seconds without a frame (the partial file "
                      "is kept for a resume)", kind=int, default=60, metavar="SEC")],
         description="Speaks the framed protocol of docs/serial-protocol.md on the console; the host side "
                     "is 'updater console --port URL push BUNDLE'. The received bundle is verified and "
                     "installed like 'updater install', then deployed for a trial boot like 'updater upgrade' "
                     "does (unless --no-deploy); the result goes back to the host.")
def cmd_receive(ctx, opts):
    from . import receive
    from .fs.tty import Port

    max_total = parse_size(opts.max_size)
    if not 0 < max_total <= sf.MAX_TOTAL_LIMIT:
        raise UsageError("option --max-size: expected 1 to %d bytes, got %d" % (sf.MAX_TOTAL_LIMIT, max_total))
    if opts.idle_timeout < 1:
        raise UsageError("option --idle-timeout: expected at least 1 second, got %d" % opts.idle_timeout)
    sysroot = ctx.sysroot_path()
    port = Port.open(opts.port, opts.baud) if opts.port else Port.stdio()
    try:
        summary = receive.run(sysroot, port, max_total=max_total, idle_timeout_ms=opts.idle_timeout * 1000,
                              encoding=opts.encoding, deploy=not opts.no_deploy)
    finally:
        port.close()
    return report(ctx, summary)


def report(ctx, summary):
    """A line on stderr once the console is back to normal; exit 0 only if the bundle installed."""
    result = summary.get("result")
    if result is None:
        if summary.get("size"):
            ctx.say("receive: stopped at %d of %d bytes; the partial file is kept: push again to resume"
                    % (summary["held"], summary["size"]))
        else:
            ctx.say("receive: no transfer started")
        return 1
    if result.get("ok"):
        ctx.say("receive: %d bytes received and installed" % summary["size"])
        return 0
    err = result.get("error") or {}
    ctx.say("receive: %s failed: %s" % (result.get("stage"), err.get("message")))
    return 1
