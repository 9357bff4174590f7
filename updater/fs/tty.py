"""File-system layer: a serial line as a byte stream (the console on stdin/stdout, or a tty path).

``Port.stdio()`` or ``Port.open(path, baud)``; ``make_raw()`` puts a tty in raw mode (8-bit
clean: no echo, no line editing, no signals, no CR/LF translation, VMIN=0 so a read returns
what is there) and ``restore()`` puts the saved settings back. ``read(n, timeout_ms)`` returns
at most n bytes, b"" on timeout; ``write(data)`` writes everything.

CPython uses the file descriptors directly. MicroPython's unix port has no os.read/os.write:
it reads through the file object, whose readinto keeps reading until its buffer is full, so a
tty in raw mode with VMIN=0 (a read returns at once) is what makes partial reads possible; a
pipe is read one byte at a time.
"""

import os
import select
import sys

from ..errors import FetchError, UsageError
from .base import MICROPYTHON, fail

# Linux termios speed codes (MicroPython's termios names only some of them).
_SPEEDS = {9600: 0o15, 19200: 0o16, 38400: 0o17, 57600: 0o10001, 115200: 0o10002, 230400: 0o10003,
           460800: 0o10004, 500000: 0o10005, 921600: 0o10007, 1000000: 0o10010}
_VTIME, _VMIN = 5, 6


def speed_code(baud):
    try:
        import termios
    except ImportError:
        termios = None
    code = getattr(termios, "B%d" % baud, None) if termios is not None else None
    if code is None:
        code = _SPEEDS.get(baud)
    if code is None:
        raise UsageError("baud rate %d is not supported; expected one of %s"
                         % (baud, ", ".join(str(b) for b in sorted(_SPEEDS))))
    return code


class Port:
    def __init__(self, rfile, wfile, fd, name, owned=False):
        self.rfile = rfile
        self.wfile = wfile
        self.fd = fd
        self.name = name
        self.owned = owned
        self.saved = None
        self.tty = _is_tty(fd)
        self.poll = select.poll()
        self.poll.register(rfile if MICROPYTHON else fd, select.POLLIN)
        self.buf = bytearray(4096)

    @staticmethod
    def stdio():
        """The console this process runs on (stdin for reading, stdout for writing)."""
        rfile = sys.stdin.buffer
        wfile = sys.stdout.buffer
        return Port(rfile, wfile, sys.stdin.fileno(), "the console (stdin/stdout)")

    @staticmethod
    def open(path, baud=None):
        """A tty device (or any readable and writable file) opened for reading and writing."""
        try:
            if MICROPYTHON:
                # one file object for both directions fails writes after reads (EINVAL) on this
                # port; "ab" would create a missing path, so the path must exist first
                os.stat(path)
                rfile = open(path, "rb")
                port = Port(rfile, open(path, "ab"), rfile.fileno(), path, owned=True)
            else:
                fd = os.open(path, os.O_RDWR | getattr(os, "O_NOCTTY", 0))
                f = os.fdopen(fd, "r+b", buffering=0)
                port = Port(f, f, fd, path, owned=True)
        except OSError as err:
            raise fail("opening serial port", path, err)
        if baud and port.tty:
            port.set_speed(baud)
        return port

    def set_speed(self, baud):
        import termios

        attrs = termios.tcgetattr(self.fd)
        attrs[4] = attrs[5] = speed_code(baud)
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)

    def make_raw(self):
        """Raw mode on a tty (a no-op for pipes and files); the old settings are kept for restore."""
        if not self.tty or self.saved is not None:
            return
        import termios

        self.saved = termios.tcgetattr(self.fd)
        if hasattr(termios, "setraw"):  # MicroPython
            termios.setraw(self.fd)
        else:
            import tty

            tty.setraw(self.fd, termios.TCSANOW)
        attrs = termios.tcgetattr(self.fd)
        attrs[6][_VMIN] = 0
        attrs[6][_VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)

    def restore(self):
        if self.saved is None:
            return
        import termios

        try:
            termios.tcsetattr(self.fd, termios.TCSANOW, self.saved)
        except OSError:
            pass
        self.saved = None

    def read(self, n, timeout_ms):
        """At most ``n`` bytes; b"" if none arrived within ``timeout_ms``. FetchError at end of input."""
        events = self.poll.poll(timeout_ms)
        if not events:
            return b""
        try:
            if not MICROPYTHON:
                data = os.read(self.fd, n)
            elif self.tty and self.saved is not None:
                buf = self.buf if n == len(self.buf) else bytearray(n)
                k = self.rfile.readinto(buf)
                data = bytes(buf[:k]) if k else b""
            else:
                data = self.rfile.read(1)
        except OSError as err:
            raise FetchError("reading from %s: %s" % (self.name, err), "check the serial line")
        if not data and (events[0][1] & (select.POLLHUP | select.POLLERR) or not self.tty):
            raise FetchError("reading from %s: the line was closed (end of input)" % self.name,
                             "the host went away: run the push again to resume")
        return data

    def write(self, data):
        try:
            if MICROPYTHON:
                self.wfile.write(data)  # unbuffered on the unix port
                if not self.owned:
                    self.wfile.flush()  # sys.stdout; a tty file's flush is fsync, EINVAL on a tty
                return
            view = memoryview(data)
            done = 0
            while done < len(data):
                done += os.write(self.wfile.fileno(), view[done:])
        except OSError as err:
            raise FetchError("writing to %s: %s" % (self.name, err), "check the serial line")

    def close(self):
        self.restore()
        if self.owned:
            for f in (self.rfile, self.wfile):
                try:
                    f.close()
                except OSError:
                    pass


def _is_tty(fd):
    try:
        import termios

        termios.tcgetattr(fd)
        return True
    except (ImportError, OSError, AttributeError):
        return False
    except Exception:  # noqa: BLE001 - MicroPython raises other types for a non-tty on some ports
        return False
