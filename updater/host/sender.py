"""The sending side of the serial transfer protocol (updater.serialframe; docs/serial-protocol.md).

``Sender(link, path).run()`` asks the receiver where it stands (HELLO -> STATE), sends DATA
frames in a sliding window from the receiver's offset (go-back-N: on a NAK or when no ACK
moves the offset for ``rto`` seconds it resends from the last acknowledged offset), sends END,
waits through the device's verification and install (PROGRESS frames) for the RESULT, and
answers BYE. ``link`` has ``write(bytes)`` and ``read(timeout) -> bytes`` (a Console).
LineDown is raised when nothing at all is heard for ``line_timeout`` seconds: the caller may
reconnect and call ``run()`` again, which resumes where the receiver stands.
"""

import time

from .. import fs
from .. import serialframe as sf
from ..errors import FetchError
from .console import LineDown

HELLO_INTERVAL = 1.0


def file_identity(path):
    """(size, sha256 digest) of a file, read in chunks."""
    digest, size = fs.sha256_file(path)
    return size, digest


class Stats:
    def __init__(self):
        self.sent_bytes = 0  # payload bytes put on the line, retransmissions included
        self.retransmits = 0  # go-backs (NAK or timeout)
        self.timeouts = 0
        self.naks = 0
        self.handshakes = 0
        self.resumed_from = None  # offset the receiver held at the first handshake
        self.started = None  # time of the first DATA frame
        self.data_done = None  # time the last byte was acknowledged

    def as_dict(self):
        secs = (self.data_done - self.started) if self.started and self.data_done else None
        return {"sent_bytes": self.sent_bytes, "retransmits": self.retransmits, "timeouts": self.timeouts,
                "naks": self.naks, "handshakes": self.handshakes, "resumed_from": self.resumed_from,
                "data_seconds": round(secs, 3) if secs is not None else None}


