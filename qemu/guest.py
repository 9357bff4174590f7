"""The two QEMU virt machines the tests boot, and where their Debian pieces live in qemu/cache."""

import glob
import os

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, "cache")
TOP = os.path.dirname(HERE)

ARCHES = {
    "arm64": {
        "qemu": "qemu-system-aarch64", "cpu": "cortex-a57", "memory": 256,
        "uboot": "/usr/lib/u-boot/qemu_arm64/u-boot.bin", "mkimage_arch": "arm64",
        "triplet": "aarch64-linux-gnu", "flavour": "cloud-arm64",
        # cloud-arm64: ext4 built in; virtio transport and disk are modules.
        "modules": ["virtio_mmio", "virtio_blk"],
    },
    "armhf": {
        "qemu": "qemu-system-arm", "cpu": "cortex-a15", "memory": 256,
        "uboot": "/usr/lib/u-boot/qemu_arm/u-boot.bin", "mkimage_arch": "arm",
        "triplet": "arm-linux-gnueabihf", "flavour": "armmp",
        # armmp: virtio transport, disk and ext4 (with its checksum helpers) are modules.
        "modules": ["virtio_mmio", "virtio_blk", "crc32c_generic", "ext4"],
    },
}


class MissingPieces(Exception):
    """qemu/fetch has not been run for this architecture."""


def pieces(arch):
    """Paths of the cached kernel, modules dir, busybox and python tree for ``arch``."""
    root = os.path.join(CACHE, arch)
    kernels = sorted(glob.glob(os.path.join(root, "kernel", "boot", "vmlinuz-*")))
    busybox = os.path.join(root, "busybox", "bin", "busybox")
    python = os.path.join(root, "python")
    if not kernels or not os.path.exists(busybox) or not os.path.isdir(python):
        raise MissingPieces("the %s guest pieces are not in %s: run qemu/fetch %s" % (arch, root, arch))
    version = os.path.basename(kernels[-1])[len("vmlinuz-"):]
    return {
        "kernel": kernels[-1],
        "kernel_version": version,
        "modules": os.path.join(root, "kernel", "lib", "modules", version),
        "busybox": busybox,
        "python": python,
    }


def have_pieces(arch):
    try:
        pieces(arch)
        return True
    except MissingPieces:
        return False
