"""The framed transfer protocol of the serial console: ``updater console push`` -> ``updater receive``.

Pure: bytes in, frames out, no I/O (the receiver writes through a *store* object it is given).
Runs on CPython and MicroPython. Field tables and the exchange: docs/serial-protocol.md.

A frame (integers big-endian)::

    off   size  field
    0     2     magic A5 5A (bytes a console never prints, so a receiver resynchronises on them)
    2     1     protocol version (PROTOCOL_VERSION)
    3     1     type: one ASCII letter (HELLO ... BYE below)
    4     4     seq: a byte offset (DATA, ACK, NAK, STATE, END), else 0
    8     2     payload length, 0..MAX_PAYLOAD
    10    2     header check: low 16 bits of CRC-32 of bytes 0..9
    12    N     payload
    12+N  4     CRC-32 (binascii.crc32) of bytes 0..11+N

Encodings: ``raw`` sends frames as they are (the receiver puts its tty in raw mode: 8-bit
clean, no echo, no signals); ``base64`` sends each frame as one line ``:`` + base64 + ``\\n``
for consoles that cannot be made raw (33% slower). The parser drops garbage and corrupt
frames and resynchronises on the next magic.
"""

import binascii
import struct

PROTOCOL_VERSION = 1
MAGIC = b"\xa5\x5a"
HEADER = 12
TRAILER = 4
MAX_PAYLOAD = 4096  # no frame may declare more: a corrupt length cannot make anyone wait long
DEFAULT_PAYLOAD = 1024
MAX_TOTAL_LIMIT = 0xFFFFFFFF  # offsets are 32-bit
DEFAULT_MAX_TOTAL = 512 * 1024 * 1024
ENCODINGS = ("raw", "base64")
MAX_LINE = 2 * (HEADER + MAX_PAYLOAD + TRAILER) + 8  # base64 lines longer than this are garbage

# Frame types. Host -> device:
HELLO = 0x48  # H: payload size(4) sha256(32): "I want to send this file; where do you stand?"
DATA = 0x44  # D: seq = offset of the payload in the file
END = 0x45  # E: seq = size, payload size(4) sha256(32): "that was all of it"
BYE = 0x42  # B: "I have your result": the receiver exits
ABORT = 0x58  # X: stop now, keep the partial file for a later resume
# Device -> host:
STATE = 0x53  # S: seq = bytes held; payload flags(1) max_payload(2) max_total(4)
ACK = 0x41  # A: seq = highest contiguous offset received (also the heartbeat while receiving)
NAK = 0x4E  # N: seq = offset expected next (a gap or a frame out of place)
PROGRESS = 0x50  # P: payload JSON {"stage", "done", "total"} while verifying or installing
RESULT = 0x52  # R: payload JSON {"ok", "stage", "error" | "result", "size", "sha256"}

STATE_ACTIVE = 1  # a transfer is open (seq is meaningful)
STATE_COMPLETE = 2  # the whole file is held and was installed: send END to get the result again


_HELLO_FMT = ">I32s"
_STATE_FMT = ">BHI"


def encode(ftype, seq=0, payload=b""):
    """One frame as bytes (raw encoding)."""
    if not 0 <= seq <= 0xFFFFFFFF:
        raise ValueError("frame seq out of range: %r" % (seq,))
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("frame payload of %d bytes exceeds %d" % (len(payload), MAX_PAYLOAD))
    head = MAGIC + struct.pack(">BBIH", PROTOCOL_VERSION, ftype, seq, len(payload))
    head += struct.pack(">H", binascii.crc32(head) & 0xFFFF)
    crc = binascii.crc32(payload, binascii.crc32(head))
    return head + payload + struct.pack(">I", crc & 0xFFFFFFFF)


def encode_line(frame):
    """A raw frame as one console-safe line (base64 encoding)."""
    return b":" + binascii.b2a_base64(frame)


def hello_payload(size, digest):
    if len(digest) != 32 or not 0 <= size <= MAX_TOTAL_LIMIT:
        raise ValueError("hello: bad size or digest")
    return struct.pack(_HELLO_FMT, size, digest)


def parse_identity(payload):
    """(size, sha256) from a HELLO or END payload, or None if it is malformed."""
    if len(payload) != 36:
        return None
    return struct.unpack(_HELLO_FMT, payload)


def state_payload(flags, max_payload, max_total):
    return struct.pack(_STATE_FMT, flags, max_payload, max_total)


def parse_state(payload):
    """(flags, max_payload, max_total) from a STATE payload, or None."""
    if len(payload) != 7:
        return None
    return struct.unpack(_STATE_FMT, payload)


