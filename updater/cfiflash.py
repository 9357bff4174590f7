"""NOR flash programmed with the Intel/Sharp CFI command set through physical memory (/dev/mem).

For boards whose kernel has no MTD driver for the env flash, such as QEMU's virt machine with
Debian's kernels (the second pflash bank at physical 0x04000000, 32-bit wide, 256 KiB blocks).
Implements the env storage interface of updater.envstore: ``read``, ``write`` (programs bits
1 -> 0; durable when it returns: every word is polled to completion and verified), ``erase``.

Commands (written as 32-bit words at the target address; the chip decodes the low byte):

    0x50  clear status          0xff  read array (normal reads)
    0x20 then 0xd0  block erase (at any address in the block)
    0x40 then DATA  program one word
    0x70  read status: bit 7 ready; bit 5 erase error, 4 program error, 3 low voltage, 1 locked
"""

from . import fs
from .errors import StorageError

CFI_FORMAT = 1  # the command subset above; bump if another command set is added
WORD = 4
CMD_CLEAR_STATUS = 0x50
CMD_READ_ARRAY = 0xFF
CMD_ERASE = 0x20
CMD_CONFIRM = 0xD0
CMD_PROGRAM = 0x40
CMD_READ_STATUS = 0x70
SR_READY = 0x80
SR_ERRORS = {0x20: "erase failed", 0x10: "program failed", 0x08: "programming voltage low",
             0x02: "block locked"}
POLLS = 1000000


def status_problem(status):
    """Text naming the error bits of a status value (both chips of an interleaved pair), or None."""
    bits = (status | status >> 16) & 0xFF
    names = [SR_ERRORS[b] for b in sorted(SR_ERRORS, reverse=True) if bits & b]
    return ", ".join(names) or None


def words_of(offset, data):
    """(aligned offset, 32-bit little-endian word) pairs covering ``data`` at ``offset``; bytes
    outside ``data`` are 0xff (programming 0xff changes nothing)."""
    start = offset - offset % WORD
    end = offset + len(data)
    end += -end % WORD
    buf = bytearray(b"\xff" * (end - start))
    buf[offset - start:offset - start + len(data)] = data
    out = []
    for i in range(0, len(buf), WORD):
        out.append((start + i, buf[i] | buf[i + 1] << 8 | buf[i + 2] << 16 | buf[i + 3] << 24))
    return out


class CfiFlash:
    """``size`` bytes of CFI NOR flash at physical ``base``; offsets are relative to ``base``."""

    def __init__(self, device, base, erase_size, size=None):
        self.device = device
        self.base = base
        self.erase_size = erase_size
        self.size = size or max(erase_size, 0x40000) * 2
        self.name = "%s@0x%x" % (device, base)
        self._map = None

    def _mem(self):
        if self._map is None:
            self._map = fs.PhysMap(self.device, self.base, self.size)
        return self._map

    def _check(self, offset, size, doing):
        if offset < 0 or offset + size > self.size:
            raise StorageError("%s %d bytes at 0x%x of the flash at %s: outside the mapped 0x%x bytes"
                               % (doing, size, offset, self.name, self.size))

    def _wait(self, mem, addr, doing):
        for _ in range(POLLS):
            status = mem.read32(addr)
            if status & SR_READY:
                break
        else:
            mem.write32(addr, CMD_READ_ARRAY)
            raise StorageError("%s at 0x%x of the flash at %s: the chip stayed busy" % (doing, addr, self.name),
                               "power-cycle the board; the env copy being written may be incomplete")
        why = status_problem(status)
        if why:
            mem.write32(addr, CMD_CLEAR_STATUS)
            mem.write32(addr, CMD_READ_ARRAY)
            raise StorageError("%s at 0x%x of the flash at %s: %s (status 0x%08x)" % (doing, addr, self.name, why, status),
                               "the flash may be write-protected or worn out")

    def read(self, offset, size):
        self._check(offset, size, "reading")
        mem = self._mem()
        mem.write32(offset - offset % WORD, CMD_READ_ARRAY)
        return mem.read(offset, size)

    def write(self, offset, data):
        self._check(offset, len(data), "writing")
        mem = self._mem()
        mem.write32(offset - offset % WORD, CMD_READ_ARRAY)
        for addr, word in words_of(offset, data):
            old = mem.read32(addr)
            want = old & word
            if want == old:
                continue  # nothing to clear (0xff, or already programmed)
            mem.write32(addr, CMD_CLEAR_STATUS)
            mem.write32(addr, CMD_PROGRAM)
            mem.write32(addr, word)
            self._wait(mem, addr, "programming")
            mem.write32(addr, CMD_READ_ARRAY)
            got = mem.read32(addr)
            if got != want:
                raise StorageError("programming 0x%08x at 0x%x of the flash at %s: reads back 0x%08x, "
                                   "expected 0x%08x" % (word, addr, self.name, got, want),
                                   "the flash may be failing or write-protected")
        if mem.read(offset, len(data)) != bytes(data):
            raise StorageError("writing %d bytes at 0x%x of the flash at %s: programming can only clear "
                               "bits and the range was not erased" % (len(data), offset, self.name),
                               "erase the block before writing it")

    def erase(self, offset, size):
        self._check(offset, size, "erasing")
        if not self.erase_size or offset % self.erase_size or size % self.erase_size:
            raise StorageError("erasing %d bytes at 0x%x of the flash at %s: not whole blocks of 0x%x"
                               % (size, offset, self.name, self.erase_size))
        mem = self._mem()
        for block in range(offset, offset + size, self.erase_size):
            mem.write32(block, CMD_CLEAR_STATUS)
            mem.write32(block, CMD_ERASE)
            mem.write32(block, CMD_CONFIRM)
            self._wait(mem, block, "erasing the block")
            mem.write32(block, CMD_READ_ARRAY)
            if mem.read(block, self.erase_size).count(b"\xff") != self.erase_size:
                raise StorageError("erasing the block at 0x%x of the flash at %s: not all 0xff afterwards"
                                   % (block, self.name), "the flash may be write-protected")

    def close(self):
        if self._map is not None:
            self._map.close()
            self._map = None


def open_storage(device, base, sector_size):
    """The envstore backend for a ``storage = cfi-nor`` board."""
    return CfiFlash(device, base, sector_size)
