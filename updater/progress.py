"""Progress reporting: core operations call ``progress(done, total)``; only a command line draws.

``Reporter`` draws a redrawn bar with rate and ETA on a TTY, and plain lines (every 10% or 5 s)
otherwise: a serial console or a log file is not a terminal that can be redrawn.
"""

import sys
import time

_ticks = getattr(time, "ticks_ms", None)


def now_ms():
    if _ticks is not None:
        return _ticks()
    return int(time.monotonic() * 1000)


def elapsed_ms(start):
    if _ticks is not None:
        return time.ticks_diff(_ticks(), start)
    return now_ms() - start


def human_bytes(n):
    if n < 1024:
        return "%d B" % n
    for unit in ("KiB", "MiB", "GiB"):
        n = n / 1024.0
        if n < 1024 or unit == "GiB":
            return "%.1f %s" % (n, unit)


def human_seconds(sec):
    sec = int(sec + 0.5)
    if sec < 60:
        return "%ds" % sec
    if sec < 3600:
        return "%dm%02ds" % (sec // 60, sec % 60)
    return "%dh%02dm" % (sec // 3600, (sec % 3600) // 60)


def is_tty(stream):
    fn = getattr(stream, "isatty", None)
    try:
        return bool(fn and fn())
    except (OSError, ValueError):
        return False


class Reporter:
    """A ``progress(done, total)`` callable that draws on ``stream`` (stderr by default)."""

    def __init__(self, label, stream=None, tty=None, unit="bytes"):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = is_tty(self.stream) if tty is None else tty
        self.unit = unit
        self.start = now_ms()
        self.last_draw = None
        self.last_step = -1
        self.done = 0
        self.total = 0
        self.drawn = False

    def _amount(self, n, unit=True):
        if self.unit == "bytes":
            return human_bytes(n)
        return "%d %s" % (n, self.unit) if unit else "%d" % n

    def line(self):
        secs = elapsed_ms(self.start) / 1000.0
        rate = self.done / secs if secs > 0.05 else 0.0
        parts = []
        if self.total:
            pct = 100.0 * self.done / self.total
            parts.append("%3d%%" % int(pct))
            parts.append("%s of %s" % (self._amount(self.done, False), self._amount(self.total)))
        else:
            parts.append(self._amount(self.done))
        if rate > 0:
            parts.append(("%s/s" % human_bytes(int(rate))) if self.unit == "bytes" else "%.0f %s/s" % (rate, self.unit))
            if self.total and self.done < self.total:
                parts.append("%s left" % human_seconds((self.total - self.done) / rate))
        return "%s: %s" % (self.label, ", ".join(parts))

    def __call__(self, done, total=None):
        self.done = done
        if total is not None:
            self.total = total
        if done == 0 and not self.total:
            return
        t = now_ms()
        if self.tty:
            if self.last_draw is not None and t - self.last_draw < 100 and done != self.total:
                return
            self.last_draw = t
            width = 24
            filled = int(width * done / self.total) if self.total else 0
            bar = "[" + "#" * filled + "." * (width - filled) + "] "
            self.stream.write("\r" + bar + self.line() + "\x1b[K")
            self.drawn = True
            return
        step = int(10 * done / self.total) if self.total else -1
        if self.last_draw is None:
            due = elapsed_ms(self.start) >= 1000
        else:
            due = t - self.last_draw >= 5000
        if step > self.last_step or due:
            self.last_step = max(step, self.last_step)
            self.last_draw = t
            self.stream.write(self.line() + "\n")

    def finish(self, message=None):
        if self.tty and self.drawn:
            self.stream.write("\r\x1b[K")
        if message:
            self.stream.write("%s: %s\n" % (self.label, message))


def null(done, total=None):
    """A progress callback that does nothing."""
    return None
