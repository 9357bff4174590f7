"""Throughput of ``updater console push`` over a paced pty line (115200 baud 8N1 = 11520 bytes/s).

    .venv/bin/python bench/console_bench.py [--size 262144] [--rate 11520] [--device cpython|micropython]
                                            [--encoding raw,base64] [--frame 1024] [--window 8192]

A relay between two ptys forwards each direction at ``--rate`` bytes per second (what a UART
at 115200 baud carries: 10 bits a byte). The device end is /bin/sh running this checkout's
``updater receive`` on a sysroot trusting a build key; the bundle is a real signed bundle of a
tree holding ``--size`` random bytes (incompressible, so the bundle is about that big). For
each encoding it prints the data-phase rate (first DATA frame to the last acknowledgement), the
whole command's rate (prompt, typing the command, starting the receiver, verification and the
install included) and both as a fraction of the line rate. The target is >= 90% of the line
rate for the transfer.
"""

import argparse
import io
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import serialrig as rig  # noqa: E402
from deltakit import make_device  # noqa: E402

from updater import jsonout  # noqa: E402
from updater.cli import main  # noqa: E402
from updater.host import bundler, deltagen, publish  # noqa: E402
from updater.host import keys as keys_mod  # noqa: E402
from updater.host.commit import commit_source  # noqa: E402
from updater.repo import Repo  # noqa: E402


def make_bundle(workdir, size):
    """(bundle path, public key path): a signed full bundle of a tree with ``size`` random bytes."""
    src = os.path.join(workdir, "src")
    os.makedirs(os.path.join(src, "usr", "lib"))
    with open(os.path.join(src, "usr", "lib", "payload.bin"), "wb") as f:
        f.write(os.urandom(size))
    repo = Repo.init(os.path.join(workdir, "repo"), "user")
    key = keys_mod.keygen(os.path.join(workdir, "build.key"))
    cid, _ = commit_source(repo, src, "qemu-arm64/stable", "bench", "1", "qemu-arm64")
    deltagen.generate(repo, cid, None, "zlib", workers=1)
    publish.publish(repo, [key])
    path = os.path.join(workdir, "bench.bundle")
    bundler.write(repo, cid, None, path)
    return path, os.path.join(workdir, "build.key.pub")


def one(args, encoding, workdir, bundle, pub):
    root = make_device(workdir, "", pub, name="device-" + encoding).path
    size = os.path.getsize(bundle)
    line = rig.Line(rate=args.rate)
    shell = rig.spawn_on(line.ds, ["/bin/sh", "-i"], env=rig.device_env())
    try:
        out, err = io.StringIO(), io.StringIO()
        t0 = time.monotonic()
        rc = main(["--quiet", "console", "--port", line.host_path, "push", bundle, "--json",
                   "--device-cmd", rig.device_cmd(root, args.device), "--encoding", encoding,
                   "--frame", str(args.frame), "--window", str(args.window)], stdout=out, stderr=err)
        wall = time.monotonic() - t0
    finally:
        rig.kill(shell)
        line.close()
    if rc != 0:
        raise SystemExit("push failed (%s): %s %s" % (encoding, out.getvalue(), err.getvalue()))
    import json

    doc = json.loads(out.getvalue())
    data_s = doc["stats"]["data_seconds"]
    return {"encoding": encoding, "bytes": size, "data_seconds": data_s, "wall_seconds": round(wall, 3),
            "data_rate": round(size / data_s), "wall_rate": round(size / wall),
            "data_ratio": round(size / data_s / args.rate, 4), "wall_ratio": round(size / wall / args.rate, 4),
            "retransmits": doc["stats"]["retransmits"], "line_rate": args.rate, "device": args.device,
            "frame": args.frame, "window": args.window}


def main_bench(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256 * 1024, help="random bytes in the tree (default 256 KiB)")
    ap.add_argument("--rate", type=int, default=11520, help="line rate in bytes/s (default 11520 = 115200 8N1)")
    ap.add_argument("--device", choices=("cpython", "micropython"), default="micropython")
    ap.add_argument("--encoding", default="raw,base64")
    ap.add_argument("--frame", type=int, default=1024)
    ap.add_argument("--window", type=int, default=8192)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        bundle, pub = make_bundle(workdir, args.size)
        for encoding in args.encoding.split(","):
            rows.append(one(args, encoding, workdir, bundle, pub))
    if args.json:
        print(jsonout.dumps({"rows": rows}))
        return 0
    print("push over a pty paced at %d bytes/s (%d baud 8N1), device %s, frame %d, window %d"
          % (args.rate, args.rate * 10, args.device, args.frame, args.window))
    print("%-8s %9s %9s %11s %8s %9s %11s %8s %6s" % ("encoding", "bytes", "data s", "data B/s", "ratio",
                                                       "wall s", "wall B/s", "ratio", "retx"))
    for r in rows:
        print("%-8s %9d %9.2f %11d %7.1f%% %9.2f %11d %7.1f%% %6d" % (
            r["encoding"], r["bytes"], r["data_seconds"], r["data_rate"], 100 * r["data_ratio"], r["wall_seconds"],
            r["wall_rate"], 100 * r["wall_ratio"], r["retransmits"]))
    return 0


if __name__ == "__main__":
    sys.exit(main_bench())
