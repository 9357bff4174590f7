"""Host commands for the field technician: ``updater console list|status|push|uboot env|uboot rollback``.

The serial port is a pyserial URL (--port). See docs/field-technician.md for what each error
means and what to try.
"""

import os
import time

from .. import serialframe as sf
from ..commands import Arg, Opt, command
from ..errors import FetchError, UsageError

PORT = Opt("--port", "serial port: /dev/ttyUSB0, socket://HOST:PORT, rfc2217://HOST:PORT, loop://", metavar="URL",
           required=True)
BAUD = Opt("--baud", "line speed", kind=int, default=115200)
LOG = Opt("--log", "append everything the device prints to this file", metavar="FILE")
SHELL = [Opt("--login", "user name, if the console asks for a login", metavar="USER"),
         Opt("--password-env", "environment variable holding the login password", metavar="VAR"),
         Opt("--prompt", "regular expression matching the end of the shell prompt", metavar="REGEX"),
         Opt("--device-cmd", "how to run updater on the device", default="updater --sysroot /sysroot",
             metavar="CMD")]
UBOOT = [Opt("--wait", "seconds to wait for U-Boot (power the device on meanwhile)", kind=int, default=30,
             metavar="SEC"),
         Opt("--reboot", "if Linux answers, reboot it with this command and catch U-Boot", metavar="CMD")]


def open_console(opts):
    from .console import SHELL_PROMPT, Console

    log = open(opts.log, "ab") if opts.get("log") else None
    prompt = opts.get("prompt")
    return Console(opts.port, baud=opts.baud, log=log,
                   shell_prompt=prompt.encode() if prompt else SHELL_PROMPT).open()


def credentials(opts):
    password = None
    var = opts.get("password_env")
    if var:
        password = os.environ.get(var)
        if password is None:
            raise UsageError("--password-env %s: that environment variable is not set" % var)
    return opts.get("login"), password


def board_vars(opts):
    from ..board import DEFAULT_VARS, load

    return load(opts.board).boot.vars if opts.get("board") else dict(DEFAULT_VARS)


# --- list ---------------------------------------------------------------------------------------
@command("console list", "List serial ports with their USB ids", state=True, host=True)
def cmd_list(ctx, opts):
    from serial.tools import list_ports

    ports = []
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        ports.append({"device": p.device, "description": p.description if p.description != "n/a" else None,
                      "vid": ("%04x" % p.vid) if p.vid is not None else None,
                      "pid": ("%04x" % p.pid) if p.pid is not None else None,
                      "serial_number": p.serial_number, "manufacturer": p.manufacturer, "location": p.location})

    def human(d):
        if not d["ports"]:
            return "no serial ports found (plug the adapter in; socket:// and rfc2217:// URLs work without one)"
        lines = []
        for p in d["ports"]:
            usb = "%s:%s" % (p["vid"], p["pid"]) if p["vid"] else "-"
            lines.append("%-16s %-9s %s%s" % (p["device"], usb, p["description"] or "",
                                              (" serial " + p["serial_number"]) if p["serial_number"] else ""))
        return "\n".join(lines)

    ctx.emit({"ports": ports}, human)
    return 0


# --- status -------------------------------------------------------------------------------------
def device_json(console, device_cmd, args, timeout=60.0):
    """Run ``DEVICE_CMD ARGS --json`` in the device's shell; the JSON document it printed."""
    import json

    rc, out = console.run("%s %s --json" % (device_cmd, args), timeout)
    doc = None
    for line_start in [i for i, ch in enumerate(out) if ch == "{" and (i == 0 or out[i - 1] == "\n")]:
        try:
            doc = json.loads(out[line_start:out.rfind("}") + 1])
            break
        except ValueError:
            continue
    if rc == 127 or (doc is None and "not found" in out):
        raise FetchError("running '%s %s' on %s: the device has no such command (%s)"
                         % (device_cmd, args, console.url, out.strip()[-200:]),
                         "pass --device-cmd with how updater runs there, e.g. 'python3 -m updater --sysroot /sysroot'")
    if doc is None:
        raise FetchError("running '%s %s' on %s: exit code %d and no JSON document in its output: %r"
                         % (device_cmd, args, console.url, rc, out.strip()[-300:]),
                         "run it by hand in a terminal program to see what it says")
    return rc, doc, out


