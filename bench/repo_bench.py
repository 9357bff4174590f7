"""Issue 2 benchmark: `commit` and `checkout` of v1.tar, side by side with OSTree, as ratios.

    .venv/bin/python bench/repo_bench.py [--runs 3]

Both tools commit the same tar (device nodes removed: neither stores them) into a fresh bare
repository, then check it out as hard links (`ostree checkout -H`). Targets (issue 2):
checkout <= 1.0x OSTree, commit <= 1.5x OSTree. Medians of --runs runs; warm page cache, file system synced before each timed command.
"""

import argparse
import os
import shutil
import sys

from common import RESULTS, ROOT, UPDATER, dataset, median, mib, table, timed, without_special


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    pair = dataset()
    work = os.path.join(RESULTS, "repo_bench")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    tar = without_special(os.path.join(pair, "v1.tar"), os.path.join(RESULTS, "v1-nodev.tar"))
    env = dict(os.environ, PYTHONPATH=ROOT)
    res = {"u_commit": [], "o_commit": [], "u_checkout": [], "o_checkout": [], "u_rss": [], "o_rss": []}
    for i in range(args.runs):
        ur, orp = os.path.join(work, "u%d" % i), os.path.join(work, "o%d" % i)
        os.sync()  # each timed command starts with no dirty pages of the previous one
        timed(UPDATER + ["-q", "--repo", ur, "init"], env=env)
        t, rss, _ = timed(UPDATER + ["-q", "--repo", ur, "commit", "--branch", "bench/v1", tar], env=env)
        res["u_commit"].append(t)
        res["u_rss"].append(rss)
        timed(["ostree", "--repo=" + orp, "init", "--mode=bare"])
        os.sync()
        t, rss, _ = timed(["ostree", "--repo=" + orp, "commit", "--branch=bench/v1", "--tree=tar=" + tar])
        res["o_commit"].append(t)
        res["o_rss"].append(rss)
        os.sync()
        t, _, _ = timed(UPDATER + ["-q", "--repo", ur, "checkout", "bench/v1", os.path.join(work, "uco%d" % i)], env=env)
        res["u_checkout"].append(t)
        os.sync()
        t, _, _ = timed(["ostree", "--repo=" + orp, "checkout", "-H", "bench/v1", os.path.join(work, "oco%d" % i)])
        res["o_checkout"].append(t)
    uc, oc = median(res["u_commit"]), median(res["o_commit"])
    uk, ok = median(res["u_checkout"]), median(res["o_checkout"])
    print("dataset: %s (%s, %d runs, medians)" % (tar, mib(os.path.getsize(tar)), args.runs))
    table([
        ["commit", "%.2f s" % uc, "%.2f s" % oc, "%.2fx" % (uc / oc), "<= 1.5x", mib(median(res["u_rss"])), mib(median(res["o_rss"]))],
        ["checkout (hard links)", "%.2f s" % uk, "%.2f s" % ok, "%.2fx" % (uk / ok), "<= 1.0x", "", ""],
    ], ["operation", "updater", "ostree", "ratio", "target", "updater RSS", "ostree RSS"])
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
