"""``console push`` end to end: start ``updater receive`` on the device, send, reconnect, resume.

``push(open_console, path, ...)`` opens the port, finds a receiver still running from an earlier
attempt (its heartbeats) or reaches the shell and types ``DEVICE_CMD receive``, then runs the
Sender. When the line drops (LineDown, or the port vanishes) it closes the port, reopens it
and carries on from the offset the device holds, until no progress was made for ``timeout``
seconds. A file that arrived complete but did not match its SHA-256 is sent once more.
"""

import time

from .. import serialframe as sf
from ..errors import FetchError
from .console import LineDown, NoAnswer
from .sender import Sender, file_identity


class ReceiverExited(FetchError):
    """``updater receive`` ended at once (unknown command, bad option, a mangled command line)."""


def listen_for_receiver(con, seconds=0.8):
    """True if a receiver left running by an earlier attempt is sending heartbeats (2 a second)."""
    con.mark()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        con.read(min(0.2, max(0.0, end - time.monotonic())))
        if con.who() == "receiver":
            return True
    return False


def start_receiver(con, device_cmd, login, password, encoding, receive_args, timeout=20.0, wait=10.0):
    """Make sure an ``updater receive`` is listening on the console (``wait``: for the shell)."""
    if listen_for_receiver(con):
        return "running"
    con.reach_shell(login, password, timeout=wait, listen=0)
    cmd = "%s receive" % device_cmd
    if encoding != "raw":
        cmd += " --encoding " + encoding
    if receive_args:
        cmd += " " + receive_args
    for _ in range(3):
        started = _run_receiver(con, cmd, encoding, timeout)
        if started:
            return "started"
        con.clear_line()  # the Enter key arrived mangled: clear the line and type it again
    raise NoAnswer("starting '%s' on %s: the command line kept arriving garbled" % (cmd, con.url),
                   "check the cable and the baud rate (--baud)")


def _run_receiver(con, cmd, encoding, timeout):
    """Type ``cmd``; True once the receiver's first STATE arrives, False if Enter came back garbled."""
    con.type_line(cmd)
    start = con.cursor
    parser = sf.make_parser(encoding)
    began = time.monotonic()
    seen = 0
    typed = cmd.encode()
    while time.monotonic() < began + timeout:
        con.read(0.2)
        for ftype, _, _ in parser.feed(bytes(con.buf[start + seen:])):
            if ftype == sf.STATE:
                return True
        seen = len(con.buf) - start
        text = bytes(con.buf[start:])
        at = text.rfind(typed)
        after = text[at + len(typed):] if at >= 0 else b""
        if b"\n" not in after and sf.MAGIC[:1] not in after and (after.strip(b"\r") or time.monotonic() > began + 2.5):
            return False  # no newline after the command: Enter was lost or turned into another byte
        if b"\n" in after and con.classify() == "shell":
            said = con.tail_text(300)
            raise ReceiverExited("starting '%s' on %s: it exited at once: %s" % (cmd, con.url, said[-240:]),
                                 "check --device-cmd (how updater runs on the device) and that the device's "
                                 "updater has the receive command")
    raise NoAnswer("starting '%s' on %s: no answer from the receiver within %.0f s" % (cmd, con.url, timeout),
                   "check --device-cmd; with a console that cannot be made raw, try --encoding base64")


def push(open_console, path, device_cmd="updater --sysroot /sysroot", login=None, password=None, encoding="raw",
         frame=sf.DEFAULT_PAYLOAD, window=8192, timeout=60, line_timeout=10, receive_args="",
         progress=None, notify=None, rto=None):
    """Send ``path`` and return the device's RESULT document (plus "bundle" and "stats")."""
    notify = notify or (lambda text: None)
    size, digest = file_identity(path)
    state = {"best": -1, "moved": time.monotonic()}

    def seen(done, total=None):
        if done > state["best"]:
            state["best"] = done
            state["moved"] = time.monotonic()
        if progress is not None:
            progress(done, total)

    con = None
    resent = False
    first = True
    alive = False
    stats = []
    last_error = None
    try:
        while True:
            try:
                if con is None:
                    con = open_console()
                wait = max(2.0, min(10.0, timeout - (time.monotonic() - state["moved"])))
                for attempt in range(3):
                    try:
                        start_receiver(con, device_cmd, login, password, encoding, receive_args, wait=wait)
                        break
                    except ReceiverExited:
                        if attempt == 2:
                            raise  # not a mangled command line: the device really cannot run it
                first = False
                sender = Sender(con, path, size, digest, payload=frame, window=window, encoding=encoding,
                                rate=con.rate, rto=rto, line_timeout=line_timeout, progress=seen, notify=notify)
                stats.append(sender.stats)
                doc = sender.run()
                err = doc.get("error") or {}
                if not doc.get("ok") and doc.get("stage") == "verify" and err.get("type") == "IntegrityError" \
                        and not resent:
                    resent = True
                    notify("the device's copy did not match (%s); sending it again" % err.get("message"))
                    _wait_prompt(con)
                    continue
                _wait_prompt(con)
                doc["bundle"] = path
                doc["stats"] = _merge(stats)
                return doc
            except LineDown as err:
                last_error = err
                notify("the line dropped (%s); reconnecting" % err)
            except NoAnswer as err:
                alive = alive or (con is not None and con.answered)
                if first and not alive:
                    raise  # nothing ever answered: wrong port, baud rate or a device that is off
                last_error = err
                notify("no answer (%s); retrying" % err)
            except FetchError as err:
                if first or con is not None:
                    raise  # the device said no (U-Boot, login, no receive command): retrying will not help
                last_error = err  # reopening the port failed (an adapter unplugged): try again
                notify("reopening the port failed (%s); retrying" % err)
            alive = alive or (con is not None and con.answered)
            if con is not None:
                con.close()
                con = None
            if time.monotonic() - state["moved"] > timeout:
                raise FetchError("sending %s: no progress for %d s, giving up (%s)" % (path, timeout, last_error),
                                 "check the cable and run the same push again: it resumes from what the device holds")
            time.sleep(1.0)
    finally:
        if con is not None:
            con.close()


def _wait_prompt(con):
    """Let the receiver exit and the shell print its prompt again (best effort)."""
    try:
        con.mark()
        con.expect([con.shell_prompt], 3)
    except FetchError:
        pass


def _merge(stats):
    out = {"sent_bytes": 0, "retransmits": 0, "timeouts": 0, "naks": 0, "handshakes": 0, "connections": len(stats),
           "resumed_from": stats[0].resumed_from if stats else None, "data_seconds": None}
    for s in stats:
        d = s.as_dict()
        for key in ("sent_bytes", "retransmits", "timeouts", "naks", "handshakes"):
            out[key] += d[key]
    last = stats[-1] if stats else None
    first = next((s for s in stats if s.started), None)
    if first is not None and last is not None and last.data_done:
        out["data_seconds"] = round(last.data_done - first.started, 3)
    return out
