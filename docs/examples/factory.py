#!/usr/bin/env python3
"""Example factory script: provision a batch of units from one signed build, with an audit log.

    python3 docs/examples/factory.py --board qemu-arm64 --repo build/repo --ref qemu-arm64/stable \
        --key-pub keys/build.pub --out-dir out --first 1 --count 3 --mac-base 02:00:00:00:10:00

For each unit it calls the provisioning library directly (no subprocess): serial number
``PREFIX-00001``..., a MAC address counted up from --mac-base, both written into the unit's
U-Boot environment. The disk image is the same for every unit of a board whose environment
lives in flash, so it is built once (``shared.img``) and each unit gets only its env image; for a
board whose environment is on the disk itself, each unit gets its own image. One JSON record per
unit is appended to ``OUT/audit.jsonl``. Flash a unit with ``bmaptool copy IMAGE /dev/DEVICE``
(and program the env image into the board's flash for flash boards).
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # run from a checkout

from updater.board import load as load_board  # noqa: E402
from updater.errors import UpdaterError, describe  # noqa: E402
from updater.host import provision  # noqa: E402


def mac_address(base, n):
    """``base`` (aa:bb:cc:dd:ee:ff) plus ``n``, as a MAC address."""
    value = int(base.replace(":", ""), 16) + n
    if value >= 1 << 48:
        raise ValueError("MAC address range exhausted after %s" % base)
    text = "%012x" % value
    return ":".join(text[i:i + 2] for i in range(0, 12, 2))


def provision_batch(board, repo, ref, out_dir, serials, mac_base, key_pub, remote="", size=None, say=print):
    """Provision every serial; returns the records (also appended to OUT/audit.jsonl)."""
    os.makedirs(out_dir, exist_ok=True)
    b = load_board(board)
    shared = b.env.storage != "block" or b.env.device != b.disk.device
    # Fail fast, before the first unit, if the build does not fit or is not trusted.
    need = provision.needed_size(b, repo, ref, key_pub)
    say("build fits: the sysroot needs %d MiB, images are %s" % (need["sysroot"] >> 20,
        "%d MiB" % (need["default"] >> 20) if size is None else size))
    records = []
    base_image = None
    with open(os.path.join(out_dir, "audit.jsonl"), "a") as audit:
        for i, serial in enumerate(serials):
            values = {"serial#": serial, "ethaddr": mac_address(mac_base, i)}
            name = "shared.img" if shared else "%s.img" % serial
            env_out = os.path.join(out_dir, "%s.env" % serial)
            if shared and base_image is not None:
                # Same disk image for everyone: only this unit's env image is new. Provisioning
                # again would give identical image bytes; writing just the env is quicker.
                rec = dict(base_image)
                written = provision.unit_env_image(b, base_image["env"]["file"], values, env_out)
                rec["env"] = dict(base_image["env"], file=env_out, file_sha256=written[0], file_size=written[1])
                rec["unit_values"] = values
            else:
                rec = provision.provision_image(b, repo, ref, os.path.join(out_dir, name), size=size,
                                                unit_values=values, key_pub=key_pub, remote=remote,
                                                env_output=env_out if shared else None)
                base_image = rec
            rec["serial"] = serial
            audit.write(json.dumps(rec, sort_keys=True) + "\n")
            audit.flush()
            os.fsync(audit.fileno())
            say("%s: %s (image sha256 %s..., env %s)" % (serial, rec["image"], rec["image_sha256"][:16],
                                                         rec["env"]["file"] or "inside the image"))
            records.append(rec)
    return records


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--board", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--ref", required=True)
    ap.add_argument("--key-pub", action="append", default=[])
    ap.add_argument("--remote", default="")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--prefix", default="UNIT")
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--mac-base", default="02:00:00:00:00:00")
    ap.add_argument("--size", default=None)
    args = ap.parse_args(argv)
    serials = ["%s-%05d" % (args.prefix, n) for n in range(args.first, args.first + args.count)]
    try:
        provision_batch(args.board, args.repo, args.ref, args.out_dir, serials, args.mac_base, args.key_pub,
                        args.remote, args.size, say=lambda text: print(text, file=sys.stderr))
    except UpdaterError as err:
        print("factory: %s" % describe(err), file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
