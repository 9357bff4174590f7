"""Boot script copies on the sysroot (updater/bootscript.py): images made by the real mkimage are
accepted, every kind of damage is named, and a missing or damaged copy is restored from the
valid one (what `updater boot` reports on a U-Boot device)."""

import os
import shutil
import subprocess

import pytest

from updater import bootscript

pytestmark = pytest.mark.skipif(shutil.which("mkimage") is None, reason="mkimage (u-boot-tools) is not installed")


def mkimage(tmp_path, kind="script", text="echo updater boot script\n" * 20):
    src = tmp_path / "s.cmd"
    src.write_text(text)
    out = tmp_path / ("s.%s" % kind)
    subprocess.run(["mkimage", "-A", "arm64", "-T", kind, "-C", "none", "-n", "updater boot", "-d", str(src), str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return out.read_bytes()


def test_a_mkimage_script_is_valid(tmp_path):
    assert bootscript.problem(mkimage(tmp_path)) is None


@pytest.mark.parametrize("damage,why", [
    (lambda d: d[:40], "shorter than the 64-byte image header"),
    (lambda d: b"\0" + d[1:], "bad magic"),
    (lambda d: d[:40] + b"X" + d[41:], "header CRC"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "data CRC"),
    (lambda d: d[:-3], "truncated"),
])
def test_damage_is_named(tmp_path, damage, why):
    assert why in bootscript.problem(damage(mkimage(tmp_path)))


def test_an_image_of_another_type_is_refused(tmp_path):
    assert "image type 5, expected 6" in bootscript.problem(mkimage(tmp_path, "firmware"))


def sysroot_with(tmp_path, first, second):
    root = tmp_path / "sysroot"
    (root / "boot").mkdir(parents=True)
    for rel, data in (("boot.scr", first), ("boot/boot.scr", second)):
        if data is not None:
            (root / rel).write_bytes(data)
    return root


def test_a_damaged_first_copy_is_restored_from_the_second(tmp_path):
    good = mkimage(tmp_path)
    root = sysroot_with(tmp_path, good[:100] + b"#corrupted#" + good[111:], good)
    said = bootscript.check_and_restore(str(root))
    assert len(said) == 1 and said[0].startswith("the boot script copy /boot.scr was damaged (data CRC")
    assert said[0].endswith("restored it from /boot/boot.scr")
    assert (root / "boot.scr").read_bytes() == good
    assert bootscript.check_and_restore(str(root)) == []


def test_a_missing_second_copy_is_restored_from_the_first(tmp_path):
    good = mkimage(tmp_path)
    root = sysroot_with(tmp_path, good, None)
    assert bootscript.check_and_restore(str(root)) == [
        "the boot script copy /boot/boot.scr was missing; restored it from /boot.scr"]
    assert (root / "boot" / "boot.scr").read_bytes() == good


def test_nothing_is_written_without_a_valid_copy(tmp_path):
    root = sysroot_with(tmp_path, b"junk", None)
    said = bootscript.check_and_restore(str(root))
    assert said == ["no valid boot script on the sysroot: /boot.scr: only 4 bytes, shorter than the 64-byte image header"]
    assert not os.path.exists(str(root / "boot" / "boot.scr"))
    assert bootscript.check_and_restore(str(sysroot_with(tmp_path / "empty", None, None))) == []
