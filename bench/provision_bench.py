"""Issue 6 benchmark: `updater provision` of v1 of the dataset pair into a qemu-arm64 image.

    .venv/bin/python bench/provision_bench.py [--runs 3] [--size 2G] [--board qemu-arm64]

v1.tar (device nodes removed, stand-in kernel, initramfs and init added: the dataset is a chroot,
and a U-Boot device refuses what it could not boot) is committed once to a signed build repository (not timed as
provisioning); then the provisioning command itself runs --runs times, each into a fresh
output directory. Reports time (median, and peak RSS), the image size, the size bmap maps
(what a factory actually writes), and what `bmaptool copy` of it to a file takes.
Target (issue 6): provisioning under 60 s on 2 cores.
"""

import argparse
import json
import os
import shutil
import sys

from common import RESULTS, ROOT, UPDATER, bootable, dataset, median, mib, table, timed, without_special

TARGET_S = 60.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", default=None, help="image size (default: the board's [disk] size)")
    ap.add_argument("--board", default="qemu-arm64")
    args = ap.parse_args()
    pair = dataset()
    work = os.path.join(RESULTS, "provision_bench")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    tar = without_special(os.path.join(pair, "v1.tar"), os.path.join(RESULTS, "v1-nodev.tar"))
    tar = bootable(tar, os.path.join(RESULTS, "v1-bootable.tar"))
    env = dict(os.environ, PYTHONPATH=ROOT)
    repo = os.path.join(work, "build-repo")
    branch = "%s/bench" % args.board
    timed(UPDATER + ["-q", "--repo", repo, "init", "--mode", "bare"], env=env)
    t_commit, _, _ = timed(UPDATER + ["-q", "--repo", repo, "commit", "--branch", branch, "--version", "v1",
                                      "--timestamp", "1700000000", tar], env=env)
    key = os.path.join(work, "build.key")
    timed(UPDATER + ["-q", "keygen", "--out", key], env=env)
    timed(UPDATER + ["-q", "--repo", repo, "sign", branch, "--key", key], env=env)
    times, rss, records = [], [], []
    for i in range(args.runs):
        out_dir = os.path.join(work, "out%d" % i)
        os.makedirs(out_dir)
        cmd = UPDATER + ["-q", "provision", "--board", args.board, "--repo", repo, "--ref", branch,
                         "--output", os.path.join(out_dir, "disk.img"), "--key-pub", key + ".pub",
                         "--set", "serial#=BENCH%04d" % i, "--json"]
        if args.size:
            cmd += ["--size", args.size]
        t, peak, out = timed(cmd, env=env)
        times.append(t)
        rss.append(peak)
        records.append(json.loads(out))
    rec = records[0]
    t_copy, _, _ = timed(["bmaptool", "-q", "copy", rec["image"], os.path.join(work, "flashed.img")])
    same = len(set(r["image_sha256"] for r in records)) == 1
    t = median(times)
    print("dataset: %s (%s); commit into the build repository took %.1f s (not counted)"
          % (tar, mib(os.path.getsize(tar)), t_commit))
    print("board %s, commit %s, deployment of %d files" % (rec["board"], rec["commit"][:12], _files(rec)))
    table([
        ["provision (median of %d)" % args.runs, "%.1f s" % t, "< %.0f s" % TARGET_S, "yes" if t < TARGET_S else "NO"],
        ["peak RSS", mib(median(rss)), "", ""],
        ["image size", mib(rec["image_size"]), "", ""],
        ["bmap mapped size", "%s (%.1f%%)" % (mib(rec["mapped_size"]), 100.0 * rec["mapped_size"] / rec["image_size"]), "", ""],
        ["sysroot file system needed", mib(rec["sysroot_needed"]), "", ""],
        ["env image", mib(rec["env"]["file_size"] or 0), "", ""],
        ["bmaptool copy to a file", "%.1f s" % t_copy, "", ""],
        ["runs byte-identical (image sha256)", "yes" if same else "NO (unit values differ only in IMAGE.env)", "", ""],
    ], ["measure", "value", "target", "met"])
    shutil.rmtree(work, ignore_errors=True)
    return 0 if t < TARGET_S else 1


def _files(rec):
    return rec["contents"]["files"]


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
