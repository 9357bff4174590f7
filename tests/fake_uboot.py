"""A scripted U-Boot 2023.01 console for the rescue-command tests (run on a pty slave).

Usage: fake_uboot.py ENV_JSON [--at-prompt] [--bootdelay N]

Prints the banner and the autoboot countdown of Debian's u-boot-qemu 2023.01 (texts copied
from a real session under QEMU), stops on any key, and answers at its ``=> `` prompt: echo
(with $?), printenv [NAME...], setenv NAME [VALUE], saveenv (writes ENV_JSON, as the flash
driver reports it), boot/bootd/run bootcmd (a model of the boot script's choice: it prints
"updater: booting NAME", then "Starting kernel ..." and becomes a Linux shell with a "# "
prompt that understands reboot), reset, and Ctrl-C (<INTERRUPT>). Anything else: "Unknown
command 'x' - try 'help'". Lines are split on ';' like the hush parser does for simple input.
"""

import json
import os
import sys
import termios
import time
import tty

fd_in, fd_out = 0, 1


def out(text):
    os.write(fd_out, text.encode())


def getc(timeout=None):
    import select

    r, _, _ = select.select([fd_in], [], [], timeout)
    if not r:
        return None
    data = os.read(fd_in, 1)
    if not data:
        sys.exit(0)
    return data


class UBoot:
    def __init__(self, path, bootdelay):
        self.path = path
        with open(path) as f:
            self.saved = json.load(f)
        self.env = dict(self.saved)
        self.bootdelay = bootdelay
        self.rc = 0

    def banner(self):
        self.env = dict(self.saved)
        out("\r\n\r\nU-Boot 2023.01+dfsg-2+deb12u3 (Jun 22 2026 - 08:38:07 +0000)\r\n\r\nDRAM:  64 MiB\r\n"
            "Core:  47 devices, 13 uclasses, devicetree: board\r\nFlash: 64 MiB\r\nLoading Environment from Flash... OK\r\n"
            "In:    pl011@9000000\r\nOut:   pl011@9000000\r\nErr:   pl011@9000000\r\nNet:   No ethernet found.\r\n")
        delay = int(self.env.get("bootdelay", self.bootdelay))
        out("Hit any key to stop autoboot: %2d " % delay)
        for left in range(delay, 0, -1):
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                if getc(0.05) is not None:
                    out("\x08\x08\x08 0 \r\n")
                    return True
            out("\x08\x08\x08%2d " % (left - 1))
        out("\r\n")
        return False

    def run_line(self, text):
        for cmd in text.split(";"):
            words = cmd.replace("$?", str(self.rc)).split()
            if not words:
                continue
            name, args = words[0], words[1:]
            if name == "echo":
                out(" ".join(args) + "\r\n")
                self.rc = 0
            elif name == "printenv":
                self.rc = 0
                if not args:
                    for key in sorted(self.env):
                        out("%s=%s\r\n" % (key, self.env[key]))
                    size = sum(len(k) + len(v) + 2 for k, v in self.env.items())
                    out("\r\nEnvironment size: %d/262140 bytes\r\n" % size)
                for key in args:
                    if key in self.env:
                        out("%s=%s\r\n" % (key, self.env[key]))
                    else:
                        out('## Error: "%s" not defined\r\n' % key)
                        self.rc = 1
            elif name == "setenv":
                if not args:
                    out("setenv - set environment variables\r\n")
                    self.rc = 1
                elif len(args) == 1:
                    self.env.pop(args[0], None)
                    self.rc = 0
                else:
                    self.env[args[0]] = " ".join(args[1:])
                    self.rc = 0
            elif name == "saveenv":
                out("Saving Environment to Flash... Un-Protected 2 sectors\r\nErasing Flash...\r\n.. done\r\n"
                    "Erased 2 sectors\r\nWriting to Flash... done\r\nProtected 2 sectors\r\nOK\r\n")
                self.saved = dict(self.env)
                with open(self.path + ".tmp", "w") as f:
                    json.dump(self.saved, f)
                os.rename(self.path + ".tmp", self.path)
                self.rc = 0
            elif name in ("boot", "bootd") or (name == "run" and args == ["bootcmd"]):
                return self.boot()
            elif name == "reset":
                out("resetting ...\r\n")
                return "reset"
            else:
                out("Unknown command '%s' - try 'help'\r\n" % name)
                self.rc = 1
        return None

    def boot(self):
        cur, trial = self.env.get("upd_current"), self.env.get("upd_trial")
        count, limit = int(self.env.get("upd_count", "0") or 0), int(self.env.get("upd_limit", "3") or 3)
        target = cur
        if trial and count < limit:
            self.env["upd_count"] = str(count + 1)
            target = trial
            self.saved = dict(self.env)
            with open(self.path, "w") as f:
                json.dump(self.saved, f)
        if not target:
            out("updater: no bootable deployment (upd_current= upd_trial=)\r\n")
            self.rc = 1
            return None
        out("updater: booting %s: updater.deployment=%s\r\n" % (target, target))
        out("Starting kernel ...\r\n\r\n[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x411fd070]\r\n")
        return "linux"

    def linux(self):
        out("\r\n# ")
        line = b""
        while True:
            ch = getc()
            if ch in (b"\r", b"\n"):
                out("\r\n")
                cmd = line.decode().strip()
                line = b""
                if cmd == "reboot":
                    out("[   10.000000] reboot: Restarting system\r\n")
                    return
                if cmd:
                    out("sh: %s: not found\r\n" % cmd.split()[0])
                out("# ")
            elif ch == b"\x03":
                line = b""
                out("^C\r\n# ")
            else:
                line += ch
                os.write(fd_out, ch)


def main(argv):
    path = argv[0]
    at_prompt = "--at-prompt" in argv
    bootdelay = int(argv[argv.index("--bootdelay") + 1]) if "--bootdelay" in argv else 2
    if os.isatty(fd_in):
        tty.setraw(fd_in, termios.TCSANOW)
    ub = UBoot(path, bootdelay)
    stopped = at_prompt or ub.banner()
    while True:
        if stopped:
            result = None
            line = b""
            out("=> ")
            while result is None:
                ch = getc()
                if ch == b"\x03":
                    line = b""
                    out("<INTERRUPT>\r\n=> ")
                    continue
                if ch in (b"\r", b"\n"):
                    out("\r\n")
                    result = ub.run_line(line.decode("utf-8", "replace"))
                    line = b""
                    if result is None:
                        out("=> ")
                    continue
                if ch in (b"\x08", b"\x7f"):
                    line = line[:-1]
                    out("\x08 \x08")
                    continue
                line += ch
                os.write(fd_out, ch)
            if result == "reset":
                stopped = ub.banner()
                continue
            ub.linux()
        else:
            ub.boot()
            ub.linux()
        stopped = ub.banner()


if __name__ == "__main__":
    main(sys.argv[1:])
