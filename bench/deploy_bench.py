"""Issue 4 benchmark: deploying v2 next to v1, side by side with `ostree checkout -H`, as ratios.

    .venv/bin/python bench/deploy_bench.py [--runs 3]

Both tools hold v1 and v2 of the dataset pair (device nodes removed: neither stores them) in a
bare repository. updater: a sysroot running v1 (deployed, booted, /etc lightly edited) deploys
v2: verify new objects, hard-link checkout, /etc three-way merge, syncfs, rename, state and
boot-contract writes. OSTree: `ostree checkout -H` of v2 (no merge, no sync). Printed, never
asserted (targets from issue 4):

- time: (checkout + /etc merge) <= 1.0x `ostree checkout -H`, without and with reading the
  trees (deploy parses them once, before the free-space check, and the checkout reuses them);
  the whole deploy and the CLI are shown too, and a deploy with `--verify all`;
- disk: extra blocks the v2 deployment adds beside v1 (inodes not shared with the repository
  or v1: directories, /etc copies), plus v2's new objects, against the bytes of the files that
  changed (target <= 1.05x); an A/B scheme pays 1.0x the whole image.
"""

import argparse
import os
import shutil
import sys
import time

from common import RESULTS, ROOT, UPDATER, dataset, median, mib, table, timed, without_special

BRANCH = "bench/stable"