def _plain(value, depth=0):
    """JSON-ready copy: bytes as hex, tuples as lists; below depth 3 only scalars are kept."""
    if isinstance(value, (bytes, bytearray)):
        return binascii.hexlify(value).decode()
    if isinstance(value, dict):
        if depth >= 3:
            return None
        return dict((str(k), _plain(v, depth + 1)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if depth >= 3:
            return None
        return [_plain(v, depth + 1) for v in value][:32]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def json_payload(doc):
    """A JSON document for one frame; a result too big for it keeps its scalars only."""
    import json

    data = json.dumps(_plain(doc)).encode()
    if len(data) > MAX_PAYLOAD and isinstance(doc.get("result"), dict):
        slim = dict(doc)
        slim["result"] = dict((k, v[:200] if isinstance(v, str) else v) for k, v in doc["result"].items()
                              if not isinstance(v, (dict, list, tuple)))
        slim["result"]["truncated"] = True
        data = json.dumps(_plain(slim)).encode()
    if len(data) > MAX_PAYLOAD:
        data = json.dumps({"ok": doc.get("ok", False), "stage": doc.get("stage"), "truncated": True}).encode()
    return data


def parse_json(payload):
    import json

    try:
        doc = json.loads(payload.decode())
    except (ValueError, UnicodeError):
        return None
    return doc if isinstance(doc, dict) else None


class Parser:
    """Turns a byte stream into frames: ``feed(data)`` returns [(type, seq, payload), ...].

    Garbage before a magic, frames with a bad header check, a foreign version, a length over
    ``max_payload`` or a bad CRC are dropped (counted in ``garbage``, ``corrupt``,
    ``foreign_version``); the parser resynchronises on the next magic. Memory is bounded by
    one frame.
    """

    def __init__(self, max_payload=MAX_PAYLOAD):
        if not 0 < max_payload <= MAX_PAYLOAD:
            raise ValueError("max_payload must be 1..%d, got %r" % (MAX_PAYLOAD, max_payload))
        self.max_payload = max_payload
        self.buf = b""
        self.garbage = 0
        self.corrupt = 0
        self.frames = 0
        self.foreign_version = None

    def feed(self, data):
        buf = self.buf + bytes(data) if self.buf else bytes(data)
        out = []
        pos = 0
        n = len(buf)
        while True:
            i = buf.find(MAGIC, pos)
            if i < 0:
                keep = n - 1 if n > pos and buf[n - 1] == MAGIC[0] else n
                self.garbage += keep - pos
                pos = keep
                break
            self.garbage += i - pos
            pos = i
            if n - pos < HEADER:
                break
            version, ftype, seq, length, check = struct.unpack_from(">BBIHH", buf, pos + 2)
            if binascii.crc32(buf[pos:pos + 10]) & 0xFFFF != check:
                self.garbage += 1
                pos += 1
                continue
            if version != PROTOCOL_VERSION or length > self.max_payload:
                if version != PROTOCOL_VERSION:
                    self.foreign_version = version
                self.corrupt += 1
                pos += 1
                continue
            end = pos + HEADER + length
            if n < end + TRAILER:
                break
            (crc,) = struct.unpack_from(">I", buf, end)
            if binascii.crc32(buf[pos:end]) & 0xFFFFFFFF != crc:
                self.corrupt += 1
                pos += 1
                continue
            out.append((ftype, seq, buf[pos + HEADER:end]))
            self.frames += 1
            pos = end + TRAILER
        self.buf = buf[pos:]
        return out


class LineParser:
    """The base64 encoding: lines ``:BASE64\\n`` decoded and fed to a Parser; other lines dropped."""

    def __init__(self, max_payload=MAX_PAYLOAD):
        self.inner = Parser(max_payload)
        self.line = b""
        self.overlong = False

    @property
    def garbage(self):
        return self.inner.garbage

    @property
    def corrupt(self):
        return self.inner.corrupt

    @property
    def foreign_version(self):
        return self.inner.foreign_version

    def feed(self, data):
        out = []
        data = bytes(data)
        while data:
            i = data.find(b"\n")
            part = data if i < 0 else data[:i]
            data = b"" if i < 0 else data[i + 1:]
            if len(self.line) + len(part) > MAX_LINE:
                self.overlong = True
                self.line = b""
            else:
                self.line += part
            if i < 0:
                break
            line = self.line.strip()
            self.line = b""
            if self.overlong:
                self.overlong = False
                self.inner.garbage += 1
                continue
            k = line.find(b":")
            if k < 0:
                self.inner.garbage += len(line)
                continue
            try:
                raw = binascii.a2b_base64(line[k + 1:])
            except (ValueError, TypeError):
                self.inner.corrupt += 1
                continue
            out += self.inner.feed(raw)
            self.inner.buf = b""  # a frame never spans lines
        return out


def make_parser(encoding, max_payload=MAX_PAYLOAD):
    if encoding == "raw":
        return Parser(max_payload)
    if encoding == "base64":
        return LineParser(max_payload)
    raise ValueError("unknown encoding %r (expected one of %s)" % (encoding, ", ".join(ENCODINGS)))


def make_encoder(encoding):
    """A function (type, seq, payload) -> bytes on the wire."""
    if encoding == "raw":
        return encode
    if encoding == "base64":
        return lambda ftype, seq=0, payload=b"": encode_line(encode(ftype, seq, payload))
    raise ValueError("unknown encoding %r (expected one of %s)" % (encoding, ", ".join(ENCODINGS)))


def error_doc(stage, err):
    """The RESULT document of a failure, from an updater error (message, hint) or any exception."""
    return {"ok": False, "stage": stage,
            "error": {"type": err.__class__.__name__, "message": str(err) or err.__class__.__name__,
                      "hint": getattr(err, "hint", None)}}
