# heap: 256K
"""The device end of the serial transfer under MicroPython: frames, parser, receiver, the receive
loop on a scripted port, and the staging store on real files (partial file kept for a resume)."""

import hashlib
import os

from mpytest import run, scratch

from updater import receive
from updater import receiver as rv
from updater import serialframe as sf
from updater.errors import IntegrityError


def ident(data):
    return sf.hello_payload(len(data), hashlib.sha256(data).digest())


class Clock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        self.t += 50
        return self.t


class ScriptedPort:
    """Plays the host: returns the given chunks one read at a time, then silence; records writes."""

    def __init__(self, chunks, after_result=None):
        self.chunks = list(chunks)
        self.written = b""
        self.after_result = after_result
        self.parser = sf.Parser()
        self.frames = []

    def read(self, n, timeout_ms):
        if self.chunks:
            return self.chunks.pop(0)
        return b""

    def write(self, data):
        self.written += data
        for f in self.parser.feed(data):
            self.frames.append(f)
            if f[0] == sf.RESULT and self.after_result is not None:
                self.chunks.append(self.after_result)
                self.after_result = None


def test_parser_resyncs_and_drops_corruption():
    good = sf.encode(sf.DATA, 5, b"hello")
    bad = bytearray(sf.encode(sf.DATA, 0, b"world"))
    bad[14] ^= 0x10
    p = sf.Parser()
    got = p.feed(b"\x00junk\xa5" + bytes(bad) + b"\xa5\x5a\x01" + good[:7])
    got += p.feed(good[7:])
    assert got == [(sf.DATA, 5, b"hello")]
    assert p.corrupt == 1 and p.garbage > 0


def test_base64_lines():
    enc = sf.make_encoder("base64")
    p = sf.make_parser("base64")
    assert p.feed(b"noise\r\n" + enc(sf.ACK, 7) + enc(sf.DATA, 1, b"\x00\x03\x04")) == [
        (sf.ACK, 7, b""), (sf.DATA, 1, b"\x00\x03\x04")]


def test_staging_store_keeps_a_partial_file_and_cleans_older_ones():
    tmp = scratch("serial-store") + "/tmp"
    data = os.urandom(3000)
    digest = hashlib.sha256(data).digest()
    s = receive.StagingStore(tmp)
    assert s.begin(len(data), digest) == 0
    s.write(0, data[:1000])
    s2 = receive.StagingStore(tmp)
    assert s2.begin(len(data), digest) == 1000
    s2.write(1000, data[1000:])
    assert s2.verify() == (digest, 3000)
    other = receive.StagingStore(tmp)
    other.begin(10, b"\x01" * 32)
    names = os.listdir(tmp)
    assert names == ["receive-" + "01" * 32], names
    other.discard()
    assert os.listdir(tmp) == []


def test_receive_loop_installs_a_verified_file():
    data = os.urandom(5000)
    frames = [b"\x03garbage", sf.encode(sf.HELLO, 0, ident(data))]
    for off in range(0, 5000, 1000):
        frames.append(sf.encode(sf.DATA, off, data[off:off + 1000]))
        if off == 2000:
            frames.append(sf.encode(sf.DATA, off, data[off:off + 1000]))  # duplicate
    frames.append(sf.encode(sf.END, 5000, ident(data)))
    port = ScriptedPort(frames, after_result=sf.encode(sf.BYE))
    tmp = scratch("serial-loop") + "/tmp"
    seen = []

    def install(path, progress):
        with open(path, "rb") as f:
            seen.append(f.read())
        progress(1, 1)
        return {"deployment": "abc.1"}

    summary = receive.receive(port, receive.StagingStore(tmp), install, clock=Clock())
    assert seen == [data]
    assert summary["state"] == rv.CLOSED and summary["result"]["ok"] is True
    kinds = [f[0] for f in port.frames]
    assert kinds[0] == sf.STATE and sf.RESULT in kinds and sf.PROGRESS in kinds
    assert os.listdir(tmp) == []  # the staging directory is gone once installed


def test_receive_loop_refuses_a_tampered_file_and_keeps_nothing():
    data = os.urandom(2000)
    wrong = bytearray(data)
    wrong[100] ^= 1
    frames = [sf.encode(sf.HELLO, 0, ident(data)), sf.encode(sf.DATA, 0, bytes(wrong)),
              sf.encode(sf.END, 2000, ident(data))]
    port = ScriptedPort(frames, after_result=sf.encode(sf.BYE))
    tmp = scratch("serial-tamper") + "/tmp"

    def install(path, progress):
        raise IntegrityError("must not be called")

    summary = receive.receive(port, receive.StagingStore(tmp), install, clock=Clock())
    assert summary["result"]["ok"] is False and summary["result"]["stage"] == "verify"
    assert os.listdir(tmp) == []


def test_receive_loop_gives_up_when_idle_and_keeps_the_partial_file():
    data = os.urandom(4000)
    frames = [sf.encode(sf.HELLO, 0, ident(data)), sf.encode(sf.DATA, 0, data[:1500])]
    port = ScriptedPort(frames)
    tmp = scratch("serial-idle") + "/tmp"
    summary = receive.receive(port, receive.StagingStore(tmp), None, idle_timeout_ms=2000, clock=Clock())
    assert summary["state"] == "idle" and summary["held"] == 1500
    again = receive.StagingStore(tmp)
    assert again.begin(4000, hashlib.sha256(data).digest()) == 1500


def test_receiver_rejects_oversized_transfers():
    r = rv.Receiver(receive.StagingStore(scratch("serial-big") + "/tmp"), max_total=1000)
    out = r.handle(sf.HELLO, 0, sf.hello_payload(1001, b"\x00" * 32), 0)
    assert out[0][0] == sf.RESULT and r.state == rv.FINISHED


run(globals())