def inodes(path):
    """{(dev, ino): blocks * 512} of everything below ``path`` (itself included)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        st = os.lstat(dirpath)
        out[(st.st_dev, st.st_ino)] = st.st_blocks * 512
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            st = os.lstat(os.path.join(dirpath, name))
            out[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return out


def changed_bytes(repo, v1, v2):
    """(apparent bytes, files) of v2 files that are new or differ from v1."""
    from updater import trees

    added, removed, modified = trees.diff(repo, v1, v2)
    total = n = 0
    for path in added + modified:
        if path.endswith("/"):
            continue
        entry = trees.lookup(repo, v2, path)
        if entry.kind == "file":
            total += entry.size
            n += 1
    return total, n


def image_bytes(repo, cid):
    from updater import trees

    return sum(e.size for e in trees.walk(repo, repo.load_commit(cid).tree) if e.kind == "file")


def deploy_in_process(sysroot_path, cid, verify):
    """Seconds per phase of one deploy (plan, verify, checkout, merge, finish) and the result."""
    from updater import deploy
    from updater.sysroot import Sysroot

    marks = [("start", time.monotonic())]

    def say(text):
        marks.append((text.split()[0], time.monotonic()))

    sysroot = Sysroot.open(sysroot_path)
    with sysroot.lock():
        result = deploy.deploy(sysroot, cid, None, verify, sysroot.booted(), say)
    marks.append(("end", time.monotonic()))
    t = dict((name, at) for name, at in marks)
    phases = {"plan": t["verifying"] - t["start"], "verify": t["checking"] - t["verifying"],
              "checkout": t["merging"] - t["checking"]}
    return phases, t["end"], t["merging"], result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", help="where to build the sysroot and OSTree repository (default bench/results); "
                    "e.g. a mounted ext4 image made with -O inline_data")
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    from updater.sysroot import DeviceConfig, Sysroot

    pair = dataset()
    work = os.path.join(args.workdir or RESULTS, "deploy_bench")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    tars = [without_special(os.path.join(pair, v + ".tar"), os.path.join(RESULTS, v + "-nodev.tar")) for v in ("v1", "v2")]
    env = dict(os.environ, PYTHONPATH=ROOT, UPDATER_CMDLINE=os.path.join(work, "cmdline"))
    os.environ["UPDATER_CMDLINE"] = env["UPDATER_CMDLINE"]
    sysroot = os.path.join(work, "sysroot")
    Sysroot.create(sysroot, DeviceConfig(board="bench", bootloader="file", branch=BRANCH, reserve=0, keep=10), None, "bare")
    repo_path = os.path.join(sysroot, "updater", "repo")
    ids = []
    for tar, version in zip(tars, ("1", "2")):
        _, _, out = timed(UPDATER + ["-q", "--repo", repo_path, "commit", "--branch", BRANCH, "--version", version, tar], env=env)
        ids.append(bytes.fromhex(out.split()[1]))
    timed(UPDATER + ["-q", "--sysroot", sysroot, "deploy", BRANCH + "^"], env=env)
    deploy_dir = os.path.join(sysroot, "updater", "deploy")
    v1_name = os.listdir(deploy_dir)[0]
    with open(env["UPDATER_CMDLINE"], "w") as f:
        f.write("updater.deployment=%s\n" % v1_name)
    with open(os.path.join(deploy_dir, v1_name, "etc", "hostname"), "w") as f:
        f.write("bench-device\n")
    orepo = os.path.join(work, "ostree")
    timed(["ostree", "--repo=" + orepo, "init", "--mode=bare"])
    for tar, ref in zip(tars, ("v1", "v2")):
        timed(["ostree", "--repo=" + orepo, "commit", "--branch=" + ref, "--tree=tar=" + tar])

    res = {"ostree": [], "cli": [], "deploy": [], "co_merge": [], "co_merge_trees": [], "verify_all": [], "plan": [], "verify": [],
           "checkout": [], "merge": [], "finish": []}
    disk = None
    for i in range(args.runs):
        dest = os.path.join(work, "oco%d" % i)
        os.sync()  # every timed step starts with no dirty pages left by the previous one's clean-up
        t, _, _ = timed(["ostree", "--repo=" + orepo, "checkout", "-H", "v2", dest])
        res["ostree"].append(t)
        shutil.rmtree(dest)
        os.sync()
        start = time.monotonic()
        phases, end, merge_start, result = deploy_in_process(sysroot, ids[1], "new")
        res["deploy"].append(end - start)
        res["plan"].append(phases["plan"])
        res["verify"].append(phases["verify"])
        res["checkout"].append(phases["checkout"])
        name = result["deployment"]
        if disk is None:
            disk = measure_disk(sysroot, repo_path, v1_name, name, ids)
            disk["ostree_extra"] = ostree_disk(orepo, work)
        # merge and finish: from the "merging" mark to the end, split by re-timing the merge alone
        res["finish"].append(end - merge_start)
        shutil.rmtree(os.path.join(deploy_dir, name))
        os.sync()
        start = time.monotonic()
        phases, end, merge_start, result = deploy_in_process(sysroot, ids[1], "all")
        res["verify_all"].append(end - start)
        shutil.rmtree(os.path.join(deploy_dir, result["deployment"]))
        os.sync()
        t, _, _ = timed(UPDATER + ["-q", "--sysroot", sysroot, "deploy", BRANCH], env=env)
        res["cli"].append(t)
        shutil.rmtree(os.path.join(deploy_dir, [n for n in os.listdir(deploy_dir) if n != v1_name][0]))
        res["merge"].append(time_merge(sysroot, v1_name, ids, os.path.join(work, "merge%d" % i)))
        res["co_merge"].append(phases_sum(res, i))
        res["co_merge_trees"].append(phases_sum(res, i) + res["plan"][i])
    o, ob = median(res["ostree"]), min(res["ostree"])
    print("dataset: %s -> %s (%d runs, warm page cache; medians, and best of %d for a busy machine)"
          % (tars[0], tars[1], args.runs, args.runs))

    def row(label, key, target=""):
        m, b = median(res[key]), min(res[key])
        return [label, "%.3f s" % m, "%.2fx" % (m / o), "%.3f s" % b, "%.2fx" % (b / ob), target]

    rows = [
        row("ostree checkout -H v2", "ostree"),
        row("updater checkout + /etc merge", "co_merge", "<= 1.0x"),
        row("  the same, with reading the trees (plan)", "co_merge_trees"),
        row("  checkout (hard links)", "checkout"),
        row("  /etc three-way merge", "merge"),
        row("updater deploy (whole, in process)", "deploy"),
        row("  plan + space check", "plan"),
        row("  verify new objects", "verify"),
        row("  merge + syncfs + rename + state + boot env", "finish"),
        row("updater deploy --verify all (in process)", "verify_all"),
        row("updater --sysroot S deploy (CLI, with start-up)", "cli"),
    ]
    table(rows, ["time", "median", "vs ostree", "best", "vs ostree", "target"])
    print()
    changed, nfiles = disk["changed"]
    table([
        ["bytes of the changed files (v2 new or modified)", mib(changed), "1.00x", "%d files" % nfiles],
        ["v2 deployment beside v1: own inodes (dirs, /etc, empty files)", mib(disk["deploy_extra"]),
         "%.3fx" % (disk["deploy_extra"] / changed), ""],
        ["v2's new objects in the repository", mib(disk["objects_extra"]), "%.3fx" % (disk["objects_extra"] / changed), ""],
        ["total extra disk for v2 beside v1", mib(disk["total_extra"]), "%.3fx" % (disk["total_extra"] / changed), "<= 1.05x"],
        ["ostree checkout -H v2 beside v1: own inodes", mib(disk["ostree_extra"]),
         "%.3fx" % (disk["ostree_extra"] / changed), "same measure"],
        ["A/B scheme: a second full image", mib(disk["image"]), "%.3fx" % (disk["image"] / changed), "(1.0x the image)"],
    ], ["disk", "size", "vs changed files", "note"])
    print("extra disk for v2 = %.1f%% of a full A/B image" % (100.0 * disk["total_extra"] / disk["image"]))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def phases_sum(res, i):
    return res["checkout"][i] + res["merge"][i]


def time_merge(sysroot_path, v1_name, ids, scratch):
    """Seconds of the /etc merge alone, on a fresh copy of v2's /etc defaults."""
    from updater import checkout, deploy
    from updater.repo import Repo

    repo = Repo.open(os.path.join(sysroot_path, "updater", "repo"))
    new = repo.load_commit(ids[1])
    checkout.checkout(repo, ids[1], scratch, copy=("etc",))
    start = time.monotonic()
    deploy._merge_etc(repo, repo.load_commit(ids[0]), new,
                      os.path.join(sysroot_path, "updater", "deploy", v1_name), scratch)
    elapsed = time.monotonic() - start
    shutil.rmtree(scratch)
    return elapsed


