"""U-Boot environment images: parse and build, single and redundant (pure: bytes in, objects out).

Layout (see docs/uboot.md for the field table), little-endian, ``size`` bytes per copy:

    single:     u32 crc32 | data[size - 4]
    redundant:  u32 crc32 | u8 flags | data[size - 5]
    data:       "name=value\\0" ... "\\0" then padding (0x00 as U-Boot saves, 0xff as mkenvimage)

The CRC (zlib's CRC-32, binascii.crc32) covers the whole data area including the padding; the
flags byte is outside it. Two copies live at two offsets; which one is in force follows U-Boot
exactly (``choose``):

- counter flags (block devices, NAND, SPI flash: env/common.c env_check_redund): the valid copy
  with the larger flags wins, except that 0 beats 255 (the counter wraps); equal flags pick copy 1.
- boolean flags (parallel NOR flash, env/flash.c): 1 = active, 0 = obsolete. Active beats
  obsolete; equal flags pick copy 1; else an erased 0xff flag wins; any other pair makes U-Boot's
  flash driver fall back to its default environment (no copy is in force).
- only one copy passes its CRC: that copy. Neither: U-Boot runs on its built-in defaults in RAM.

Runs on CPython and MicroPython (struct, binascii only; names are sorted before encoding).
"""

import binascii
import struct

from .errors import EnvError, FormatError

# Version of the env image format this module reads and writes (U-Boot's env_t, unchanged since
# 2008). Bump it, and docs/uboot.md, if the layout or the copy-selection rules ever change.
ENV_FORMAT = 1

HEADER_SINGLE = 4
HEADER_REDUNDANT = 5
FLAGS_COUNTER = "counter"
FLAGS_BOOLEAN = "boolean"
FLAGS_MODES = (FLAGS_COUNTER, FLAGS_BOOLEAN)
FLAG_ACTIVE = 1
FLAG_OBSOLETE = 0
FLAG_ERASED = 0xFF
PAD_UBOOT = 0x00
PAD_MKENVIMAGE = 0xFF
MAX_ENV_SIZE = 16 * 1024 * 1024  # bound for parsers: no real board has a larger env


def crc32(data):
    return binascii.crc32(data) & 0xFFFFFFFF


def header_size(redundant):
    return HEADER_REDUNDANT if redundant else HEADER_SINGLE


# --- names and values --------------------------------------------------------------------------
def name_problem(name):
    """None if ``name`` may be stored as a variable name, else why not (for messages)."""
    if not isinstance(name, str):
        return "a variable name must be text, got %r" % (name,)
    if not name:
        return "a variable name cannot be empty"
    if "=" in name:
        return "a variable name cannot contain '=' (got %r)" % name
    for ch in name:
        if ch in "\0\n\r" or ch == " " or ch == "\t":
            return "a variable name cannot contain NUL, blanks or line breaks (got %r)" % name
    return None


def value_problem(value):
    """None if ``value`` may be stored as a variable value, else why not."""
    if not isinstance(value, str):
        return "a variable value must be text, got %r" % (value,)
    if "\0" in value:
        return "a value cannot contain NUL"
    if "\n" in value or "\r" in value:
        return "a value cannot contain a line break (it breaks fw_printenv output and boot scripts)"
    return None


def check_variable(name, value):
    """Raise EnvError naming the variable if it cannot be stored."""
    why = name_problem(name)
    if why is None:
        why = value_problem(value)
    if why is not None:
        raise EnvError("encoding the U-Boot environment: variable %r: %s" % (name, why),
                       "fix or delete that variable")


# --- the data area -----------------------------------------------------------------------------
def encode_data(variables, data_size, pad=PAD_UBOOT):
    """The data area: entries sorted by name (as U-Boot's hexport does), terminator, padding."""
    if pad not in (PAD_UBOOT, PAD_MKENVIMAGE):
        raise EnvError("encoding the U-Boot environment: padding must be 0x00 or 0xff, got %r" % (pad,))
    parts = []
    for name in sorted(variables):
        value = variables[name]
        check_variable(name, value)
        parts.append((name + "=" + value).encode())
        parts.append(b"\0")
    parts.append(b"\0")  # the empty entry that ends the list (an empty env is this byte alone)
    body = b"".join(parts)
    if len(body) > data_size:
        raise EnvError(
            "encoding the U-Boot environment: %d variables need %d bytes, the area holds %d"
            % (len(variables), len(body), data_size),
            "delete unused variables, or give the board a larger env size",
        )
    return body + bytes([pad]) * (data_size - len(body))


