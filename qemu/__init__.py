"""QEMU ARM test rig: fetch Debian guest pieces, build OS trees and disk images, drive real U-Boot.

Modules: ``guest`` (the two machines), ``cpio`` (initramfs archives without root), ``tree`` (OS
trees v1/v2/v3 and the initramfs), ``server`` (the build server: a signed, published repository
with deltas, its "updates" disk, and device images made by ``updater provision``), ``sysroot``
(a sysroot assembled by hand for states provisioning does not make, and the env flash bank),
``vm`` (one QEMU process and its serial console). ``qemu/fetch`` downloads what they use.
docs/qemu-tests.md describes the scenarios.
"""
