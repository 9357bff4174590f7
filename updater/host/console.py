"""A device's serial console from the host: open a port URL, find out who answers, run commands.

Ports are pyserial URLs (``/dev/ttyUSB0``, ``socket://HOST:PORT``, ``rfc2217://HOST:PORT``,
``loop://``) opened with ``serial.serial_for_url``. ``Console`` keeps everything received in a
buffer with a cursor; ``expect`` scans it. ``probe`` tells a Linux shell from a login prompt,
U-Boot (prompt or autoboot countdown) and a running ``updater receive`` (its frames).
``run`` executes a shell command between unique markers and returns its exit code and output.
Errors are FetchError (or UsageError for a bad URL) whose hint says what to try.
"""

import binascii
import os
import re
import time

from .. import serialframe as sf
from ..errors import FetchError, UsageError

ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]")
SHELL_PROMPT = rb"[#$] ?$"
UBOOT_PROMPT = rb"(=>|U-Boot>) ?$"
LOGIN_PROMPT = re.compile(rb"login: ?$")
PASSWORD_PROMPT = re.compile(rb"[Pp]assword: ?$")
AUTOBOOT = re.compile(rb"(Hit any key to stop autoboot|Press any key to stop autoboot|autoboot in \d+ seconds)")
LOGIN_FAILED = re.compile(rb"Login incorrect|Authentication failure")
KEEP = 1 << 20  # bytes of console history kept


def _plain(data):
    """Echoed text without escape sequences and line breaks, for comparing with what was typed."""
    return ANSI.sub(b"", data).replace(b"\r", b"").replace(b"\n", b"")


class LineDown(FetchError):
    """The line stopped working in the middle of an exchange (port vanished, socket closed, stall)."""


class NoAnswer(FetchError):
    """Nothing (or nothing recognisable) answered on the console."""


def _hint_for_open(url, err):
    text = str(err).lower()
    num = getattr(err, "errno", None)
    if num == 2 or "no such file" in text:
        return "check the port name and that the adapter is plugged in; 'updater console list' shows the ports"
    if num in (11, 16) or "lock" in text or "busy" in text:
        return "it may be in use by another program (screen, minicom, picocom, another updater): close it"
    if num in (1, 13) or "permission" in text:
        return "add your user to the 'dialout' group (then log in again), or run as root"
    if "refused" in text or "timed out" in text or "resolve" in text or "name or service" in text:
        return "check the host and port of %s and that the console server is running" % url
    return "check the port URL (e.g. /dev/ttyUSB0, socket://HOST:PORT, rfc2217://HOST:PORT)"