def decode_data(data):
    """{name: value} from a data area; FormatError on a missing terminator or a malformed entry."""
    out = {}
    pos = 0
    end = len(data)
    while True:
        if pos >= end:
            raise FormatError("decoding the U-Boot environment: the variable list has no terminator "
                              "(expected an empty entry before the end of the %d-byte area)" % end)
        if data[pos] == 0:
            return out
        nul = data.find(b"\0", pos)
        if nul < 0:
            raise FormatError("decoding the U-Boot environment: the entry at byte %d has no NUL "
                              "terminator before the end of the %d-byte area" % (pos, end))
        raw = data[pos:nul]
        eq = raw.find(b"=")
        if eq <= 0:
            raise FormatError("decoding the U-Boot environment: the entry at byte %d is not "
                              "name=value: %r" % (pos, bytes(raw[:60])))
        try:
            name = bytes(raw[:eq]).decode()
            value = bytes(raw[eq + 1:]).decode()
        except UnicodeError:
            raise FormatError("decoding the U-Boot environment: the entry at byte %d is not UTF-8" % pos)
        if name in out:
            raise FormatError("decoding the U-Boot environment: variable %r appears twice" % name)
        out[name] = value
        pos = nul + 1


def used_bytes(variables):
    """Bytes the data area needs for ``variables`` (entries plus the terminator)."""
    n = 1
    for name in variables:
        n += len(name.encode()) + 1 + len(variables[name].encode()) + 1
    return n


# --- one copy ----------------------------------------------------------------------------------
def encode(variables, size, redundant=False, flags=0, pad=PAD_UBOOT):
    """One complete copy of ``size`` bytes: CRC, flags byte if redundant, data, padding."""
    check_size(size, redundant)
    if redundant and not (isinstance(flags, int) and 0 <= flags <= 255):
        raise EnvError("encoding the U-Boot environment: flags must be 0..255, got %r" % (flags,))
    data = encode_data(variables, size - header_size(redundant), pad)
    head = struct.pack("<I", crc32(data))
    if redundant:
        head += bytes([flags])
    return head + data


def check_size(size, redundant):
    if not isinstance(size, int) or size <= header_size(redundant) or size > MAX_ENV_SIZE:
        raise EnvError("U-Boot environment size: expected %d < size <= %d, got %r"
                       % (header_size(redundant), MAX_ENV_SIZE, size))


class Copy:
    """One stored copy as read: header fields, whether its CRC matches, and its data area."""

    def __init__(self, index, image, redundant):
        self.index = index  # 0 for the first copy, 1 for the redundant one
        self.size = len(image)
        self.redundant = redundant
        hsize = header_size(redundant)
        self.crc_stored = struct.unpack("<I", bytes(image[:4]))[0]
        self.flags = image[4] if redundant else None
        self.data = image[hsize:]
        self.crc_computed = crc32(self.data)
        self.ok = self.crc_stored == self.crc_computed
        self.erased = self.crc_stored == 0xFFFFFFFF and image[hsize] == 0xFF

    def describe(self):
        if self.ok:
            state = "CRC ok"
        elif self.erased:
            state = "erased (never written)"
        else:
            state = "bad CRC (stored 0x%08x, computed 0x%08x)" % (self.crc_stored, self.crc_computed)
        flags = ", flags %d" % self.flags if self.redundant else ""
        return "copy %d: %s%s" % (self.index + 1, state, flags)


def choose(copies, mode=FLAGS_COUNTER):
    """(index of the copy U-Boot uses or None, why) for one or two Copy objects."""
    if len(copies) == 1:
        c = copies[0]
        return (0, "single copy, CRC ok") if c.ok else (None, "the only copy fails its CRC")
    a, b = copies
    if not a.ok and not b.ok:
        return None, "both copies fail their CRC"
    if a.ok and not b.ok:
        return 0, "only copy 1 passes its CRC"
    if b.ok and not a.ok:
        return 1, "only copy 2 passes its CRC"
    fa, fb = a.flags, b.flags
    if mode == FLAGS_BOOLEAN:
        if fa == FLAG_ACTIVE and fb == FLAG_OBSOLETE:
            return 0, "copy 1 is active, copy 2 obsolete"
        if fa == FLAG_OBSOLETE and fb == FLAG_ACTIVE:
            return 1, "copy 2 is active, copy 1 obsolete"
        if fa == fb:
            return 0, "equal flags (%d): U-Boot takes copy 1" % fa
        if fa == FLAG_ERASED:
            return 0, "copy 1 has erased flags (0xff)"
        if fb == FLAG_ERASED:
            return 1, "copy 2 has erased flags (0xff)"
        return None, ("flags %d and %d are neither active/obsolete nor erased: U-Boot's flash "
                      "driver uses its default environment" % (fa, fb))
    if mode != FLAGS_COUNTER:
        raise EnvError("choosing the U-Boot environment copy: unknown flags mode %r" % (mode,))
    if fa == 255 and fb == 0:
        return 1, "counter wrapped: copy 2 (0) is newer than copy 1 (255)"
    if fb == 255 and fa == 0:
        return 0, "counter wrapped: copy 1 (0) is newer than copy 2 (255)"
    if fa > fb:
        return 0, "copy 1 is newer (flags %d > %d)" % (fa, fb)
    if fb > fa:
        return 1, "copy 2 is newer (flags %d > %d)" % (fb, fa)
    return 0, "equal flags (%d): U-Boot takes copy 1" % fa