def ostree_disk(orepo, work):
    """Blocks of inodes in an OSTree hard-link checkout of v2 not shared with its repo or v1's."""
    co1, co2 = os.path.join(work, "odisk1"), os.path.join(work, "odisk2")
    timed(["ostree", "--repo=" + orepo, "checkout", "-H", "v1", co1])
    timed(["ostree", "--repo=" + orepo, "checkout", "-H", "v2", co2])
    shared = inodes(os.path.join(orepo, "objects"))
    v1 = inodes(co1)
    extra = sum(b for k, b in inodes(co2).items() if k not in shared and k not in v1)
    shutil.rmtree(co1)
    shutil.rmtree(co2)
    return extra


def measure_disk(sysroot, repo_path, v1_name, v2_name, ids):
    from updater import trees
    from updater.repo import Repo

    repo = Repo.open(repo_path)
    deploy_dir = os.path.join(sysroot, "updater", "deploy")
    shared = inodes(os.path.join(repo_path, "objects"))
    v1 = inodes(os.path.join(deploy_dir, v1_name))
    v2 = inodes(os.path.join(deploy_dir, v2_name))
    deploy_extra = sum(b for k, b in v2.items() if k not in shared and k not in v1)
    old = trees.reachable(repo, [ids[0]])
    new = trees.reachable(repo, [ids[1]])
    objects_extra = 0
    for key, (oid, kind, header, size) in new.items():
        if key not in old:
            objects_extra += os.lstat(repo.object_path(oid, kind)).st_blocks * 512
    return {"changed": changed_bytes(repo, ids[0], ids[1]), "deploy_extra": deploy_extra,
            "objects_extra": objects_extra, "total_extra": deploy_extra + objects_extra,
            "image": image_bytes(repo, ids[1])}


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