class Console:
    """One open serial console. ``log`` (a binary file) receives everything read, for diagnosis."""

    def __init__(self, url, baud=115200, log=None, write_timeout=5.0, shell_prompt=SHELL_PROMPT,
                 uboot_prompt=UBOOT_PROMPT):
        if not url:
            raise UsageError("no serial port given", "pass --port URL (e.g. /dev/ttyUSB0 or socket://HOST:PORT)")
        self.url = url
        self.baud = baud
        self.log = log
        self.write_timeout = write_timeout
        self.shell_prompt = re.compile(shell_prompt)
        self.uboot_prompt = re.compile(uboot_prompt)
        self.ser = None
        self.buf = bytearray()
        self.cursor = 0
        self.answered = False  # something recognisable answered since the port opened

    # --- the port ------------------------------------------------------------------------------
    def open(self):
        import serial

        try:
            ser = serial.serial_for_url(self.url, baudrate=self.baud, timeout=0, write_timeout=self.write_timeout,
                                        do_not_open=True)
        except (ValueError, serial.SerialException) as err:
            raise UsageError("opening serial port %s: %s" % (self.url, err),
                             "use a device path (/dev/ttyUSB0) or a URL: socket://HOST:PORT, rfc2217://HOST:PORT, loop://")
        if hasattr(ser, "exclusive") and not self.url.startswith(("socket:", "rfc2217:", "loop:")):
            ser.exclusive = True
        try:
            ser.open()
        except (OSError, serial.SerialException) as err:
            raise FetchError("opening serial port %s: %s" % (self.url, err), _hint_for_open(self.url, err))
        self.ser = ser
        return self

    def close(self):
        if self.ser is not None:
            try:
                self.ser.close()
            except Exception:  # noqa: BLE001 - closing a vanished port must not hide the real error
                pass
            self.ser = None

    def __enter__(self):
        return self.open() if self.ser is None else self

    def __exit__(self, *exc):
        self.close()

    @property
    def rate(self):
        """Bytes per second the line carries (8N1: ten bits a byte)."""
        return max(1, self.baud // 10)

    def write(self, data):
        import serial

        if self.ser is None:
            raise LineDown("writing to %s: the port is closed" % self.url, "run the command again")
        try:
            self.ser.write(data)
        except serial.SerialTimeoutException:
            raise LineDown("writing to %s: nothing was sent for %.0f s (the line is stalled)"
                           % (self.url, self.write_timeout), "check the cable and flow control settings")
        except (OSError, serial.SerialException) as err:
            raise LineDown("writing to %s: %s" % (self.url, err), "check the cable; the adapter may have been unplugged")

    def read(self, timeout):
        """Bytes that arrive within ``timeout`` seconds (returns early once some arrived)."""
        import serial

        if self.ser is None:
            raise LineDown("reading from %s: the port is closed" % self.url, "run the command again")
        try:
            self.ser.timeout = timeout
            first = self.ser.read(1)
            if not first:
                return b""
            self.ser.timeout = 0
            more = self.ser.read(min(65536, max(1, self.ser.in_waiting)))
        except (OSError, serial.SerialException) as err:
            raise LineDown("reading from %s: %s" % (self.url, err), "check the cable; the adapter may have been unplugged")
        data = first + more
        self._keep(data)
        return data

    def _keep(self, data):
        if self.log is not None:
            self.log.write(data)
            self.log.flush()
        self.buf += data
        if len(self.buf) > KEEP:
            cut = len(self.buf) - KEEP // 2
            del self.buf[:cut]
            self.cursor = max(0, self.cursor - cut)

    # --- reading text --------------------------------------------------------------------------
    def mark(self):
        """Start looking at what arrives from now on."""
        self.cursor = len(self.buf)

    def text(self, start=None):
        return bytes(self.buf[self.cursor if start is None else start:])

    def tail_text(self, n=400):
        """The last ``n`` characters received, printable, for error messages."""
        raw = ANSI.sub(b"", bytes(self.buf[-n * 2:]))
        text = raw.decode("utf-8", "replace")
        out = "".join(ch if ch == "\n" or ch.isprintable() else "." for ch in text.replace("\r", ""))
        return out[-n:].strip()

    def expect(self, patterns, timeout):
        """(index, match) of the first pattern (compiled bytes regexes) found after the cursor.

        Returns (None, None) on timeout. The cursor moves past the match.
        """
        deadline = time.monotonic() + timeout
        while True:
            for i, pat in enumerate(patterns):
                m = pat.search(self.buf, self.cursor)
                if m:
                    self.cursor = m.end()
                    return i, m
            left = deadline - time.monotonic()
            if left <= 0:
                return None, None
            self.read(min(left, 0.2))

    def settle(self, quiet=0.3, limit=3.0):
        """Read until the line has been quiet for ``quiet`` seconds (at most ``limit``)."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if not self.read(quiet):
                return

    def last_line(self):
        """The last line received (ANSI sequences removed), for prompt matching."""
        text = ANSI.sub(b"", self.text())
        text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return text[text.rfind(b"\n") + 1:]

    # --- who answers -------------------------------------------------------------------------
    def classify(self):
        """What the bytes after the cursor show: receiver, autoboot, uboot, login, password, shell or None."""
        data = self.text()
        if sf.MAGIC in data and sf.Parser().feed(data):
            return "receiver"
        line = self.last_line()
        if self.uboot_prompt.search(line):
            return "uboot"
        if AUTOBOOT.search(data[-300:]) and not line.strip().endswith((b"#", b"$")):
            return "autoboot"
        if LOGIN_PROMPT.search(line):
            return "login"
        if PASSWORD_PROMPT.search(line):
            return "password"
        if self.shell_prompt.search(line):
            return "shell"
        return None

    def who(self):
        """classify(), remembering that the device answered."""
        state = self.classify()
        if state is not None:
            self.answered = True
        return state

    def probe(self, timeout=5.0, listen=0.5):
        """Find out who answers: listen, then Ctrl-C, then Enter, until ``timeout`` seconds pass.

        Ctrl-C is harmless everywhere: it clears a shell's line, stops U-Boot's autoboot or
        leaves its prompt unchanged; a running receiver ignores it. Returns the classify() word.
        """
        self.mark()
        if listen:
            self.settle(quiet=listen, limit=listen * 2)
        state = self.who()
        keys = [b"\x03", b"\r"]
        deadline = time.monotonic() + timeout
        i = 0
        while state is None and time.monotonic() < deadline:
            self.mark()
            self.write(keys[i % 2])
            i += 1
            self.settle(quiet=0.3, limit=1.5)
            state = self.who()
        return state

    def no_answer(self, doing):
        seen = self.tail_text(200)
        if seen:
            return NoAnswer("%s on %s: the device answered with something unrecognised: %r" % (doing, self.url, seen[-120:]),
                              "check the baud rate (--baud, now %d); pass --prompt REGEX if the shell prompt is unusual"
                              % self.baud)
        return NoAnswer("%s on %s: no answer from the device" % (doing, self.url),
                          "check that the device is powered on, the cable (TX/RX crossed?) and the baud rate "
                          "(--baud, now %d)" % self.baud)

    # --- the shell ---------------------------------------------------------------------------
    def reach_shell(self, login=None, password=None, timeout=10.0, listen=0.5):
        """Get to a shell prompt (logging in if asked); FetchError naming what answered instead.

        ``listen``: seconds to listen before sending anything (0 when the caller just did).
        """
        state = self.probe(timeout, listen)
        for _ in range(4):
            if state == "shell":
                return
            if state == "login":
                if not login:
                    raise FetchError("reaching the shell on %s: the device asks for a login" % self.url,
                                     "pass --login USER (and --password-env VAR naming an environment variable)")
                self.mark()
                self.write(login.encode() + b"\r")
                self.settle(quiet=0.5, limit=5)
            elif state == "password":
                if password is None:
                    raise FetchError("reaching the shell on %s: the device asks for a password" % self.url,
                                     "pass --password-env VAR, naming an environment variable holding it")
                self.mark()
                self.write(password.encode() + b"\r")
                idx, _ = self.expect([self.shell_prompt, LOGIN_FAILED, LOGIN_PROMPT], 10)
                if idx != 0:
                    raise FetchError("logging in on %s as %s: the login failed" % (self.url, login),
                                     "check --login and the password in --password-env")
            elif state in ("uboot", "autoboot"):
                raise FetchError("reaching the shell on %s: the device is in the U-Boot bootloader, not Linux" % self.url,
                                 "'updater console --port %s uboot env' shows its boot state; 'uboot rollback' "
                                 "boots the previous deployment" % self.url)
            elif state == "receiver":
                self.abort_receiver()
            else:
                raise self.no_answer("reaching the shell")
            state = self.who() or self.probe(timeout)
        raise self.no_answer("reaching the shell")

    def abort_receiver(self):
        """Stop an ``updater receive`` left running by an earlier push (its partial file is kept)."""
        for _ in range(3):
            self.write(sf.encode(sf.ABORT) + sf.encode_line(sf.encode(sf.ABORT)))
            self.settle(quiet=0.5, limit=2)
            if self.classify() != "receiver":
                return

    def type_line(self, text, attempts=3):
        """Type a command line and press Enter only once its echo came back intact.

        On a noisy line a typed command can lose or change bytes; executing a mangled command
        is worse than retyping it. Ctrl-C clears a bad line (shell and U-Boot alike). A console
        whose echo never matches (an unusual line editor) gets the line anyway after the last try.
        """
        want = text.encode()
        for _ in range(attempts):
            self.mark()
            self.write(want)
            end = time.monotonic() + 2.0 + len(want) * 20.0 / self.rate
            while time.monotonic() < end:
                if want in _plain(self.text()):
                    self.write(b"\r")
                    return True
                self.read(0.1)
            if not self.text():
                raise LineDown("typing a command on %s: not even its echo came back" % self.url,
                               "check the cable and that the device is still running")
            self.clear_line()
        self.mark()
        self.write(want + b"\r")
        return False

    def clear_line(self, attempts=3):
        """Ctrl-C until a fresh prompt shows (a shell's or U-Boot's): the line being typed is gone."""
        for _ in range(attempts):
            self.mark()
            self.write(b"\x03")
            self.settle(quiet=0.3, limit=1.5)
            if self.classify() in ("shell", "uboot"):
                return True
        return False

    def run(self, command, timeout=60.0):
        """(exit code, output text) of a shell command, found between unique markers."""
        nonce = binascii.hexlify(os.urandom(6))
        begin = b"UPDBEGIN-" + nonce
        end = b"UPDEND-" + nonce
        line = ("printf '%%s-%%s\\n' UPDBEGIN %s; %s; printf '\\n%%s-%%s %%s\\n' UPDEND %s \"$?\""
                % (nonce.decode(), command, nonce.decode()))
        self.type_line(line)
        idx, m = self.expect([re.compile(re.escape(begin) + rb"\r?\n")], min(timeout, 10))
        if idx is None:
            raise self.no_answer("running '%s'" % command)
        start = m.end()
        self.cursor = start - 1
        idx, m = self.expect([re.compile(rb"\n" + re.escape(end) + rb" (\d+)")], timeout)
        if idx is None:
            raise FetchError("running '%s' on %s: no end after %.0f s" % (command, self.url, timeout),
                             "the device may be busy or stuck; try again, or look at it with a terminal program")
        output = bytes(self.buf[start:max(start, m.start() - 1)]).replace(b"\r\n", b"\n")
        return int(m.group(1)), output.decode("utf-8", "replace")
