"""Test-only trace of durable operations, set by the environment variable UPDATER_TRACE_OPS.

The QEMU power-cut tests (tests/qemu/test_powercut.py) need to know where an updater running
inside the guest has got to, so they can cut the power (kill -9 QEMU) at a chosen durable
operation. ``updater.cli.main`` calls ``install_from_env`` once; without the variable nothing is
installed and nothing changes. Each durable operation of ``updater.fs`` (``fs.set_hook``: write,
fsync, rename, link, unlink, mkdir, write_phys, ...) is numbered from 1 in one process.

    UPDATER_TRACE_OPS=1               print "updater-op N KIND PATH" on stderr before each operation
    UPDATER_TRACE_OPS=stop:N          at operation N (before doing it): print its line and
                                      "updater-op stopped: ..." on stderr, then sleep for ever
    UPDATER_TRACE_OPS=stop:N:TEXT     the same at the N-th operation whose "KIND PATH" contains
                                      TEXT (e.g. stop:1:rename /sysroot/updater/deploy/)

A stopped process holds whatever it held (the sysroot lock, a half-written file), like a device
whose power is about to fail; the test then kills the machine. Never set it on a real device.
"""

import sys
import time

from . import fs
from .errors import UsageError

ENV_VAR = "UPDATER_TRACE_OPS"
TRACE_FORMAT = 1  # the line formats above
MAX_TEXT = 200


def parse(spec):
    """(print every op?, stop at N or None, match text or None) from the variable's value."""
    if spec == "1":
        return True, None, None
    parts = spec.split(":", 2)
    if parts[0] == "stop" and len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) >= 1:
        text = parts[2] if len(parts) == 3 else None
        if text is not None and not 1 <= len(text) <= MAX_TEXT:
            raise UsageError("%s=%s: the match text must be 1-%d characters" % (ENV_VAR, spec[:40], MAX_TEXT))
        return False, int(parts[1]), text
    raise UsageError("%s=%s: expected 1, stop:N or stop:N:TEXT" % (ENV_VAR, spec[:40]),
                     "unset %s (it is only for the QEMU power-cut tests)" % ENV_VAR)


class Tracer:
    """The fs hook: numbers operations, prints them, stops at the chosen one."""

    def __init__(self, spec, stream, sleep=None):
        self.spec = spec
        self.print_all, self.stop_at, self.text = parse(spec)
        self.stream = stream
        self.sleep = sleep or time.sleep
        self.count = 0
        self.matched = 0

    def line(self, op, path):
        return "updater-op %d %s %s\n" % (self.count, op, path)

    def __call__(self, op, path):
        self.count += 1
        if self.print_all:
            self.stream.write(self.line(op, path))
            return
        if self.text is not None:
            if self.text not in "%s %s" % (op, path):
                return
            self.matched += 1
            hit = self.matched == self.stop_at
        else:
            hit = self.count == self.stop_at
        if hit:
            self.stream.write(self.line(op, path))
            self.stream.write("updater-op stopped: %s=%s reached operation %d; waiting for the power cut\n"
                              % (ENV_VAR, self.spec, self.count))
            if hasattr(self.stream, "flush"):
                self.stream.flush()
            self.stop()

    def stop(self):
        while True:
            self.sleep(3600)


def install_from_env(getenv, stream=None):
    """Install a Tracer as the fs hook when $UPDATER_TRACE_OPS is set; returns it (or None)."""
    spec = getenv(ENV_VAR)
    if not spec:
        return None
    tracer = Tracer(spec, stream or sys.stderr)
    fs.set_hook(tracer)
    return tracer