def _human_doc(doc, indent=""):
    lines = []
    for key in sorted(doc):
        value = doc[key]
        if isinstance(value, dict):
            lines.append("%s%s:" % (indent, key))
            lines += _human_doc(value, indent + "  ")
        elif isinstance(value, list):
            lines.append("%s%s: %s" % (indent, key, "" if value else "(none)"))
            for item in value:
                if isinstance(item, dict):
                    lines.append(indent + "  -")
                    lines += _human_doc(item, indent + "    ")
                else:
                    lines.append("%s  - %s" % (indent, item))
        else:
            lines.append("%s%s: %s" % (indent, key, "-" if value is None else value))
    return lines


@command("console status", "Show a device's update status over its serial console", state=True, host=True,
         options=[PORT, BAUD, LOG] + SHELL + [Opt("--timeout", "seconds to wait for the answer", kind=int, default=60)])
def cmd_status(ctx, opts):
    login, password = credentials(opts)
    with open_console(opts) as con:
        con.reach_shell(login, password, timeout=min(10, opts.timeout))
        rc, doc, _ = device_json(con, opts.device_cmd, "status", opts.timeout)
    ctx.emit(doc, _status_text)
    return 0 if rc == 0 else 1


def _status_text(doc):
    """The device's own wording (updater status) when the document has its shape, else key: value lines."""
    try:
        from ..cmd_device import status_text

        return status_text(doc)
    except (ImportError, KeyError, TypeError, ValueError, AttributeError):
        return "\n".join(_human_doc(doc))


# --- push ---------------------------------------------------------------------------------------
@command("console push", "Send a bundle over the serial console and install it on the device", state=True, host=True,
         args=[Arg("BUNDLE", "the bundle file (updater bundle -o FILE)")],
         options=[PORT, BAUD, LOG] + SHELL + [
             Opt("--encoding", "raw (fast; the device puts its tty in raw mode) or base64 (printable lines)",
                 choices=sf.ENCODINGS, default="raw"),
             Opt("--frame", "payload bytes per frame", kind=int, default=sf.DEFAULT_PAYLOAD, metavar="BYTES"),
             Opt("--window", "bytes sent ahead of the last acknowledgement", kind=int, default=8192, metavar="BYTES"),
             Opt("--timeout", "give up when the line is dead this long (seconds, reconnecting meanwhile)",
                 kind=int, default=60, metavar="SEC"),
             Opt("--line-timeout", "seconds of silence after which the line counts as dropped", kind=int, default=10,
                 metavar="SEC"),
             Opt("--receive-args", "extra options for 'updater receive' on the device", default="", metavar="ARGS")])
def cmd_push(ctx, opts):
    from .transfer import push

    if not os.path.isfile(opts.bundle):
        raise UsageError("push: %s is not a file" % opts.bundle, "pass the bundle written by 'updater bundle -o FILE'")
    if not 0 < opts.frame <= sf.MAX_PAYLOAD:
        raise UsageError("option --frame: expected 1 to %d bytes, got %d" % (sf.MAX_PAYLOAD, opts.frame))
    login, password = credentials(opts)
    report = ctx.progress("push")
    started = []

    def progress(done, total=None):
        if not started and hasattr(report, "start"):  # the rate counts from the first data, not the prompt
            started.append(done)
            from ..progress import now_ms

            report.start = now_ms()
        report(done, total)

    doc = push(lambda: open_console(opts), opts.bundle, device_cmd=opts.device_cmd, login=login, password=password,
               encoding=opts.encoding, frame=opts.frame, window=opts.window, timeout=opts.timeout,
               line_timeout=opts.line_timeout, receive_args=opts.receive_args, progress=progress, notify=ctx.say)
    if hasattr(report, "finish"):
        report.finish()
    return _show_result(ctx, doc)


