"""Drive one QEMU ARM virt machine: real U-Boot as -bios, env flash bank, virtio disks, serial console.

The console is a TCP server QEMU opens (``-serial tcp:...,server=on,wait=on``: QEMU waits for us,
so nothing printed before we connect is lost) and we talk to it through pyserial's ``socket://``
transport, the one the field-technician tool uses. A reader thread appends everything to a buffer
and a log file; ``expect`` scans the buffer from a cursor with a timeout. ``kill`` is a power cut
(SIGKILL: no flush, no clean shutdown). ``marks`` records when each named milestone was seen,
in seconds since QEMU started, for the boot-time report.
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time

from .guest import ARCHES


class VMError(Exception):
    """The guest did not do what the test expected (timeout, early exit); carries the console tail."""


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class VM:
    def __init__(self, arch, flash, disks, log_path, memory=None, name="vm"):
        """``disks``: image paths; the LAST one becomes Linux's vda (QEMU virtio-mmio order)."""
        self.arch = ARCHES[arch]
        self.flash = flash
        self.disks = list(disks)
        self.log_path = log_path
        self.memory = memory or self.arch["memory"]
        self.name = name
        self.proc = None
        self.port = None
        self.ser = None
        self.buf = bytearray()
        self.cursor = 0
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.reader = None
        self.started = None
        self.marks = []
        self.closed = False

    # --- life cycle --------------------------------------------------------------------------
    def command(self):
        a = self.arch
        cmd = [a["qemu"], "-machine", "virt", "-cpu", a["cpu"], "-m", str(self.memory),
               "-nographic", "-nic", "none", "-monitor", "none", "-no-user-config",
               "-bios", a["uboot"],
               "-drive", "if=pflash,format=raw,index=1,file=%s" % self.flash,
               "-serial", "tcp:127.0.0.1:%d,server=on,wait=on" % self.port]
        for i, disk in enumerate(self.disks):
            cmd += ["-drive", "if=none,format=raw,id=vd%d,file=%s" % (i, disk),
                    "-device", "virtio-blk-device,drive=vd%d" % i]
        return cmd

    def start(self, timeout=20):
        self.port = _free_port()
        self.log = open(self.log_path, "ab")
        self.log.write(b"\n===== %s: %s start =====\n" % (self.name.encode(), time.strftime("%H:%M:%S").encode()))
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        import serial

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ser = serial.serial_for_url("socket://127.0.0.1:%d" % self.port, timeout=0.1)
                break
            except serial.SerialException:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise VMError("%s: QEMU did not open its console (exit %s); see %s"
                                  % (self.name, self.proc.poll(), self.log_path))
                time.sleep(0.05)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.mark("qemu started")
        return self

    def _read(self):
        while True:
            try:
                data = self.ser.read(4096)
            except Exception:
                data = None
            if data is None or (not data and self.proc.poll() is not None):
                with self.cond:
                    self.closed = True
                    self.cond.notify_all()
                return
            if data:
                with self.cond:
                    self.buf += data
                    self.cond.notify_all()
                self.log.write(data)
                self.log.flush()

    def kill(self):
        """Power cut: SIGKILL the QEMU process (no flush of guest caches, no shutdown)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.mark("killed")
        self._close()

    def wait_exit(self, timeout=30):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise VMError("%s: QEMU still running %ds after poweroff\n%s" % (self.name, timeout, self.tail()))
        self.mark("exited")
        self._close()
        return rc

    def _close(self):
        if self.ser is not None:
            try:
                self.ser.close()
            except Exception:
                pass
            self.ser = None
        if self.reader is not None:
            self.reader.join(2)
        if not self.log.closed:
            self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.kill()

    # --- console -----------------------------------------------------------------------------
    def now(self):
        return time.monotonic() - self.started

    def mark(self, what):
        self.marks.append((what, round(self.now(), 2)))

    def tail(self, n=3000):
        with self.lock:
            return self.buf[-n:].decode("utf-8", "replace")

    def send(self, text):
        if isinstance(text, str):
            text = text.encode()
        self.ser.write(text)

    def expect(self, patterns, timeout=60, mark=None):
        """Wait until one of ``patterns`` (regex str or list) appears after the cursor.

        Returns (index, match); moves the cursor past the match. Raises VMError on timeout or exit.
        """
        if isinstance(patterns, str):
            patterns = [patterns]
        regs = [re.compile(p.encode() if isinstance(p, str) else p) for p in patterns]
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                best = None
                for i, rx in enumerate(regs):
                    m = rx.search(self.buf, self.cursor)
                    if m and (best is None or m.start() < best[1].start()):
                        best = (i, m)
                if best:
                    self.cursor = best[1].end()
                    if mark:
                        self.marks.append((mark, round(self.now(), 2)))
                    return best
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    why = "QEMU exited" if self.closed else "timed out after %ds" % timeout
                    raise VMError("%s: waiting for %r: %s; console tail:\n%s"
                                  % (self.name, patterns, why, self.buf[-3000:].decode("utf-8", "replace")))
                self.cond.wait(min(left, 0.5))

    def sh(self, command, timeout=60, check=True):
        """Run ``command`` in the guest shell; returns (exit status, output text)."""
        tag = "%08x" % (int(time.monotonic() * 1000) & 0xffffffff)
        with self.lock:
            start = len(self.buf)
        self.send("%s; echo \"@@$?@@%s\"\n" % (command, tag))
        _, m = self.expect(r"@@(\d+)@@%s" % tag, timeout)
        with self.lock:
            region = self.buf[start:m.start()].decode("utf-8", "replace")
        # Drop the shell's echo of the command line (the terminal may wrap it anywhere).
        region = region.replace("\r", "")
        echo = "".join(re.escape(c) + "\n?" for c in '@@$?@@%s"' % tag)
        # (typed-ahead input can be echoed twice: by the tty, then by the shell's line editor)
        ends = [e.end() for e in re.finditer(echo, region)]
        text = region[ends[-1]:] if ends else region
        text = text.strip("\n")
        rc = int(m.group(1))
        if check and rc != 0:
            raise VMError("%s: guest command %r failed with status %d:\n%s" % (self.name, command, rc, text))
        return rc, text

    def boot_times(self):
        return ", ".join("%s %.2fs" % (what, t) for what, t in self.marks)
