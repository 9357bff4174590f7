"""Issue 8 benchmark: static deltas and pull on the dataset pair v1 -> v2, side by side with OSTree.

    .venv/bin/python bench/delta_bench.py [--dataset DIR] [--runs 3]

DIR holds v1.tar and v2.tar (default: $UPDATER_DATASET, else bench/results/pair, built with
../shared/datasets/make-rootfs-pair when missing). Both tools commit the same tars (device nodes
removed), then:
- generate: ``updater delta`` (xz, the strongest codec; and zlib, what every device reads) vs
  ``ostree static-delta generate`` (defaults); bytes = all files of the delta;
- apply: the delta applied to a repository holding v1 (updater's apply step, in a child process)
  vs ``ostree static-delta apply-offline``; both bare repositories;
- pull over loopback HTTP from a device at v1 (``updater pull`` vs ``ostree pull``, both from a
  Python static server that counts the bytes it sends); updater's is the whole verified pull;
- resume: an updater pull cut at 50% of its bytes, then pulled again: bytes received twice.
Targets (issue 8): xz delta <= 0.8x OSTree, zlib <= 1.1x; pull bytes <= 1.05x our delta; apply
time <= 1.0x OSTree; device peak RSS <= 64 MiB; resent after a cut <= 2% of the delta.
Times are medians of --runs runs (warm page cache); RSS via /usr/bin/time.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

from common import RESULTS, ROOT, UPDATER, dataset, median, mib, table, timed, without_special

BRANCH = "bench/stable"
APPLY = """
import sys
sys.path.insert(0, %r)
from updater import deltaapply, delta
from updater.repo import Repo
repo, d = Repo.open(sys.argv[1]), sys.argv[2]
sb = delta.parse_superblock(open(d + "/superblock", "rb").read())
for p in sb.parts:
    deltaapply.apply_part(repo, "%%s/%%d" %% (d, p.index), p)