def _show_result(ctx, doc):
    def human(d):
        if d.get("ok"):
            res = d.get("result") or {}
            extra = "".join("\n  %s: %s" % (k, res[k]) for k in sorted(res) if not isinstance(res[k], (dict, list)))
            return "installed %s (%d bytes) on the device%s" % (d.get("bundle"), d.get("size") or 0, extra)
        err = d.get("error") or {}
        text = "the device did not install %s (%s step): %s" % (d.get("bundle"), d.get("stage"), err.get("message"))
        if err.get("hint"):
            text += "\n  try: " + err["hint"]
        return text

    ctx.emit(doc, human)
    return 0 if doc.get("ok") else 1


# --- U-Boot -------------------------------------------------------------------------------------
@command("console uboot env", "Stop U-Boot's autoboot and show its environment (the boot contract first)",
         state=True, host=True,
         options=[PORT, BAUD, LOG] + UBOOT + [Opt("--all", "show every variable, not only the boot contract",
                                                  flag=True)])
def cmd_uboot_env(ctx, opts):
    from . import uboot_console as ub

    names = board_vars(opts)
    with open_console(opts) as con:
        ub.reach(con, opts.wait, opts.reboot)
        env = ub.read_env(con)
    c = ub.contract(env, names)
    doc = {"port": opts.port, "contract": c, "vars": names, "env": env}

    def human(d):
        lines = ["boot contract (U-Boot at %s):" % d["port"]]
        for key in ("current", "trial", "count", "limit", "failed"):
            value = d["contract"][key]
            lines.append("  %-8s %-12s %s" % (key, d["vars"][key], "(not set)" if value is None else value))
        if opts.all:
            lines.append("environment:")
            lines += ["  %s=%s" % (k, d["env"][k]) for k in sorted(d["env"])]
        else:
            lines.append("(%d variables in all; --all shows them)" % len(d["env"]))
        return "\n".join(lines)

    ctx.emit(doc, human)
    return 0


@command("console uboot rollback", "Boot the previous (known-good) deployment from U-Boot: clear the trial, saveenv, boot",
         state=True, host=True,
         options=[PORT, BAUD, LOG] + UBOOT + [
             Opt("--to", "make this deployment the known-good one instead", metavar="NAME"),
             Opt("--no-boot", "save the environment but do not boot", flag=True)])
def cmd_uboot_rollback(ctx, opts):
    from . import uboot_console as ub

    names = board_vars(opts)
    with open_console(opts) as con:
        ub.reach(con, opts.wait, opts.reboot)
        env = ub.read_env(con)
        changes, why = ub.plan_rollback(env, names, opts.to)
        ctx.say("rollback: %s" % why)
        ub.apply(con, changes)
        booted = None
        if not opts.no_boot:
            booted = ub.boot(con)
    after = dict(env)
    for name, value in changes.items():
        if value is None:
            after.pop(name, None)
        else:
            after[name] = value
    doc = {"port": opts.port, "plan": why, "changes": changes, "before": ub.contract(env, names),
           "after": ub.contract(after, names), "saved": True, "booted": not opts.no_boot, "boot_line": booted,
           "time": int(time.time())}

    def human(d):
        lines = ["rolled back: %s" % d["plan"], "saved: " + ", ".join(
            "%s=%s" % (k, "(deleted)" if v is None else v) for k, v in sorted(d["changes"].items()))]
        if d["booted"]:
            lines.append("booting: %s" % (d["boot_line"] or "(boot sent; no boot line seen yet)"))
        return "\n".join(lines)

    ctx.emit(doc, human)
    return 0