class Sender:
    def __init__(self, link, path, size=None, digest=None, payload=sf.DEFAULT_PAYLOAD, window=8192,
                 encoding="raw", rate=11520, rto=None, line_timeout=15.0, install_timeout=600.0,
                 progress=None, notify=None, clock=time.monotonic):
        if not 0 < payload <= sf.MAX_PAYLOAD:
            raise ValueError("payload must be 1..%d bytes, got %r" % (sf.MAX_PAYLOAD, payload))
        self.link = link
        self.path = path
        if size is None or digest is None:
            size, digest = file_identity(path)
        if size > sf.MAX_TOTAL_LIMIT:
            raise FetchError("sending %s: %d bytes is more than the protocol carries (%d)" % (path, size, sf.MAX_TOTAL_LIMIT))
        self.size = size
        self.digest = digest
        self.payload = payload
        self.window = max(window, payload)
        self.encoding = encoding
        self.encode = sf.make_encoder(encoding)
        self.parser = sf.make_parser(encoding)
        self.rto = rto if rto is not None else max(1.5, 3.0 * self.window / max(rate, 1))
        self.line_timeout = line_timeout
        self.install_timeout = install_timeout
        self.progress = progress or (lambda done, total=None: None)
        self.notify = notify or (lambda text: None)
        self.clock = clock
        self.stats = Stats()
        self.file = None
        self.acked = 0
        self.next = 0
        self.limit = sf.MAX_PAYLOAD
        self.heard = None
        self.installing = False

    # --- the line ---------------------------------------------------------------------------
    def _send(self, ftype, seq=0, payload=b""):
        self.link.write(self.encode(ftype, seq, payload))

    def _frames(self, timeout):
        data = self.link.read(timeout)
        if not data:
            self._check_line()
            return []
        frames = self.parser.feed(data)
        if frames:
            self.heard = self.clock()
        else:
            self._check_line()
        return frames

    def _check_line(self):
        limit = self.install_timeout if self.installing else self.line_timeout
        if self.clock() - self.heard > limit:
            version = self.parser.foreign_version
            if version is not None:
                raise FetchError("the device speaks serial protocol version %d; this host speaks %d"
                                 % (version, sf.PROTOCOL_VERSION), "use the same updater release on both sides")
            raise LineDown("sending %s: no frame from the receiver for %.0f s" % (self.path, limit),
                           "check the cable; push again to resume from where the device stands")

    def _read_chunk(self, offset):
        self.file.seek(offset)
        return self.file.read(min(self.payload, self.limit, self.size - offset))

    # --- the exchange -----------------------------------------------------------------------
    def run(self):
        """Send the whole file (resuming) and return the device's RESULT document."""
        self.heard = self.clock()
        with open(self.path, "rb") as self.file:
            while True:
                result = self._handshake()
                if result is None:
                    result = self._transfer()
                if result is None:
                    continue  # the receiver lost the transfer (restarted): ask again
                for _ in range(2):
                    self._send(sf.BYE)
                return result

    def _handshake(self):
        """HELLO until a STATE for this file arrives; sets acked/next. A RESULT ends it early."""
        self.stats.handshakes += 1
        self.installing = False
        hello = sf.hello_payload(self.size, self.digest)
        last = None
        while True:
            now = self.clock()
            if last is None or now - last >= HELLO_INTERVAL:
                self._send(sf.HELLO, 0, hello)
                last = now
            for ftype, seq, payload in self._frames(0.2):
                if ftype == sf.RESULT:
                    return self._result(payload)
                if ftype != sf.STATE:
                    continue
                state = sf.parse_state(payload)
                if state is None or not state[0] & sf.STATE_ACTIVE:
                    continue
                self.limit = max(1, min(state[1], sf.MAX_PAYLOAD))
                self.acked = self.next = min(seq, self.size)
                if self.stats.resumed_from is None:
                    self.stats.resumed_from = self.acked
                if self.acked:
                    self.notify("resuming at byte %d of %d" % (self.acked, self.size))
                return None

    def _transfer(self):
        """DATA in a window until all is acknowledged, then END until the RESULT. None = re-handshake."""
        moved = self.clock()
        goback = None  # (offset, time) of the last go-back
        end_sent = None
        self.progress(self.acked, self.size)
        while True:
            now = self.clock()
            while self.next < self.size and self.next - self.acked < self.window:
                chunk = self._read_chunk(self.next)
                if self.stats.started is None:
                    self.stats.started = now
                self._send(sf.DATA, self.next, chunk)
                self.stats.sent_bytes += len(chunk)
                self.next += len(chunk)
            if self.acked >= self.size and not self.installing:
                if self.stats.data_done is None:
                    self.stats.data_done = now
                if end_sent is None or now - end_sent >= self.rto:
                    self._send(sf.END, self.size, sf.hello_payload(self.size, self.digest))
                    end_sent = now
            wait = 0.0 if self.next < self.size and self.next - self.acked < self.window else 0.05
            for ftype, seq, payload in self._frames(wait):
                if ftype == sf.ACK or ftype == sf.NAK:
                    if seq > self.acked and seq <= self.size:
                        self.acked = seq
                        moved = self.clock()
                        self.progress(self.acked, self.size)
                    if self.next < self.acked:
                        self.next = self.acked
                    if ftype == sf.NAK and seq == self.acked:
                        self.stats.naks += 1
                        t = self.clock()
                        if self.next > seq and (goback is None or goback[0] != seq or t - goback[1] > self.rto):
                            self.next = seq
                            goback = (seq, t)
                            self.stats.retransmits += 1
                            end_sent = None
                elif ftype == sf.STATE:
                    state = sf.parse_state(payload)
                    if state is not None and not state[0] & sf.STATE_ACTIVE:
                        self.notify("the receiver restarted; asking it where it stands")
                        return None
                elif ftype == sf.PROGRESS:
                    doc = sf.parse_json(payload) or {}
                    if doc.get("stage") == "install" and not self.installing:
                        self.installing = True
                        self.notify("received and verified by the device; installing")
                elif ftype == sf.RESULT:
                    return self._result(payload)
            if self.acked < self.size and self.clock() - moved > self.rto:
                self.stats.timeouts += 1
                self.stats.retransmits += 1
                self.next = self.acked
                moved = self.clock()
                goback = (self.acked, moved)

    def _result(self, payload):
        doc = sf.parse_json(payload)
        if doc is None:
            return {"ok": False, "stage": "receive",
                    "error": {"type": "FormatError", "message": "the device sent an unreadable result", "hint": None}}
        return doc
