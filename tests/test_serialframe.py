"""The serial transfer protocol without a line: frames, the parser, the receiver state machine,
and the host Sender against the real receive loop over a seeded lossy in-memory channel."""

import hashlib
import os
import queue
import random
import struct
import tempfile
import threading

import pytest

from updater import receive, receiver as rv
from updater import serialframe as sf
from updater.host.console import LineDown
from updater.host.sender import Sender


class MemStore:
    """The receiver's store interface, in memory."""

    def __init__(self, held=b""):
        self.data = bytearray(held)
        self.path = "<memory>"
        self.began = []
        self.discarded = 0

    def begin(self, size, digest):
        self.began.append((size, digest))
        return len(self.data)

    def write(self, offset, data):
        assert offset == len(self.data)
        self.data += data

    def verify(self):
        return hashlib.sha256(bytes(self.data)).digest(), len(self.data)

    def discard(self):
        self.data = bytearray()
        self.discarded += 1


def hello(data):
    return sf.hello_payload(len(data), hashlib.sha256(data).digest())


# --- frames and the parser ---------------------------------------------------------------------
def test_frame_layout_matches_the_documented_table():
    frame = sf.encode(sf.DATA, 0x01020304, b"xyz")
    assert frame[:2] == sf.MAGIC and frame[2] == sf.PROTOCOL_VERSION and frame[3] == ord("D")
    assert struct.unpack(">IH", frame[4:10]) == (0x01020304, 3)
    import binascii

    assert struct.unpack(">H", frame[10:12])[0] == binascii.crc32(frame[:10]) & 0xFFFF
    assert frame[12:15] == b"xyz"
    assert struct.unpack(">I", frame[15:])[0] == binascii.crc32(frame[:15])
    assert len(frame) == sf.HEADER + 3 + sf.TRAILER


def test_parser_splits_a_stream_fed_byte_by_byte():
    frames = [(sf.DATA, i * 7, os.urandom(i)) for i in range(20)]
    stream = b"".join(sf.encode(*f) for f in frames)
    p = sf.Parser()
    got = []
    for i in range(len(stream)):
        got += p.feed(stream[i:i + 1])
    assert got == frames and p.garbage == 0 and p.corrupt == 0


def test_parser_resynchronises_after_garbage_and_partial_frames():
    rng = random.Random(1)
    good = [(sf.ACK, i, b"") for i in range(5)] + [(sf.DATA, 99, b"\xa5\x5a" * 40)]
    stream = b""
    for f in good:
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(60))) + sf.MAGIC + b"\x01D"
        stream += junk + sf.encode(*f)[: rng.randrange(1, 12)] + sf.encode(*f)
    p = sf.Parser()
    got = []
    for i in range(0, len(stream), 13):
        got += p.feed(stream[i:i + 13])
    assert got == good
    assert p.garbage > 0


