# heap: 512K
"""Boot script image checks and restoring a damaged copy, under MicroPython and CPython (the image
is built here field by field; tests/test_bootscript_image.py checks against the real mkimage)."""

import os

from mpytest import run, scratch

from updater import bootscript
from updater.ubootenv import crc32


def be32(n):
    return bytes([(n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255])


def image(data=b"echo updater\n" * 10, kind=6):
    head = bytearray(be32(bootscript.MAGIC) + be32(0) + be32(1700000000) + be32(len(data)) + be32(0) + be32(0)
                     + be32(crc32(data)) + bytes([5, 22, kind, 0]) + b"updater boot" + b"\0" * 20)
    head[4:8] = be32(crc32(bytes(head)))
    return bytes(head) + data


def test_problem():
    good = image()
    assert bootscript.problem(good) is None
    assert "data CRC" in bootscript.problem(good[:-1] + b"X")
    assert "header CRC" in bootscript.problem(good[:40] + b"Y" + good[41:])
    assert "image type 2" in bootscript.problem(image(kind=2))
    assert "truncated" in bootscript.problem(good[:-2])


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_restore():
    root = scratch("bootscript")
    try:
        os.mkdir(root + "/boot")
    except OSError:
        pass
    good = image()
    write(root + "/boot.scr", good[:-1] + b"X")
    write(root + "/boot/boot.scr", good)
    said = bootscript.check_and_restore(root)
    assert len(said) == 1 and "/boot.scr was damaged (data CRC" in said[0], said
    assert read(root + "/boot.scr") == good
    assert bootscript.check_and_restore(root) == []


run(globals())
