"""The ``updater`` command line: global options, dispatch, and the one place errors become exit codes.

Exit codes: 0 ok, 1 operation failed, 2 usage or configuration error (130 on Ctrl-C).
With ``--json`` a failure also prints {"ok": false, "error": {...}} on stdout for scripts.
"""

import os
import sys

from . import __version__, jsonout
from .argv import Opt, Parser
from .commands import REGISTRY, Context
from .errors import UpdaterError, UsageError, describe

SUMMARY = ("Atomic, content-addressed OS updates for embedded Linux devices booted by U-Boot.\n"
           "Repository commands take --repo PATH; device commands take --sysroot PATH.")

GLOBAL_OPTIONS = [
    Opt("--repo", "the repository to work on", metavar="PATH"),
    Opt("--sysroot", "the device sysroot (its repository, deployments and configuration)", metavar="PATH"),
    Opt("--board", "board config: a name from board-configs/ or a file path", metavar="NAME"),
    Opt("--no-wait", "fail at once (exit 1) if another updater holds the lock", flag=True),
    Opt(("-q", "--quiet"), "no progress or status lines on stderr", flag=True),
    Opt(("-v", "--verbose"), "show a traceback for unexpected errors", flag=True),
    Opt("--json", "print one JSON document on stdout (state commands)", flag=True),
    Opt("--version", "print the version and exit", flag=True),
]

# Command modules of the device core, then host modules (present only with the host extra).
DEVICE_MODULES = ("cmd_repo", "cmd_env", "cmd_console", "cmd_device", "cmd_pull")
HOST_MODULES = ("cmd_build", "cmd_sign", "cmd_console", "cmd_delta", "cmd_provision")
# Third-party modules whose absence just means "no host tools here".
_HOST_DEPS = ("cbor2", "bsdiff4", "serial", "cryptography", "zstandard")

_loaded = []


def _load_modules():
    if _loaded:
        return
    _loaded.append(True)
    for name in DEVICE_MODULES:
        __import__("updater." + name)
    if sys.implementation.name == "micropython":
        return
    for name in HOST_MODULES:
        try:
            __import__("updater.host." + name)
        except ImportError as err:
            missing = getattr(err, "name", None) or ""
            # A device install ships the core without updater/host: no host tools there.
            if missing.split(".")[0] not in _HOST_DEPS and missing not in ("updater.host",
                                                                           "updater.host." + name):
                raise


def build_parser():
    _load_modules()
    return Parser("updater", SUMMARY, GLOBAL_OPTIONS, REGISTRY)


def _error_doc(err):
    return {"ok": False, "error": {"type": err.__class__.__name__, "message": str(err),
                                   "hint": getattr(err, "hint", None)}}


def main(argv=None, stdout=None, stderr=None):
    out = stdout if stdout is not None else sys.stdout
    err_stream = stderr if stderr is not None else sys.stderr
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser()
    want_json = "--json" in argv
    try:
        cmd, gns, ns = parser.parse(argv)
    except UsageError as err:
        err_stream.write("updater: %s\n" % describe(err))
        if want_json:
            out.write(jsonout.dumps(_error_doc(err)) + "\n")
        return err.exit_code
    if cmd is None:
        if gns.get("version"):
            out.write("updater %s\n" % __version__)
            return 0
        if gns.get("help"):
            out.write(parser.help_main(gns.get("help_group")) + "\n")
            return 0
        if gns.get("help_group"):
            out.write(parser.help_main(gns.get("help_group")) + "\n")
            return 0
        err_stream.write(parser.help_main() + "\n")
        return 2
    if ns.help:
        out.write(parser.help_command(cmd) + "\n")
        return 0
    ctx = Context(ns, out, err_stream)
    try:
        if os.getenv("UPDATER_TRACE_OPS"):  # test-only (QEMU power cuts): see updater/optrace.py
            from . import optrace

            optrace.install_from_env(os.getenv, err_stream)
        rc = cmd.run(ctx, ns)
        return 0 if rc is None else int(rc)
    except UpdaterError as err:
        err_stream.write("updater: %s\n" % describe(err))
        if ctx.json:
            out.write(jsonout.dumps(_error_doc(err)) + "\n")
        return err.exit_code
    except KeyboardInterrupt:
        err_stream.write("updater: interrupted\n")
        return 130
    except MemoryError:
        err_stream.write("updater: out of memory while running '%s'\n" % cmd.name)
        return 1
    except OSError as err:
        if ns.get("verbose"):
            raise
        err_stream.write("updater: unexpected system error in '%s': %r\n  try: run again with -v and report it\n"
                         % (cmd.name, err))
        return 1


if __name__ == "__main__":
    sys.exit(main())
