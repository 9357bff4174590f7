"""Test rig for the serial console: pty pairs, a faulty paced relay, a device shell, a fake U-Boot.

Topology::

    host (pyserial on /dev/pts/A)  <->  pty A  <->  Relay  <->  pty B  <->  device (sh, updater receive)

The Relay forwards both ways; it can pace each direction (bytes/s, to emulate 115200 baud 8N1
at 11520 B/s), and with a seed it drops, corrupts and stalls bytes at positions of each stream
fixed by the seed (independent of read chunking), and can cut the line (drop everything) after
N bytes or on demand.
"""

import fcntl
import os
import random
import select
import subprocess
import sys
import termios
import threading
import time
import tty

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")


def open_pty(raw=True):
    """(master fd, slave fd, slave path) with the slave in raw mode (no echo, 8-bit clean)."""
    master, slave = os.openpty()
    if raw:
        tty.setraw(slave, termios.TCSANOW)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


class Relay(threading.Thread):
    def __init__(self, host_master, dev_master, rate=None, seed=None, drop=0.0, corrupt=0.0, stall=0.0,
                 stall_ms=(50, 400), chunk=512):
        super().__init__(daemon=True)
        self.fds = {"h2d": (host_master, dev_master), "d2h": (dev_master, host_master)}
        self.rate = rate
        self.seed = seed
        self.seen = {"h2d": 0, "d2h": 0}  # bytes of each stream offered to the fault schedule
        self.drop, self.corrupt, self.stall = drop, corrupt, stall
        self.stall_ms = stall_ms
        self.chunk = chunk
        self.pending = {"h2d": bytearray(), "d2h": bytearray()}
        self.tokens = {"h2d": 0.0, "d2h": 0.0}
        self.stalled_until = {"h2d": 0.0, "d2h": 0.0}
        self.count = {"h2d": 0, "d2h": 0}  # bytes read from each source
        self.faults = {"dropped": 0, "corrupted": 0, "stalls": 0}
        self.cut_at = None  # h2d byte count after which the line is down
        self.down = False
        self.stopping = False
        self.lock = threading.Lock()
        if not self.seedless():
            self.schedule = {way: self._events(way) for way in ("h2d", "d2h")}
            self.next_event = {way: next(self.schedule[way]) for way in ("h2d", "d2h")}

    def cut(self):
        with self.lock:
            self.down = True
            self.pending["h2d"].clear()

    def restore(self):
        with self.lock:
            self.down = False
            self.cut_at = None
            self.pending["h2d"].clear()
            self.pending["d2h"].clear()

    def stop(self):
        self.stopping = True
        self.join(5)

    def _events(self, way):
        """Fault events at byte positions of one direction's stream: (position, kind, argument).

        Positions come from a seeded generator per direction, so where the faults fall in the
        stream does not depend on how the bytes happen to be chunked by reads. The rates are
        per 512 bytes (a drop removes 1-48 bytes; a corruption flips one bit; a stall holds the
        direction for ``stall_ms``).
        """
        rng = random.Random("%s-%s" % (self.seed, way))
        rates = [(kind, p / 512.0) for kind, p in (("drop", self.drop), ("corrupt", self.corrupt),
                                                     ("stall", self.stall)) if p]
        total = sum(r for _, r in rates)
        pos = 0.0
        while True:
            pos += rng.expovariate(total)
            pick = rng.random() * total
            for kind, rate in rates:
                if pick < rate:
                    break
                pick -= rate
            arg = {"drop": lambda: rng.randint(1, 48), "corrupt": lambda: 1 << rng.randrange(8),
                   "stall": lambda: rng.randint(*self.stall_ms) / 1000.0}[kind]()
            yield int(pos), kind, arg

    def _faulty(self, way, data):
        start = self.seen[way]
        self.seen[way] += len(data)
        if self.seedless() or not data:
            return data
        out = bytearray(data)
        removed = 0
        events = self.schedule[way]
        while self.next_event[way][0] < start + len(data):
            pos, kind, arg = self.next_event[way]
            self.next_event[way] = next(events)
            i = pos - start - removed
            if kind == "drop" and 0 <= i < len(out):
                n = min(arg, len(out) - i)
                del out[i:i + n]
                removed += n
                self.faults["dropped"] += 1
            elif kind == "corrupt" and 0 <= i < len(out):
                out[i] ^= arg
                self.faults["corrupted"] += 1
            elif kind == "stall":
                self.stalled_until[way] = time.monotonic() + arg
                self.faults["stalls"] += 1
        return bytes(out)

    def seedless(self):
        return not (self.drop or self.corrupt or self.stall)

    def run(self):
        last = time.monotonic()
        while not self.stopping:
            now = time.monotonic()
            dt, last = now - last, now
            busy = False
            with self.lock:
                for way, (src, dst) in self.fds.items():
                    pend = self.pending[way]
                    if len(pend) < 4096:
                        try:
                            data = os.read(src, self.chunk)
                        except (BlockingIOError, InterruptedError):
                            data = b""
                        except OSError:  # EIO: nobody has the slave open right now
                            data = b""
                        if data:
                            busy = True
                            before = self.count[way]
                            self.count[way] += len(data)
                            if self.down:
                                data = b""
                            elif way == "h2d" and self.cut_at is not None and self.count[way] >= self.cut_at:
                                data = data[:max(0, self.cut_at - before)]  # the last bytes before the cut
                                self.down = True
                            pend += self._faulty(way, data)
                    if self.down and way == "d2h":
                        pend.clear()
                    if not pend or now < self.stalled_until[way]:
                        continue
                    n = len(pend)
                    if self.rate:
                        # a UART keeps sending from its FIFO while this thread waits for the GIL:
                        # up to 0.1 s of line time is made up for, never more than was queued
                        self.tokens[way] = min(self.tokens[way] + dt * self.rate, self.rate * 0.1, len(pend))
                        n = min(n, int(self.tokens[way]))
                    if n <= 0:
                        continue
                    try:
                        wrote = os.write(dst, bytes(pend[:n]))
                    except (BlockingIOError, InterruptedError):
                        wrote = 0
                    except OSError:
                        wrote = len(pend)  # the other side is gone: the bytes are lost
                    if self.rate:
                        self.tokens[way] -= wrote
                    del pend[:wrote]
                    busy = busy or wrote > 0
            if not busy:
                select.select([self.fds["h2d"][0], self.fds["d2h"][0]], [], [], 0.002)


