"""U-Boot at the far end of a serial console: stop autoboot, read the environment, roll back, boot.

For a device that no longer reaches Linux. ``reach(console, wait)`` stops the autoboot
countdown (it waits for "Hit any key to stop autoboot" and sends a key) or confirms the prompt;
``command`` runs one U-Boot command line between markers; ``read_env`` parses ``printenv``;
``plan_rollback`` decides the boot-contract changes (docs/field-technician.md): with a trial
deployment set, the trial is recorded as failed and cleared, so the script boots the
known-good ``current``; ``--to NAME`` makes NAME the known-good one instead. ``apply`` sets the
variables, reads them back, and runs saveenv.
"""

import binascii
import os
import re
import time

from ..board import DEFAULT_VARS
from ..errors import BootError, EnvError, FetchError, UsageError

NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
UBOOT_ERROR = re.compile(r"^(## Error|Unknown command|Error:|FAILED|Failed)", re.M)


def reach(console, wait=30.0, reboot=None):
    """Get to the U-Boot prompt within ``wait`` seconds.

    A Linux shell (or login prompt) answering is an error unless ``reboot`` is a command to
    type there (e.g. "reboot"): then the autoboot countdown of the next boot is caught.
    """
    deadline = time.monotonic() + wait
    rebooted = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise console.no_answer("stopping U-Boot's autoboot")
        state = console.probe(timeout=min(left, 3.0), listen=0.3)
        if state == "uboot":
            return
        if state == "autoboot":
            console.mark()
            console.write(b"\x03")
            idx, _ = console.expect([console.uboot_prompt], min(5.0, max(left, 1.0)))
            if idx == 0:
                console.settle(quiet=0.2, limit=1)
                return
            continue
        if state in ("shell", "login", "password"):
            if reboot and not rebooted:
                if state != "shell":
                    raise FetchError("rebooting the device on %s: it waits for a login, not at a shell" % console.url,
                                     "log in and reboot it by hand, or power-cycle it, within the wait time")
                console.mark()
                console.write(reboot.encode() + b"\r")
                rebooted = True
                console.expect([re.compile(rb"Hit any key|U-Boot 20")], max(1.0, deadline - time.monotonic()))
                continue
            raise FetchError("reaching U-Boot on %s: Linux is running (a %s prompt answered), not the bootloader"
                             % (console.url, "shell" if state == "shell" else "login"),
                             "use 'updater console --port %s status' for a running device; to reach U-Boot, reboot "
                             "it (add --reboot) or power-cycle it while this command waits (--wait SEC)" % console.url)
        if state == "receiver":
            console.abort_receiver()
            continue
        # nothing recognisable yet (booting, or silent): keep listening until the deadline


def command(console, line, timeout=30.0):
    """(exit code, output) of one U-Boot command line, between unique markers."""
    nonce = binascii.hexlify(os.urandom(5)).decode()
    begin = "UPDB" + nonce
    end = "UPDE" + nonce
    console.type_line("echo %s; %s; echo %s $?" % (begin, line, end))
    idx, m = console.expect([re.compile(rb"\n" + begin.encode() + rb"\r?\n")], min(timeout, 10))
    if idx is None:
        raise console.no_answer("running U-Boot command '%s'" % line)
    start = m.end()
    console.cursor = start - 1  # the end marker's pattern starts at this newline when nothing is printed
    idx, m = console.expect([re.compile(rb"\n" + end.encode() + rb" (\d+)\r?\n")], timeout)
    if idx is None:
        raise FetchError("running U-Boot command '%s' on %s: no end after %.0f s" % (line, console.url, timeout),
                         "the device may have reset; run the command again")
    out = bytes(console.buf[start:m.start() + 1]).replace(b"\r\n", b"\n").decode("utf-8", "replace")
    console.expect([console.uboot_prompt], 2)
    return int(m.group(1)), out