class Env:
    """What U-Boot would use given the bytes of its copies: variables, active copy, diagnosis.

    ``variables`` is None when no copy is in force (U-Boot then runs on its built-in defaults);
    ``error`` is set when the copy in force passes its CRC but its data is malformed.
    """

    def __init__(self, copies, mode):
        self.copies = copies
        self.mode = mode
        self.redundant = len(copies) == 2
        self.active, self.reason = choose(copies, mode)
        self.variables = None
        self.error = None
        if self.active is not None:
            try:
                self.variables = decode_data(copies[self.active].data)
            except FormatError as err:
                self.error = "copy %d passes its CRC but %s" % (self.active + 1, err)

    def valid(self):
        return self.variables is not None

    def problem(self):
        """One line saying why the environment cannot be used, or None."""
        if self.error:
            return self.error
        if self.active is None:
            return "%s (%s)" % (self.reason, "; ".join(c.describe() for c in self.copies))
        return None

    def target(self):
        """(index, flags) of the copy a save must write: never the copy in force."""
        if not self.redundant:
            return 0, None
        if self.active is None:
            # Nothing in force: write copy 1 so that it alone passes its CRC.
            return 0, FLAG_ACTIVE
        other = 1 - self.active
        if self.mode == FLAGS_BOOLEAN:
            return other, FLAG_ACTIVE
        return other, (self.copies[self.active].flags + 1) & 0xFF

    def summary(self):
        out = {"redundant": self.redundant, "flags_mode": self.mode if self.redundant else None,
               "active_copy": None if self.active is None else self.active + 1,
               "reason": self.reason, "error": self.error, "copies": []}
        for c in self.copies:
            out["copies"].append({"copy": c.index + 1, "crc_ok": c.ok, "erased": c.erased,
                                  "flags": c.flags, "crc_stored": c.crc_stored,
                                  "crc_computed": c.crc_computed})
        return out


def parse(images, mode=FLAGS_COUNTER):
    """Env from the bytes of one copy (single) or two copies (redundant), all the same size."""
    if isinstance(images, (bytes, bytearray, memoryview)):
        images = [images]
    if len(images) not in (1, 2):
        raise EnvError("parsing the U-Boot environment: expected 1 or 2 copies, got %d" % len(images))
    redundant = len(images) == 2
    size = len(images[0])
    check_size(size, redundant)
    for i, img in enumerate(images):
        if len(img) != size:
            raise FormatError("parsing the U-Boot environment: copy %d has %d bytes, copy 1 has %d"
                              % (i + 1, len(img), size))
    copies = [Copy(i, images[i], redundant) for i in range(len(images))]
    return Env(copies, mode)


def parse_text(text, source="<env text>"):
    """{name: value} from fw_printenv/mkenvimage text (``name=value`` lines, '#' comments)."""
    out = {}
    lineno = 0
    for line in text.split("\n"):
        lineno += 1
        line = line.rstrip("\r")
        if not line or line[0] == "#":
            continue
        eq = line.find("=")
        if eq <= 0:
            raise FormatError("%s:%d: expected name=value, got %r" % (source, lineno, line[:60]))
        name, value = line[:eq], line[eq + 1:]
        why = name_problem(name) or value_problem(value)
        if why:
            raise FormatError("%s:%d: %s" % (source, lineno, why))
        if name in out:
            raise FormatError("%s:%d: variable %r appears twice" % (source, lineno, name))
        out[name] = value
    return out


def format_text(variables):
    """fw_printenv-style text: one ``name=value`` line per variable, sorted by name."""
    return "".join("%s=%s\n" % (name, variables[name]) for name in sorted(variables))


def apply_changes(variables, changes):
    """A new dict: ``changes`` set values; None or "" deletes (as fw_setenv with no value)."""
    out = dict(variables)
    for name in changes:
        value = changes[name]
        why = name_problem(name)
        if why:
            raise EnvError("changing the U-Boot environment: %s" % why)
        if value is None or value == "":
            if name in out:
                del out[name]
            continue
        check_variable(name, value)
        out[name] = value
    return out