class Line:
    """Two ptys and a relay between them: ``host_path`` for pyserial, ``dev_slave`` for the device."""

    def __init__(self, **relay_opts):
        self.hm, self.hs, self.host_path = open_pty(raw=True)
        self.dm, self.ds, self.dev_path = open_pty(raw=False)
        self.relay = Relay(self.hm, self.dm, **relay_opts)
        self.relay.start()

    def close(self):
        self.relay.stop()
        for fd in (self.hm, self.hs, self.dm, self.ds):
            try:
                os.close(fd)
            except OSError:
                pass


def _ctty():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def spawn_on(slave_fd, argv, env=None):
    """A process whose stdin/stdout/stderr and controlling terminal are the pty ``slave_fd``."""
    return subprocess.Popen(argv, stdin=slave_fd, stdout=slave_fd, stderr=slave_fd, env=env, close_fds=True,
                            start_new_session=True, preexec_fn=_ctty)


def device_env(extra=None):
    env = {"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin", "HOME": "/tmp", "PS1": "device# ",
           "PYTHONPATH": ROOT, "MICROPYPATH": ROOT + ":" + TESTS, "TERM": "dumb", "LANG": "C.UTF-8"}
    env.update(extra or {})
    return env


def device_cmd(sysroot, interpreter="cpython"):
    """How the device shell runs this checkout's updater on ``sysroot``."""
    if interpreter == "micropython":
        mp = os.path.join(os.path.dirname(sys.executable), "micropython")
        return "%s -X heapsize=4M -m updater --sysroot %s" % (mp, sysroot)
    return "%s -m updater --sysroot %s" % (sys.executable, sysroot)


def kill(proc):
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, 9)
    except OSError:
        pass
    proc.wait(5)