def test_every_single_bit_flip_is_rejected():
    frame = sf.encode(sf.DATA, 1234, b"payload bytes \x00\xff")
    for i in range(len(frame) * 8):
        bad = bytearray(frame)
        bad[i // 8] ^= 1 << (i % 8)
        assert sf.Parser().feed(bytes(bad) + sf.encode(sf.ACK, 5)) == [(sf.ACK, 5, b"")], "bit %d" % i


def test_declared_length_is_bounded():
    with pytest.raises(ValueError):
        sf.encode(sf.DATA, 0, b"x" * (sf.MAX_PAYLOAD + 1))
    small = sf.Parser(max_payload=16)
    assert small.feed(sf.encode(sf.DATA, 0, b"x" * 17) + sf.encode(sf.ACK, 1)) == [(sf.ACK, 1, b"")]
    assert small.corrupt == 1
    # a header claiming more than MAX_PAYLOAD is dropped at once, not waited for
    head = sf.MAGIC + struct.pack(">BBIH", 1, sf.DATA, 0, 0xFFFF)
    import binascii

    head += struct.pack(">H", binascii.crc32(head) & 0xFFFF)
    p = sf.Parser()
    assert p.feed(head + sf.encode(sf.ACK, 2)) == [(sf.ACK, 2, b"")]
    assert len(p.buf) == 0


def test_foreign_version_is_noticed_and_dropped():
    frame = bytearray(sf.encode(sf.STATE, 0, sf.state_payload(0, 1024, 100)))
    frame[2] = 9
    import binascii

    frame[10:12] = struct.pack(">H", binascii.crc32(bytes(frame[:10])) & 0xFFFF)
    p = sf.Parser()
    assert p.feed(bytes(frame)) == [] and p.foreign_version == 9
    lines = sf.LineParser()  # the base64 encoding reports it the same way
    assert lines.feed(sf.encode_line(bytes(frame))) == [] and lines.foreign_version == 9


def test_base64_lines_survive_a_canonical_echoing_console():
    enc = sf.make_encoder("base64")
    lines = enc(sf.DATA, 0, bytes(range(256))) + b"device# garbage line\r\n" + enc(sf.ACK, 256)
    assert all(32 <= b < 127 or b in (10, 13) for b in lines)
    p = sf.make_parser("base64")
    got = p.feed(lines.replace(b"\n", b"\r\n"))
    assert got == [(sf.DATA, 0, bytes(range(256))), (sf.ACK, 256, b"")]
    assert p.feed(b":" + b"A" * (sf.MAX_LINE + 5) + b"\n" + enc(sf.BYE)) == [(sf.BYE, 0, b"")]


def test_results_always_fit_one_frame():
    big = {"ok": True, "stage": "install", "result": {"note": "x" * 9000, "version": "2", "list": list(range(3000))}}
    data = sf.json_payload(big)
    assert len(data) <= sf.MAX_PAYLOAD
    doc = sf.parse_json(data)
    assert doc["ok"] is True and doc["result"]["version"] == "2" and doc["result"]["truncated"] is True
    assert sf.parse_json(sf.json_payload({"ok": False, "raw": b"\x01\x02"}))["raw"] == "0102"


# --- the receiver state machine ------------------------------------------------------------------
def test_receiver_accepts_in_order_acks_duplicates_and_naks_gaps_once():
    data = os.urandom(3000)
    store = MemStore()
    r = rv.Receiver(store, max_total=10000)
    assert r.start(0)[0][0] == sf.STATE
    (t, seq, payload), = r.handle(sf.HELLO, 0, hello(data), 0)
    assert t == sf.STATE and seq == 0 and sf.parse_state(payload)[0] & sf.STATE_ACTIVE
    assert r.handle(sf.DATA, 0, data[:1000], 1) == [(sf.ACK, 1000, b"")]
    assert r.handle(sf.DATA, 0, data[:1000], 2) == [(sf.ACK, 1000, b"")]  # duplicate
    assert r.handle(sf.DATA, 2000, data[2000:], 3) == [(sf.NAK, 1000, b"")]  # gap
    assert r.handle(sf.DATA, 2000, data[2000:], 4) == []  # rate-limited
    assert r.handle(sf.DATA, 2000, data[2000:], 4 + rv.NAK_INTERVAL_MS) == [(sf.NAK, 1000, b"")]
    assert r.handle(sf.END, 3000, hello(data), 5) == [(sf.NAK, 1000, b"")]  # not complete yet
    r.handle(sf.DATA, 1000, data[1000:2000], 6)
    r.handle(sf.DATA, 2000, data[2000:], 7)
    out = r.handle(sf.END, 3000, hello(data), 8)
    assert r.state == rv.RECEIVED and out[0][0] == sf.PROGRESS
    assert bytes(store.data) == data


def test_receiver_refuses_data_past_the_declared_size_and_oversized_files():
    r = rv.Receiver(MemStore(), max_total=100)
    out = r.handle(sf.HELLO, 0, sf.hello_payload(101, b"\x00" * 32), 0)
    assert out[0][0] == sf.RESULT and r.state == rv.FINISHED
    assert "larger than this device accepts" in sf.parse_json(out[0][2])["error"]["message"]
    r = rv.Receiver(MemStore(), max_total=100)
    r.handle(sf.HELLO, 0, sf.hello_payload(10, b"\x00" * 32), 0)
    assert r.handle(sf.DATA, 0, b"x" * 11, 1) == [(sf.NAK, 0, b"")]
    assert r.offset == 0


def test_receiver_discards_a_file_whose_digest_does_not_match():
    data = os.urandom(500)
    store = MemStore()
    r = rv.Receiver(store)
    r.handle(sf.HELLO, 0, sf.hello_payload(500, b"\x11" * 32), 0)
    r.handle(sf.DATA, 0, data, 1)
    out = r.handle(sf.END, 500, sf.hello_payload(500, b"\x11" * 32), 2)
    doc = sf.parse_json(out[0][2])
    assert out[0][0] == sf.RESULT and doc["stage"] == "verify" and doc["error"]["type"] == "IntegrityError"
    assert store.discarded == 1 and r.state == rv.FINISHED
    # the same HELLO again starts over from zero
    out = r.handle(sf.HELLO, 0, sf.hello_payload(500, b"\x11" * 32), 3)
    assert out[0][:2] == (sf.STATE, 0) and r.state == rv.RECEIVING


def test_receiver_resumes_from_what_the_store_holds():
    data = os.urandom(4000)
    r = rv.Receiver(MemStore(held=data[:1500]))
    (t, seq, _), = r.handle(sf.HELLO, 0, hello(data), 0)
    assert (t, seq) == (sf.STATE, 1500) and r.resumed_from == 1500


def test_receiver_heartbeats_and_repeats_its_result_until_bye():
    hb = rv.HEARTBEAT_MS
    r = rv.Receiver(MemStore())
    r.start(0)
    assert r.tick(hb // 2) == []
    assert r.tick(hb)[0][0] == sf.STATE
    r.handle(sf.HELLO, 0, hello(b"abc"), hb)
    assert r.tick(2 * hb + 1) == [(sf.ACK, 0, b"")]
    r.finish({"ok": True, "stage": "install"})
    assert r.tick(3 * hb + 2)[0][0] == sf.RESULT
    assert r.handle(sf.END, 3, hello(b"abc"), 3 * hb + 3)[0][0] == sf.RESULT
    # a HELLO for the installed file says complete: END then gets the result again
    (t, seq, payload), = r.handle(sf.HELLO, 0, hello(b"abc"), 3 * hb + 4)
    assert seq == 3 and sf.parse_state(payload)[0] & sf.STATE_COMPLETE
    r.handle(sf.BYE, 0, b"", 3 * hb + 5)
    assert r.state == rv.CLOSED


# --- sender and receive loop over a lossy in-memory channel ---------------------------------------
class Channel:
    """One direction of an in-memory line; seeded drops, bit flips and garbage bursts."""

    def __init__(self, seed, faults):
        self.q = queue.Queue()
        self.rng = random.Random(seed)
        self.faults = faults
        self.dead = threading.Event()

    def put(self, data):
        if self.dead.is_set():
            return
        data = bytearray(data)
        r = self.rng.random
        if self.faults and r() < 0.05 and data:
            del data[self.rng.randrange(len(data)):][:self.rng.randint(1, 40)]
        if self.faults and r() < 0.05 and data:
            data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
        if self.faults and r() < 0.02:
            data[0:0] = bytes(self.rng.randrange(256) for _ in range(30))
        self.q.put(bytes(data))

    def get(self, timeout):
        try:
            data = self.q.get(timeout=max(timeout, 0.0005))
        except queue.Empty:
            return b""
        while not self.q.empty():
            data += self.q.get()
        return data


class End:
    def __init__(self, rx, tx):
        self.rx, self.tx = rx, tx

    def write(self, data):
        self.tx.put(data)

    def read(self, *args):
        timeout = args[-1] / 1000.0 if len(args) == 2 else args[0]
        return self.rx.get(timeout)


def run_pair(data, seed, faults, store=None, installer=None):
    h2d, d2h = Channel(seed, faults), Channel(seed + 1000, faults)
    store = store or MemStore()
    installed = []

    def install(path, progress):
        installed.append(bytes(store.data))
        return {"deployment": "x.1"}

    summary = {}
    t = threading.Thread(target=lambda: summary.update(receive.receive(
        End(h2d, d2h), store, installer or install, idle_timeout_ms=5000, linger_ms=300)))
    t.start()
    fd, path = tempfile.mkstemp(prefix="serialframe-%d-" % seed)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    try:
        sender = Sender(End(d2h, h2d), path, payload=512, window=4096, rto=0.3, line_timeout=5)
        doc = sender.run()
    finally:
        os.remove(path)
        t.join(10)
    return doc, sender, summary, installed


@pytest.mark.parametrize("seed", range(8))
def test_transfer_over_a_lossy_channel_delivers_exact_bytes(seed):
    data = os.urandom(40000 + seed * 977)
    doc, sender, summary, installed = run_pair(data, seed, faults=True)
    assert doc["ok"] is True and doc["sha256"] == hashlib.sha256(data).hexdigest()
    assert installed == [data]
    assert summary["state"] == rv.CLOSED
    seen = summary["garbage"] + summary["corrupt"] + sender.parser.garbage + sender.parser.corrupt
    assert seen > 0 and sender.stats.sent_bytes >= len(data)  # the faults happened and were survived


def test_faults_force_retransmissions():
    total = 0
    for seed in range(4):
        _, sender, _, _ = run_pair(os.urandom(30000), seed, faults=True)
        total += sender.stats.retransmits
    assert total > 0


def test_transfer_without_faults_sends_each_byte_once():
    data = os.urandom(100000)
    doc, sender, _, _ = run_pair(data, 0, faults=False)
    assert doc["ok"] and sender.stats.sent_bytes == len(data) and sender.stats.retransmits == 0


def test_sender_resumes_after_the_line_dies():
    data = os.urandom(30000)
    store = MemStore(held=data[:12000])
    doc, sender, _, _ = run_pair(data, 3, faults=False, store=store)
    assert doc["ok"] and sender.stats.resumed_from == 12000 and sender.stats.sent_bytes == 18000


def test_sender_reports_a_dead_line():
    quiet = Channel(0, False)
    sender = Sender(End(quiet, Channel(1, False)), __file__, line_timeout=0.5)
    with pytest.raises(LineDown):
        sender.run()


def test_a_failing_install_is_reported_and_the_file_discarded():
    from updater.errors import TrustError

    def install(path, progress):
        raise TrustError("installing: the bundle is for board x", "push the bundle built for y")

    store = MemStore()
    doc, _, summary, _ = run_pair(os.urandom(5000), 5, faults=False, store=store, installer=install)
    assert doc["ok"] is False and doc["stage"] == "install"
    assert doc["error"] == {"type": "TrustError", "message": "installing: the bundle is for board x",
                            "hint": "push the bundle built for y"}
    assert store.discarded >= 1 and not store.data


def test_receive_command_lists_the_protocol_encodings():
    from updater import cmd_console, serialframe

    assert cmd_console.ENCODINGS == serialframe.ENCODINGS
