"""Shared pieces of the benchmarks: the dataset pair, timing with peak RSS, ratio tables.

The dataset is the pair from ../shared/datasets/make-rootfs-pair (Debian 12 minbase before and
after its updates). Set UPDATER_DATASET to a directory holding v1.tar and v2.tar, or let
``dataset()`` build it (root, debootstrap and the Debian mirror; 2-4 minutes) into
bench/results/pair.
"""

import os
import statistics
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
MAKE_PAIR = os.path.join(ROOT, "..", "shared", "datasets", "make-rootfs-pair")
UPDATER = [sys.executable, "-m", "updater"]


def dataset():
    """Directory with v1.tar and v2.tar (built if missing)."""
    path = os.environ.get("UPDATER_DATASET") or os.path.join(RESULTS, "pair")
    if not (os.path.exists(os.path.join(path, "v1.tar")) and os.path.exists(os.path.join(path, "v2.tar"))):
        print("bench: building the dataset pair into %s (a few minutes)" % path, file=sys.stderr)
        subprocess.run([MAKE_PAIR, path], check=True)
    return path


def without_special(src, dst):
    """A copy of tar ``src`` without device nodes and FIFOs (neither OSTree nor updater store them)."""
    if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
        return dst
    with tarfile.open(src) as tin, tarfile.open(dst + ".tmp", "w", format=tarfile.PAX_FORMAT) as tout:
        for m in tin:
            if m.ischr() or m.isblk() or m.isfifo():
                continue
            tout.addfile(m, tin.extractfile(m) if m.isreg() else None)
    os.replace(dst + ".tmp", dst)
    return dst


def timed(cmd, cwd=None, env=None):
    """(seconds, peak RSS in bytes, stdout) of one command; raises on failure. The RSS comes from
    GNU time's %M (0 without /usr/bin/time: ru_maxrss of children is a maximum over all of them)."""
    gnu_time = os.path.exists("/usr/bin/time")
    start = time.monotonic()
    proc = subprocess.run((["/usr/bin/time", "-f", "%M"] if gnu_time else []) + cmd, cwd=cwd, env=env,
                          capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit("bench: %s failed (%d):\n%s%s" % (" ".join(cmd), proc.returncode, proc.stdout, proc.stderr))
    rss = int(proc.stderr.strip().splitlines()[-1]) * 1024 if gnu_time else 0
    return elapsed, rss, proc.stdout


def median(values):
    return statistics.median(values)


def table(rows, headers):
    """Print a plain-text table; rows are lists of strings."""
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def mib(n):
    return "%.1f MiB" % (n / 1048576.0)


def bootable(src, dst):
    """A copy of tar ``src`` with stand-in boot files: the dataset is a minbase chroot with no
    kernel, initramfs or init, which a U-Boot device refuses to deploy (it could not boot)."""
    import io
    import shutil

    if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
        return dst
    shutil.copyfile(src, dst + ".tmp")
    with tarfile.open(dst + ".tmp", "a", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in (("./boot/vmlinuz", b"stand-in kernel\n" * 4096, 0o644),
                                 ("./boot/initrd.img", b"stand-in initramfs\n" * 1024, 0o644),
                                 ("./usr/sbin/init", b"#!/bin/sh\nexec /bin/sh\n", 0o755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1700000000
            tar.addfile(info, io.BytesIO(data))
    os.replace(dst + ".tmp", dst)
    return dst
