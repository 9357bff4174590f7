"""QEMU ARM test rig: fetch Debian guest pieces, build OS trees and disk images, drive real U-Boot.

Modules: ``guest`` (the two machines), ``cpio`` (initramfs archives without root), ``tree`` (OS
trees v1/v2/v3 and the initramfs), ``sysroot`` (a device sysroot and its disk and flash images),
``vm`` (one QEMU process and its serial console). ``qemu/fetch`` downloads what they use.
"""