def parse_printenv(text):
    """{name: value} from U-Boot's printenv output (error and size lines skipped)."""
    env = {}
    for line in text.split("\n"):
        if not line or line.startswith("Environment size:") or UBOOT_ERROR.match(line):
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            if name and " " not in name:
                env[name] = value
    return env


def read_env(console):
    _, out = command(console, "printenv")
    env = parse_printenv(out)
    if not env:
        raise EnvError("reading the U-Boot environment on %s: printenv printed no variables" % console.url,
                       "look at the console with a terminal program; the environment may be damaged")
    return env


def contract(env, names=None):
    """{key: value or None} of the boot contract (keys current, trial, count, limit, failed)."""
    names = names or DEFAULT_VARS
    return dict((key, env.get(names[key])) for key in names)


def plan_rollback(env, names=None, to=None):
    """({variable: value, None = delete}, explanation) that boots the known-good deployment."""
    names = names or DEFAULT_VARS
    c = contract(env, names)
    if to is not None:
        if not NAME_OK.match(to):
            raise UsageError("--to: '%s' is not a deployment name (letters, digits, '.', '_', '-')" % to)
        changes = {names["current"]: to, names["trial"]: None, names["count"]: "0"}
        return changes, "make %s the known-good deployment and clear any trial" % to
    if c["trial"]:
        if not c["current"]:
            raise BootError("rolling back: %s is set (%s) but %s is empty, so there is no known-good deployment"
                            % (names["trial"], c["trial"], names["current"]),
                            "pass --to NAME with a deployment present on the device")
        changes = {names["trial"]: None, names["count"]: "0", names["failed"]: c["trial"]}
        return changes, "abandon trial %s (recorded in %s) and boot the known-good %s" % (
            c["trial"], names["failed"], c["current"])
    raise BootError("rolling back: no trial deployment is set (%s is empty); the device boots the known-good "
                    "%s=%s" % (names["trial"], names["current"], c["current"] or "(empty)"),
                    "to boot another deployment pass --to NAME; 'updater console uboot env' shows the state")


def apply(console, changes):
    """setenv each change, read the values back, then saveenv. EnvError if U-Boot objects."""
    for name in sorted(changes):
        value = changes[name]
        if value is not None and not NAME_OK.match(value):
            raise UsageError("refusing to set %s to '%s': not a plain name or number" % (name, value))
        rc, out = command(console, "setenv %s %s" % (name, value) if value is not None else "setenv %s" % name)
        if rc != 0 or UBOOT_ERROR.search(out):
            raise EnvError("setting %s on %s: U-Boot said %r" % (name, console.url, out.strip()),
                           "set it by hand at the U-Boot prompt, then saveenv")
    env = parse_printenv(command(console, "printenv " + " ".join(sorted(changes)))[1])
    for name in sorted(changes):
        if env.get(name) != changes[name]:
            raise EnvError("checking %s on %s after setenv: expected %r, got %r" % (name, console.url, changes[name],
                                                                                    env.get(name)),
                           "set it by hand at the U-Boot prompt, then saveenv")
    rc, out = command(console, "saveenv")
    if rc != 0 or UBOOT_ERROR.search(out) or "OK" not in out:
        raise EnvError("saving the environment on %s: U-Boot said %r" % (console.url, out.strip()[-300:]),
                       "the changes are active until the next reset only; check the env storage of this board")
    return out


def boot(console, watch=10.0):
    """Send ``boot``; return the first line that shows what started (or None)."""
    console.mark()
    console.write(b"boot\r")
    idx, m = console.expect([re.compile(rb"(updater: booting [^\r\n]*)\r?\n"), re.compile(rb"(Starting kernel[^\r\n]*)\r?\n"),
                             re.compile(rb"(updater: no bootable deployment[^\r\n]*)\r?\n")], watch)
    if idx is None:
        return None
    line = m.group(1).decode("utf-8", "replace")
    if idx == 2:
        raise BootError("booting on %s: %s" % (console.url, line), "use 'uboot rollback --to NAME' with a deployment "
                        "that is on the device")
    return line
