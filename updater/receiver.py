"""The receiving side of the serial transfer protocol: a state machine, frames in, replies out.

Pure (the file goes to a *store* object it is given; time comes in as ``now``), runs on CPython
and MicroPython. The frame format is updater.serialframe; the exchange is in
docs/serial-protocol.md. updater.receive runs it on the console.
"""

from .objects import to_hex
from .serialframe import (ABORT, ACK, BYE, DATA, DEFAULT_MAX_TOTAL, END, HELLO, MAX_PAYLOAD, MAX_TOTAL_LIMIT, NAK,
                          PROGRESS, RESULT, STATE, STATE_ACTIVE, STATE_COMPLETE, error_doc, json_payload,
                          parse_identity, state_payload)

HEARTBEAT_MS = 500
NAK_INTERVAL_MS = 500

# States.
WAITING, RECEIVING, RECEIVED, FINISHED, CLOSED = "waiting", "receiving", "received", "finished", "closed"


class Receiver:
    """The receiving side's state machine: frames in, replies out; the file goes to ``store``.

    ``store`` has begin(size, sha256) -> bytes already held (a resumed partial file, else 0),
    write(offset, data), verify() -> (sha256, size) of what it holds, discard(). It may raise
    updater errors (no space, storage): they become a RESULT the host shows.

    Data is accepted only in order: a frame at the expected offset is written and acknowledged
    (ACK = highest contiguous offset); an earlier one is acknowledged again; a later one (a gap
    after a lost frame) gets a NAK with the expected offset, at most every NAK_INTERVAL_MS. After
    END with the whole file held and its SHA-256 matching, the state is RECEIVED: the caller
    installs the file and calls finish(result). ``tick(now)`` sends heartbeats while idle.
    All ``now`` values are milliseconds from one clock.
    """

    def __init__(self, store, max_total=DEFAULT_MAX_TOTAL, max_payload=MAX_PAYLOAD):
        if not 0 < max_total <= MAX_TOTAL_LIMIT:
            raise ValueError("max_total must be 1..%d, got %r" % (MAX_TOTAL_LIMIT, max_total))
        if not 0 < max_payload <= MAX_PAYLOAD:
            raise ValueError("max_payload must be 1..%d, got %r" % (MAX_PAYLOAD, max_payload))
        self.store = store
        self.max_total = max_total
        self.max_payload = max_payload
        self.state = WAITING
        self.size = None
        self.digest = None
        self.offset = 0
        self.resumed_from = None
        self.result = None
        self._nak = None  # (offset, time) of the last NAK
        self.last_sent = None

    # --- replies ---------------------------------------------------------------------------
    def _state_frame(self):
        flags = 0
        if self.state in (RECEIVING, RECEIVED, FINISHED) and self.size is not None:
            flags |= STATE_ACTIVE
        seq = self.offset if flags else 0
        if self.state == FINISHED and self.result and self.result.get("ok"):
            flags |= STATE_COMPLETE
            seq = self.size
        return (STATE, seq, state_payload(flags, self.max_payload, self.max_total))

    def _result_frame(self):
        return (RESULT, 0, json_payload(self.result))

    def _out(self, frames, now):
        if frames:
            self.last_sent = now
        return frames

    def _fail(self, stage, err, now):
        self.finish(error_doc(stage, err))
        return self._out([self._result_frame()], now)

    # --- events ----------------------------------------------------------------------------
    def start(self, now):
        """The first frame to send: a STATE saying the receiver is listening."""
        return self._out([self._state_frame()], now)

    def handle(self, ftype, seq, payload, now):
        if ftype == HELLO:
            return self._hello(payload, now)
        if ftype == DATA:
            return self._data(seq, payload, now)
        if ftype == END:
            return self._end(payload, now)
        if ftype in (BYE, ABORT):
            self.state = CLOSED
            return []
        return []  # device-side types (an echo) and unknown letters are ignored

    def _hello(self, payload, now):
        ident = parse_identity(payload)
        if ident is None:
            return []
        size, digest = ident
        if self.state == FINISHED and (size, digest) == (self.size, self.digest) and self.result.get("ok"):
            return self._out([self._state_frame()], now)  # already installed: END gets the result
        if size > self.max_total:
            from .errors import IntegrityError

            return self._fail("receive", IntegrityError(
                "receiving a file of %d bytes: larger than this device accepts (%d bytes)" % (size, self.max_total),
                "check that this is the right bundle; or run 'updater receive --max-size' with a larger limit"), now)
        if size == 0:
            from .errors import FormatError

            return self._fail("receive", FormatError("receiving a file of 0 bytes: nothing to install",
                                                     "push a bundle made by 'updater bundle'"), now)
        if self.state == RECEIVING and (size, digest) == (self.size, self.digest):
            return self._out([self._state_frame()], now)
        try:
            held = self.store.begin(size, digest)
        except Exception as err:  # noqa: BLE001 - storage trouble goes back to the host as a result
            return self._fail("receive", err, now)
        if not 0 <= held <= size:
            self.store.discard()
            held = self.store.begin(size, digest)
        self.size, self.digest, self.offset = size, digest, held
        self.resumed_from = held
        self.result = None
        self._nak = None
        self.state = RECEIVING
        return self._out([self._state_frame()], now)

    def _data(self, seq, payload, now):
        if self.state != RECEIVING:
            return self._out([self._state_frame()], now)
        n = len(payload)
        if seq == self.offset and n and seq + n <= self.size:
            try:
                self.store.write(seq, payload)
            except Exception as err:  # noqa: BLE001
                return self._fail("receive", err, now)
            self.offset += n
            return self._out([(ACK, self.offset, b"")], now)
        if seq + n <= self.offset:
            return self._out([(ACK, self.offset, b"")], now)
        last = self._nak
        if last is not None and last[0] == self.offset and now - last[1] < NAK_INTERVAL_MS:
            return []
        self._nak = (self.offset, now)
        return self._out([(NAK, self.offset, b"")], now)

    def _end(self, payload, now):
        if self.state == FINISHED:
            return self._out([self._result_frame()], now)
        if self.state != RECEIVING or parse_identity(payload) != (self.size, self.digest):
            return self._out([self._state_frame()], now)
        if self.offset < self.size:
            self._nak = (self.offset, now)
            return self._out([(NAK, self.offset, b"")], now)
        self.state = RECEIVED
        try:
            digest, size = self.store.verify()
        except Exception as err:  # noqa: BLE001
            return self._fail("verify", err, now)
        if digest != self.digest or size != self.size:
            self.store.discard()
            self.offset = 0
            from .errors import IntegrityError

            return self._fail("verify", IntegrityError(
                "verifying the received file: expected %d bytes with SHA-256 %s, got %d bytes with %s; "
                "the file was discarded" % (self.size, to_hex(self.digest), size, to_hex(digest)),
                "push again (it starts from the beginning); if it fails again, check the cable"), now)
        return self._out([(PROGRESS, 0, json_payload({"stage": "verified", "done": size, "total": size}))], now)

    def finish(self, result):
        """Record the final result (after the install, or a failure); RESULT is sent until BYE."""
        self.result = result
        self.state = FINISHED

    def tick(self, now):
        """Heartbeats: STATE while waiting, ACK while receiving, RESULT until the host says BYE."""
        if self.last_sent is not None and now - self.last_sent < HEARTBEAT_MS:
            return []
        if self.state == RECEIVING:
            return self._out([(ACK, self.offset, b"")], now)
        if self.state == FINISHED:
            return self._out([self._result_frame()], now)
        if self.state == WAITING:
            return self._out([self._state_frame()], now)
        return []


