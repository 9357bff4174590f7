"""File-system layer: 32-bit access to physical memory through /dev/mem (memory-mapped flash).

Used by updater.cfiflash for NOR flash that the kernel has no MTD driver for (QEMU's virt
machine). CPython only: MicroPython's unix port has no mmap.
"""

import os

from ..errors import UnsupportedError
from . import base
from .base import MICROPYTHON, _op, fail

PAGE = 4096


class PhysMap:
    """``size`` bytes of physical memory from ``base`` (page-aligned), as 32-bit words."""

    def __init__(self, device, base, size):
        if MICROPYTHON:
            raise UnsupportedError("mapping physical memory at 0x%x through %s: MicroPython has no mmap"
                                   % (base, device), "run the updater on CPython on this board")
        import mmap

        if base % PAGE or size % PAGE:
            raise ValueError("physical map 0x%x+0x%x is not page-aligned" % (base, size))
        self.device = device
        self.base = base
        try:
            fd = os.open(device, os.O_RDWR | os.O_SYNC)
        except OSError as err:
            raise fail("opening", device, err)
        try:
            self.map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=base)
        except OSError as err:
            raise fail("mapping 0x%x bytes at physical 0x%x of" % (size, base), device, err)
        finally:
            os.close(fd)
        self.words = memoryview(self.map).cast("I")

    def read32(self, offset):
        return self.words[offset >> 2]

    def write32(self, offset, value):
        if base._hook is not None:  # the path names the word and value (a flash command or data)
            _op("write_phys", "%s@0x%x=0x%08x" % (self.device, self.base + offset, value))
        self.words[offset >> 2] = value

    def read(self, offset, size):
        return bytes(self.map[offset:offset + size])

    def close(self):
        self.words.release()
        self.map.close()
