"""Crash safety on the dataset pair: `upgrade` (pull of v2 over a file:// remote + deploy beside a
running v1) killed before durable operation k, then rebooted and checked (tests/crashharness.py).

    .venv/bin/python bench/crash_bench.py [--points 60] [--all] [--delta]

The CI test (tests/test_crash.py) runs every point on a small tree. Here one upgrade of the
Debian pair has thousands of durable operations (one link per file), so by default the bench
samples: the first and last 15 points, every point where the kind of operation changes (phase
boundaries: pull writes, renames, syncs, checkout, the state and boot-contract writes), and an
even spread up to --points in total; --all runs every one (hours). It prints how many points
exist and how many were exercised. Each point: a hard-link copy of the prepared device, the
upgrade killed at k, the boot script's choice (old or complete new deployment), `updater boot`,
`fsck` (objects and deployments), a re-hash of every stored object, the upgrade again, a reboot
into the new deployment, and `fsck` again.
"""

import argparse
import os
import shutil
import sys
import time

from common import RESULTS, ROOT, dataset, without_special

sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from crashharness import CRASH_EXIT, Device, copy_tree, run_cli, run_killed_at  # noqa: E402

BRANCH = "bench/stable"
PROBE = "etc/debian_version"


def must(argv, env=None):
    rc, out, err = run_cli(argv, env)
    if rc != 0:
        raise SystemExit("bench: updater %s failed (%d): %s" % (" ".join(argv), rc, err))
    return out


def prepare(work, tars, delta):
    srv = os.path.join(work, "server")
    key = os.path.join(work, "key")
    must(["keygen", "--out", key])
    must(["--repo", srv, "init", "--mode", "bare"])
    ids = []

    def publish(tar, version):
        out = must(["-q", "--repo", srv, "commit", tar, "--branch", BRANCH, "--version", version])
        ids.append(out.split()[1])
        if delta and version != "1":
            must(["-q", "--repo", srv, "delta", "--from", BRANCH + "^", "--to", BRANCH])
        must(["-q", "--repo", srv, "publish", "--key", key])

    publish(tars[0], "1")
    root = os.path.join(work, "template")
    dev = Device(root, os.path.join(work, "cmdline"), PROBE)
    must(["--sysroot", root, "init", "--remote", "file://" + srv, "--branch", BRANCH, "--trust", key + ".pub"])
    must(["-q", "--sysroot", root, "upgrade"], dev.env)
    old, (rc, out, err) = dev.reboot()
    if rc != 0:
        raise SystemExit("bench: first boot failed: %s" % err)
    publish(tars[1], "2")
    return root, old, ids[1]


def area(op, root):
    """What an operation touches, coarsely: repository tmp/objects/refs, a deployment being
    built, the deploy directory, pull parts, state, boot contract (phase = kind + area)."""
    kind, path = op.split(" ", 1)
    rel = os.path.relpath(path, root).split("/")
    if rel[:2] == ["updater", "repo"]:
        where = "repo/" + (rel[2] if len(rel) > 2 else "")
    elif rel[:2] == ["updater", "deploy"]:
        where = "deploy/build" if len(rel) > 2 and rel[2].startswith(".tmp-") and len(rel) > 3 else "deploy"
    elif rel[:2] == ["updater", "tmp"]:
        where = "tmp"
    else:
        where = "/".join(r for r in rel[:2] if not r.startswith(".tmp-")) or "."
        for name in ("state", "bootenv"):
            if name in rel[-1]:
                where = name
    return kind if kind in ("sync", "write_at") else kind + " " + where


def choose(ops, budget, root):
    n = len(ops)
    chosen = set(range(1, min(15, n) + 1)) | set(range(max(1, n - 14), n + 1))
    phases = [area(op, root) for op in ops]
    for i in range(1, n):
        if phases[i] != phases[i - 1] and not (phases[i].split()[-1] == phases[i - 1].split()[-1] == "deploy/build"):
            chosen.add(i + 1)
    if len(chosen) < budget:
        step = max(1, n // (budget - len(chosen)))
        chosen |= set(range(1, n + 1, step))
    return sorted(chosen)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=60, help="about how many crash points to exercise")
    ap.add_argument("--all", action="store_true", help="exercise every crash point")
    ap.add_argument("--delta", action="store_true", help="publish a static delta v1 -> v2 (slower to prepare)")
    ap.add_argument("--workdir", default=RESULTS)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    pair = dataset()
    tars = [without_special(os.path.join(pair, v + ".tar"), os.path.join(RESULTS, v + "-nodev.tar")) for v in ("v1", "v2")]
    work = os.path.join(args.workdir, "crash_bench")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    start = time.monotonic()
    template, old, new = prepare(work, tars, args.delta)
    print("prepared in %.0f s: device running %s, v2 = %s published%s" % (
        time.monotonic() - start, old[:12], new[:12], " with a delta" if args.delta else ""))
    argv = ["upgrade"]
    probe_dir = os.path.join(work, "probe")
    copy_tree(template, probe_dir, link=True)
    dev = Device(probe_dir, os.path.join(probe_dir, "cmdline"), PROBE)
    dev.running(old)
    rc, ops = run_killed_at(["--sysroot", dev.path] + argv, 0, dev.env)
    if rc != 0:
        raise SystemExit("bench: the upgrade itself failed (%d)" % rc)
    shutil.rmtree(probe_dir)
    kinds = {}
    for op in ops:
        kinds[op.split()[0]] = kinds.get(op.split()[0], 0) + 1
    points = list(range(1, len(ops) + 1)) if args.all else choose(ops, args.points, probe_dir)
    print("one upgrade = %d durable operations (%s); exercising %d of them%s" % (
        len(ops), ", ".join("%s %d" % (k, kinds[k]) for k in sorted(kinds)), len(points),
        "" if args.all else " (sampled: ends, phase boundaries, even spread)"))
    failures = []
    start = time.monotonic()
    for n, k in enumerate(points):
        path = os.path.join(work, "run")
        shutil.rmtree(path, ignore_errors=True)
        copy_tree(template, path, link=True)
        dev = Device(path, os.path.join(path, "cmdline"), PROBE)
        dev.running(old)
        rc, seen = run_killed_at(["--sysroot", dev.path] + argv, k, dev.env)
        if rc != CRASH_EXIT:
            failures.append("point %d: the upgrade was not killed (exit %d)" % (k, rc))
            continue
        problems = dev.check_after_crash(argv, old, new)
        if problems:
            failures.append("point %d (%s): %s" % (k, seen[-1], "; ".join(problems)))
        if (n + 1) % 10 == 0:
            print("  %d/%d points, %d failures, %.0f s" % (n + 1, len(points), len(failures), time.monotonic() - start))
    shutil.rmtree(work, ignore_errors=True)
    print("crash points: %d exist, %d exercised, %d failed (%.0f s)" % (len(ops), len(points), len(failures),
                                                                       time.monotonic() - start))
    for line in failures[:20]:
        print("  FAIL " + line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
