"""Helpers for device tests: sample OS trees and a sysroot with the file bootloader."""

import os

from crashharness import Device, run_cli

from updater.sysroot import DeviceConfig, Sysroot

BRANCH = "demo/stable"


def write(root, rel, data, mode=0o644):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def sample(root, version):
    """A small OS tree: kernel, initramfs, device tree, init, /etc with a subdirectory, a library, a symlink, an empty file."""
    write(root, "boot/vmlinuz", b"kernel %s\n" % version.encode() * 50)
    write(root, "boot/initrd.img", b"initramfs\n" * 20)
    write(root, "boot/dtbs/am335x-boneblack.dtb", b"\xd0\x0d\xfe\xed device tree\n")
    write(root, "sbin/init", b"#!/bin/sh\necho init\n", 0o755)
    write(root, "etc/hostname", b"device\n")
    write(root, "etc/motd", b"welcome to version %s\n" % version.encode())
    write(root, "etc/app/app.conf", b"level=%s\n" % version.encode())
    write(root, "etc/empty.conf", b"")
    write(root, "usr/lib/libapp.so.1", b"lib" * 3000 + version.encode())
    write(root, "usr/share/doc/README", b"docs\n")
    write(root, "var/lib/.keep", b"")
    if version != "1":
        write(root, "usr/bin/newtool", b"new in %s\n" % version.encode(), 0o755)
    os.symlink("../usr/lib/libapp.so.1", os.path.join(root, "sbin/libapp"))
    return root


def make_device(base, board="demo", keep=3, reserve=0, health_checks=None, bootloader="file"):
    """A Device (tests/crashharness.py) at BASE/sysroot with an empty repository."""
    root = os.path.join(base, "sysroot")
    Sysroot.create(root, DeviceConfig(board=board, bootloader=bootloader, branch=BRANCH, keep=keep,
                                      reserve=reserve, health_checks=health_checks))
    return Device(root, os.path.join(base, "cmdline"))


def make_uboot_device(base, board="beaglebone-black"):
    """Like make_device on a U-Boot board (beaglebone-black: a redundant eMMC env, or a variant of
    it) whose env medium is the image file SYSROOT/env.img, holding a valid env."""
    dev = make_device(base, board=board, bootloader="uboot")
    image = os.path.join(dev.path, "env.img")
    with open(image, "wb") as f:
        f.write(b"\0" * 0x2A0000)
    rc, out, err = run_cli(["--board", board, "env", "set", "--env-file", image, "--force", "upd_limit=3"])
    assert rc == 0, err
    dev.env_image, dev.board, dev.extra = "env.img", board, ["--env-file", image]
    return dev


def commit(dev, source, version, branch=BRANCH, timestamp=None, board=None):
    """Commit a directory into the device's own repository; returns the commit hex."""
    argv = ["--repo", os.path.join(dev.path, "updater", "repo"), "commit", source, "--branch", branch,
            "--version", version, "--timestamp", str(timestamp or 1000 + int(version.split(".")[0]))]
    if board:
        argv += ["--board-name", board]
    rc, out, err = run_cli(argv)
    assert rc == 0, err
    return out.split()[1]