tx = repo.transaction()
tx.add_meta("commit", sb.commit)
tx.commit()
repo.write_ref(%r, sb.to_id)
""" % (ROOT, BRANCH)


def dir_size(path):
    return sum(os.path.getsize(os.path.join(dp, n)) for dp, _, names in os.walk(path) for n in names)


def u(*argv):
    return UPDATER + ["-q"] + list(argv)


def setup(work, t1, t2, env):
    host = os.path.join(work, "host")
    timed(u("--repo", host, "init", "--mode", "bare"), env=env)
    ids = []
    for tar, ts, ver in ((t1, 1000, "1"), (t2, 2000, "2")):
        _, _, out = timed(u("--repo", host, "--json", "commit", tar, "--branch", BRANCH, "--timestamp", str(ts),
                            "--version", ver), env=env)
        ids.append(json.loads(out)["commit"])
    dev = os.path.join(work, "dev-v1")
    timed(u("--repo", dev, "init", "--mode", "bare"), env=env)
    _, _, out = timed(u("--repo", dev, "--json", "commit", t1, "--branch", BRANCH, "--timestamp", "1000",
                        "--version", "1"), env=env)
    assert json.loads(out)["commit"] == ids[0], "the device's v1 commit differs from the host's"
    ohost = os.path.join(work, "ohost")
    timed(["ostree", "--repo=" + ohost, "init", "--mode=archive"])
    for tar in (t1, t2):
        timed(["ostree", "--repo=" + ohost, "commit", "--branch=" + BRANCH, "--tree=tar=" + tar])
    oids = [subprocess.run(["ostree", "--repo=" + ohost, "rev-parse", BRANCH + s], capture_output=True, text=True,
                           check=True).stdout.strip() for s in ("^", "")]
    odev = os.path.join(work, "odev-v1")
    timed(["ostree", "--repo=" + odev, "init", "--mode=bare"])
    timed(["ostree", "--repo=" + odev, "pull-local", ohost, oids[0]])
    timed(["ostree", "--repo=" + odev, "refs", "--create=" + BRANCH, oids[0]])
    return host, dev, ids, ohost, odev, oids


def generate(host, ohost, ids, oids, runs, env):
    res = {}
    name = "%s-%s" % (ids[0], ids[1])
    for codec in ("zlib", "xz"):
        times, rss = [], []
        for _ in range(runs):
            t, r, _ = timed(u("--repo", host, "delta", "--from", ids[0], "--to", ids[1], "--codec", codec), env=env)
            times.append(t)
            rss.append(r)
        res[codec] = (median(times), max(rss), dir_size(os.path.join(host, "deltas", name)))
        if codec == "zlib":
            shutil.copytree(os.path.join(host, "deltas", name), os.path.join(host, "zlib-" + name))
    times, rss = [], []
    for _ in range(runs):
        shutil.rmtree(os.path.join(ohost, "deltas"), ignore_errors=True)
        t, r, _ = timed(["ostree", "--repo=" + ohost, "static-delta", "generate", "--from=" + oids[0], "--to=" + oids[1]])
        times.append(t)
        rss.append(r)
    res["ostree"] = (median(times), max(rss), dir_size(os.path.join(ohost, "deltas")))
    return res, name


def apply(work, host, dev, name, odev, ohost, runs, env):
    res = {}
    for codec, d in (("xz", os.path.join(host, "deltas", name)), ("zlib", os.path.join(host, "zlib-" + name))):
        times, rss = [], []
        for i in range(runs):
            target = os.path.join(work, "apply-%s-%d" % (codec, i))
            subprocess.run(["cp", "-a", dev, target], check=True)
            subprocess.run(["sync"], check=True)
            t, r, _ = timed([sys.executable, "-c", APPLY, target, d], env=env)
            times.append(t)
            rss.append(r)
            if i == 0:
                timed(u("--repo", target, "fsck"), env=env)
            shutil.rmtree(target)
        res[codec] = (median(times), max(rss))
    sb = subprocess.run(["find", os.path.join(ohost, "deltas"), "-name", "superblock"], capture_output=True,
                        text=True, check=True).stdout.split()[0]
    times, rss = [], []
    for i in range(runs):
        target = os.path.join(work, "oapply-%d" % i)
        subprocess.run(["cp", "-a", odev, target], check=True)
        subprocess.run(["sync"], check=True)
        t, r, _ = timed(["ostree", "--repo=" + target, "static-delta", "apply-offline", os.path.dirname(sb)])
        times.append(t)
        rss.append(r)
        shutil.rmtree(target)
    res["ostree"] = (median(times), max(rss))
    return res


def pulls(work, host, dev, ids, ohost, odev, env):
    sys.path.insert(0, ROOT)
    from updater import httpfetch, pull
    from updater.host import serve
    from updater.sysroot import Sysroot

    key = os.path.join(work, "bench.key")
    timed(u("keygen", "--out", key, "--force"), env=env)
    timed(u("--repo", host, "publish", "--key", key), env=env)
    server = serve.start(host)
    oserver = serve.start(ohost)
    out = {}
    try:
        def device(tag):
            sysroot = os.path.join(work, "sysroot-" + tag)
            timed(u("--sysroot", sysroot, "init", "--remote", server.url(), "--branch", BRANCH, "--trust",
                    key + ".pub", "--mode", "bare"), env=env)
            shutil.rmtree(os.path.join(sysroot, "updater", "repo"))
            subprocess.run(["cp", "-a", dev, os.path.join(sysroot, "updater", "repo")], check=True)
            return sysroot

        sysroot = device("whole")
        sent0 = server.bytes_sent
        t, rss, stdout = timed(u("--sysroot", sysroot, "--json", "pull"), env=env)
        doc = json.loads(stdout)
        assert doc["delta_used"] and doc["commit"] == ids[1], doc
        out["pull"] = (t, rss, doc["bytes_fetched"], server.bytes_sent - sent0, len(server.requests))
        # OSTree pulling the same update over HTTP from the same kind of server
        otarget = os.path.join(work, "opull")
        subprocess.run(["cp", "-a", odev, otarget], check=True)
        timed(["ostree", "--repo=" + otarget, "remote", "add", "--no-gpg-verify", "bench", oserver.url()])
        sent0 = oserver.bytes_sent
        t, rss, _ = timed(["ostree", "--repo=" + otarget, "pull", "bench", BRANCH])
        out["opull"] = (t, rss, oserver.bytes_sent - sent0, oserver.bytes_sent - sent0, len(oserver.requests))
        # a pull cut at 50% of its bytes, then resumed
        sysroot = device("cut")

        class Cut(Exception):
            pass

        def cutter(done, total):
            if total and done >= total // 2:
                raise Cut()

        f = httpfetch.HttpFetcher(server.url())
        try:
            pull.pull(Sysroot.open(sysroot), cutter, fetcher=f)
        except Cut:
            pass
        first = f.bytes_fetched
        r = pull.pull(Sysroot.open(sysroot))
        assert r["commit"] == ids[1] and r["delta_used"]
        out["resume"] = (first, r["bytes_fetched"], r["bytes_resumed"], first + r["bytes_fetched"] - out["pull"][2])
    finally:
        server.shutdown()
        oserver.shutdown()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", help="directory with v1.tar and v2.tar (default: $UPDATER_DATASET or bench/results/pair)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if args.dataset:
        os.environ["UPDATER_DATASET"] = args.dataset
    pair = dataset()
    work = os.path.join(RESULTS, "delta_bench")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    t1 = without_special(os.path.join(pair, "v1.tar"), os.path.join(RESULTS, "v1-nodev.tar"))
    t2 = without_special(os.path.join(pair, "v2.tar"), os.path.join(RESULTS, "v2-nodev.tar"))
    env = dict(os.environ, PYTHONPATH=ROOT)
    host, dev, ids, ohost, odev, oids = setup(work, t1, t2, env)
    gen, name = generate(host, ohost, ids, oids, args.runs, env)
    app = apply(work, host, dev, name, odev, ohost, args.runs, env)
    net = pulls(work, host, dev, ids, ohost, odev, env)
    o_bytes, o_gen, o_gen_rss = gen["ostree"][2], gen["ostree"][0], gen["ostree"][1]
    print("dataset: %s -> %s (%d runs, medians)" % (t1, t2, args.runs))
    rows = []
    for codec, target in (("xz", "<= 0.8x"), ("zlib", "<= 1.1x")):
        t, rss, size = gen[codec]
        rows.append(["delta bytes (%s)" % codec, "%d" % size, "%d" % o_bytes, "%.2fx" % (size / o_bytes), target])
    for codec in ("xz", "zlib"):
        t, rss, size = gen[codec]
        rows.append(["generate time (%s)" % codec, "%.2f s" % t, "%.2f s" % o_gen, "%.2fx" % (t / o_gen), ""])
        rows.append(["generate peak RSS (%s)" % codec, mib(rss), mib(o_gen_rss), "%.2fx" % (rss / max(o_gen_rss, 1)), ""])
    for codec in ("xz", "zlib"):
        t, rss = app[codec]
        rows.append(["apply time (%s)" % codec, "%.2f s" % t, "%.2f s" % app["ostree"][0],
                     "%.2fx" % (t / app["ostree"][0]), "<= 1.0x"])
        rows.append(["apply peak RSS (%s)" % codec, mib(rss), mib(app["ostree"][1]),
                     "%.2fx" % (rss / max(app["ostree"][1], 1)), "<= 64 MiB"])
    p, op = net["pull"], net["opull"]
    rows.append(["pull: bytes on the wire", "%d" % p[3], "%d" % op[3], "%.2fx" % (p[3] / op[3]), ""])
    rows.append(["pull: wire / own xz delta", "%.3fx" % (p[3] / gen["xz"][2]), "%.3fx" % (op[3] / o_bytes), "",
                 "<= 1.05x"])
    rows.append(["pull: requests", "%d" % p[4], "%d" % op[4], "", ""])
    rows.append(["pull: time (whole, verified)", "%.2f s" % p[0], "%.2f s" % op[0], "%.2fx" % (p[0] / op[0]), ""])
    rows.append(["pull: peak RSS", mib(p[1]), mib(op[1]), "%.2fx" % (p[1] / max(op[1], 1)), "<= 64 MiB"])
    first, second, resumed, again = net["resume"]
    rows.append(["resume after a cut at 50%: bytes received twice", "%d (%.2f%% of the delta)"
                 % (again, 100.0 * again / gen["xz"][2]), "-", "", "<= 2%"])
    table(rows, ["measure", "updater", "ostree", "ratio", "target"])
    print("resume detail: first pull received %d bytes, second %d (of which %d resumed from the kept partial)"
          % (first, second, resumed))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
