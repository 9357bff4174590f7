# heap: 2M
"""U-Boot env codec, board configs, file-backed env storage and the boot contract under MicroPython."""

import os

from mpytest import raises, run, scratch

from updater import board, bootloader, envstore, ubootenv
from updater.errors import ConfigError, EnvError, FormatError

V = {"bootcmd": "run distro_bootcmd", "eq": "a=b=c", "sp": " x  y ", "empty": "", "u": "gr\u00fc\u00df"}

BOARD = """
[board]
name = mpy
arch = arm
[env]
storage = file
device = /dev/fake
offset = 0x0
redundant_offset = 0x1000
size = 0x800
sector_size = 0x800
[boot]
kernel = boot/vmlinuz
boot_command = bootz
root = /dev/mmcblk0p1
[disk]
table = mbr
device = /dev/mmcblk0
[partition.sysroot]
index = 1
size = rest
fs = ext4
role = sysroot
"""


def test_encode_layout_and_crc():
    img = ubootenv.encode({"b": "2", "a": "1"}, 64)
    assert img[4:13] == b"a=1\0b=2\0\0" and img[13:] == bytes(64 - 13)
    assert img[:4] == ubootenv.crc32(img[4:]).to_bytes(4, "little")
    red = ubootenv.encode({"a": "1"}, 64, True, 7, 0xFF)
    assert red[4] == 7 and red[5:10] == b"a=1\0\0" and red[10:] == b"\xff" * 54


def test_known_crc_value():
    # zlib.crc32(b"a=1\0\0" + b"\0" * 55) on CPython; binascii.crc32 must agree.
    data = b"a=1\0\0" + bytes(55)
    assert ubootenv.crc32(data) == ubootenv.crc32(bytearray(data))
    assert ubootenv.crc32(b"123456789") == 0xCBF43926


def test_roundtrip_and_strictness():
    assert ubootenv.parse(ubootenv.encode(V, 256)).variables == V
    raises(EnvError, ubootenv.encode, {"a=b": "1"}, 64)
    raises(EnvError, ubootenv.encode, {"a": "x\ny"}, 64)
    raises(EnvError, ubootenv.encode, {"a": "x\0y"}, 64)
    raises(EnvError, ubootenv.encode, {"a": "x" * 57}, 64)
    assert ubootenv.parse(ubootenv.encode({"a": "x" * 56}, 64)).valid()
    data = b"a=" + b"x" * 57 + b"\0"
    env = ubootenv.parse(ubootenv.crc32(data).to_bytes(4, "little") + data)
    assert not env.valid() and "no terminator" in env.problem()


def test_copy_choice():
    def pair(fa, fb, mode="counter"):
        imgs = [ubootenv.encode({"c": "1"}, 128, True, fa), ubootenv.encode({"c": "2"}, 128, True, fb)]
        return ubootenv.parse(imgs, mode).active
    assert pair(1, 2) == 1 and pair(2, 1) == 0 and pair(255, 0) == 1 and pair(0, 255) == 0 and pair(5, 5) == 0
    assert pair(1, 0, "boolean") == 0 and pair(0, 1, "boolean") == 1 and pair(2, 3, "boolean") is None
    bad = bytearray(ubootenv.encode({"c": "1"}, 128, True, 9))
    bad[20] ^= 1
    env = ubootenv.parse([bytes(bad), ubootenv.encode({"c": "2"}, 128, True, 1)])
    assert env.active == 1 and env.variables == {"c": "2"}


def test_text_format():
    assert ubootenv.parse_text("# c\na=1\nb=x=y\n") == {"a": "1", "b": "x=y"}
    raises(FormatError, ubootenv.parse_text, "a=1\na=2\n")
    assert ubootenv.format_text({"b": "2", "a": "1"}) == "a=1\nb=2\n"


def test_shipped_boards_and_defaults():
    names = board.available()
    for name in ("qemu-arm64", "qemu-arm", "beaglebone-black"):
        assert name in names
        b = board.load(name)
        assert b.name == name and b.boot.vars["current"] == "upd_current"
    defaults = board.default_env(board.load("qemu-arm64"))
    assert defaults["bootcmd"] == "run distro_bootcmd"
    b = board.load("qemu-arm64")
    img = ubootenv.encode(defaults, b.env.size, False, 0, b.env.pad)
    assert ubootenv.parse(img).variables == defaults


def test_invalid_board_config():
    err = raises(ConfigError, board.parse, BOARD.replace("storage = file", "storage = file\nsise = 1"), "<t>")
    assert "unknown key 'sise'" in str(err)
    err = raises(ConfigError, board.parse, BOARD.replace("redundant_offset = 0x1000", "redundant_offset = 0x800\nflags = counter").replace("sector_size = 0x800", "sector_size = 0x1000"), "<t>")
    assert "not a multiple" in str(err)


def test_file_storage_redundant_writes():
    b = board.parse(BOARD, "<t>")
    path = scratch("env") + "/medium.img"
    with open(path, "wb") as f:
        f.write(b"\xff" * 0x2000)
    store = envstore.EnvStore(b.env, envstore.FileStorage(path))
    raises(EnvError, store.read)
    raises(EnvError, store.update, {"a": "1"})
    store.update({"a": "1"}, force=True)
    assert store.load().active == 0
    store.update({"b": "2", "a": None})
    env = store.load()
    assert env.active == 1 and env.variables == {"b": "2"} and env.copies[1].flags == 2
    os.remove(path)


def test_simulate_boot_and_file_contract():
    c = {"current": "a.0", "trial": "b.0", "count": "0", "limit": "2", "failed": ""}
    seen = []
    for _ in range(3):
        target, c = bootloader.simulate_boot(c)
        seen.append(target)
    assert seen == ["b.0", "b.0", "a.0"] and c["failed"] == "b.0" and c["trial"] == ""
    path = scratch("env") + "/bootenv"
    f = bootloader.FileBootloader(path)
    f.write({"current": "a.0", "trial": "b.0", "count": 0, "limit": 1})
    assert bootloader.boot_once(f) == "b.0"
    assert bootloader.boot_once(f) == "a.0"
    assert f.read()["failed"] == "b.0"
    os.remove(path)


run(globals())
