"""The full demo on the embedded default: a device on local disk updated over loopback HTTP.

    python -m updater.host.devicedemo [WORKDIR]      (./run-demo does the set-up first)

Build server: two versions of a small OS tree are committed, signed and published with a static
delta, then served over HTTP on 127.0.0.1. Device: a sysroot on local disk (file boot contract
instead of U-Boot's env) is provisioned with version 1.0, its owner edits /etc, it upgrades to
2.0 over HTTP, "reboots" (the U-Boot script's logic, then ``updater boot`` as early boot would
run it), is confirmed good, and shows its status. Every command shown is the real command line.
"""

import os
import shutil
import subprocess
import sys
import time

from .. import bootloader
from ..sysroot import Sysroot

BRANCH = "demo-board/stable"
WIDTH = 78


def say(text=""):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def step(number, title, why):
    say("")
    say("=" * WIDTH)
    say("%d. %s" % (number, title))
    for line in why:
        say("   " + line)
    say("-" * WIDTH)


class Demo:
    def __init__(self, work):
        self.work = work
        self.server = os.path.join(work, "build-server", "repo")
        self.key = os.path.join(work, "build-server", "signing-key")
        self.device = os.path.join(work, "device")
        self.cmdline = os.path.join(work, "device-kernel-cmdline")
        self.env = dict(os.environ, UPDATER_CMDLINE=self.cmdline)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.env["PYTHONPATH"] = root + (os.pathsep + self.env["PYTHONPATH"] if self.env.get("PYTHONPATH") else "")
        self.serve_proc = None
        self.url = None
        self.fetched = None

    def short(self, path):
        return os.path.relpath(path) if not os.path.relpath(path).startswith("../..") else path

    def run(self, *argv, show=True, quiet=False):
        """Run ``updater ARGV``, show the command and its output; returns stdout."""
        argv = [str(a) for a in argv]
        shown = [self.short(a) if a.startswith(self.work) else a for a in argv]
        say("$ updater " + " ".join(shown))
        cmd = [sys.executable, "-m", "updater"] + (["-q"] if quiet else []) + argv
        proc = subprocess.run(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if show:
            for line in proc.stdout.rstrip("\n").split("\n"):
                if line:
                    say("  " + line)
        if proc.returncode != 0:
            say(proc.stderr)
            raise SystemExit("demo: 'updater %s' failed with exit code %d" % (" ".join(shown), proc.returncode))
        return proc.stdout

    # --- the build server -------------------------------------------------------------------
    def build_tree(self, version):
        root = os.path.join(self.work, "build-server", "os-%s" % version)
        shutil.rmtree(root, ignore_errors=True)
        major = int(version.split(".")[0])
        period = bytes((i * 7) % 251 for i in range(251))  # the pattern repeats every 251 bytes
        lib = b"libdemo 1.0 " + (period * (400000 // 251 + 1))[:400000]
        if major >= 2:
            lib = lib[:200000] + b"security fix" + lib[200012:]
        files = {
            "boot/vmlinuz": (b"KERNEL %d " % major + bytes(range(256)) * 4000, 0o644),
            "sbin/init": (b"#!/bin/sh\nexec /usr/bin/app\n", 0o755),
            "usr/lib/libdemo.so.1": (lib, 0o644),
            "usr/share/doc/demo/README": (b"Demo OS documentation\n" * 500, 0o644),
            "usr/bin/app": (b"#!/bin/sh\necho 'demo app, version %s'\n" % version.encode(), 0o755),
            "etc/os-release": (b'NAME="Demo OS"\nVERSION_ID="%s"\n' % version.encode(), 0o644),
            "etc/app.conf": (b"greeting = hello\n" + (b"colour = blue\n" if major >= 2 else b""), 0o644),
            "etc/hostname": (b"demo-device\n", 0o644),
        }
        for rel in sorted(files):
            data, mode = files[rel]
            path = os.path.join(root, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            os.chmod(path, mode)
        os.makedirs(os.path.join(root, "var", "lib"), exist_ok=True)
        return root

    def release(self, version, first):
        tree = self.build_tree(version)
        self.run("--repo", self.server, "commit", tree, "--branch", BRANCH, "--version", version,
                 "--subject", "Demo OS %s" % version)
        if not first:
            self.run("--repo", self.server, "delta", "--from", BRANCH + "^", "--to", BRANCH, quiet=True)
        self.run("--repo", self.server, "publish", "--key", self.key, quiet=True)

    def start_server(self):
        say("$ updater --repo %s serve --port 0 &" % self.short(self.server))
        self.serve_proc = subprocess.Popen([sys.executable, "-m", "updater", "--repo", self.server, "serve", "--port", "0"],
                                           env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = self.serve_proc.stderr.readline()
        if " on http://" not in line:
            raise SystemExit("demo: the HTTP server did not start: %s" % line)
        self.url = line.split(" on ")[1].split()[0].rstrip("/")
        say("  serving on %s (a plain static HTTP server would do the same job)" % self.url)

    def stop_server(self):
        if self.serve_proc is not None:
            self.serve_proc.terminate()
            self.serve_proc.wait()
            self.serve_proc = None

    # --- the device ---------------------------------------------------------------------------
    def reboot(self):
        """What a power cycle does: U-Boot's script picks a deployment, early boot runs updater boot."""
        bl = bootloader.FileBootloader(os.path.join(self.device, bootloader.SYSROOT_FILE))
        before = bl.read()
        name = bootloader.boot_once(bl, lambda n: os.path.isfile(os.path.join(
            self.device, "updater", "deploy", n, "boot", "vmlinuz")))
        after = bl.read()
        if before["trial"] and name == before["trial"]:
            say("  (boot script) a new version is staged: trial boot of %s, attempt %d of %d"
                % (name[:12], after["count"], after["limit"] or 3))
        else:
            say("  (boot script) booting the known-good version %s" % name[:12])
        with open(self.cmdline, "w") as f:
            f.write("console=ttyAMA0 updater.deployment=%s\n" % name)
        say("  (kernel) command line: ... updater.deployment=%s..." % name[:24])
        self.run("--sysroot", self.device, "boot")
        return name

    def add_health_check(self):
        check = os.path.join(self.work, "device-health-check")
        with open(check, "w") as f:
            f.write("#!/bin/sh\n# A real device would check that its application answers.\n"
                    "echo \"health check: deployment $UPDATER_DEPLOYMENT looks healthy\"\nexit 0\n")
        os.chmod(check, 0o755)
        sysroot = Sysroot.open(self.device)
        cfg = sysroot.config()
        cfg.health_checks = [os.path.abspath(check)]
        cfg.reserve = 0
        from .. import fs

        fs.write_atomic(sysroot.config_path, cfg.dump().encode())

    def etc_file(self, name, rel):
        return os.path.join(self.device, "updater", "deploy", name, "etc", rel)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    work = os.path.abspath(argv[0] if argv else "demo-work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "build-server"))
    demo = Demo(work)
    say("updater demo: one device, updated over HTTP, all on this computer (files in %s)" % demo.short(work))
    try:
        return _story(demo)
    finally:
        demo.stop_server()


def _story(demo):
    step(1, "The build server makes version 1.0 of a small OS and publishes it",
         ["A commit records a whole OS tree; 'publish' signs a summary of what is available."])
    demo.run("keygen", "--out", demo.key)
    demo.run("--repo", demo.server, "init")
    demo.release("1.0", True)

    step(2, "The build server's repository goes online (HTTP on 127.0.0.1)",
         ["Devices only need plain files over HTTP; any web server or CDN works."])
    demo.start_server()

    step(3, "A new device is provisioned with version 1.0",
         ["Its 'sysroot' is a directory here; on hardware it is the data partition.",
          "It trusts only the build server's public key."])
    demo.run("--sysroot", demo.device, "init", "--remote", demo.url, "--branch", BRANCH, "--trust", demo.key + ".pub")
    demo.add_health_check()
    demo.run("--sysroot", demo.device, "upgrade")
    say("First power-on:")
    v1 = demo.reboot()

    step(4, "The device's owner changes a setting in /etc",
         ["Updates must keep local changes: /etc is merged, not overwritten."])
    with open(demo.etc_file(v1, "hostname"), "w") as f:
        f.write("kitchen-sensor\n")
    say("  /etc/hostname is now 'kitchen-sensor' (it was 'demo-device')")

    step(5, "The build server releases version 2.0 with a security fix",
         ["It also publishes a delta: only what changed between 1.0 and 2.0."])
    demo.release("2.0", False)

    step(6, "The device upgrades over HTTP",
         ["It downloads the delta, checks every byte against the signed summary, and builds",
          "version 2.0 next to 1.0. Unchanged files are shared (hard links), so the new",
          "version costs only the changed files. Nothing changes for the running system."])
    out = demo.run("--sysroot", demo.device, "upgrade")
    fetched = [w for w in out.split(":") if "bytes fetched" in w]
    demo.fetched = int(fetched[0].split()[0]) if fetched else None

    step(7, "The device reboots into 2.0 (simulated), on trial",
         ["If 2.0 failed to start, the boot script would count the attempts and go back to",
          "1.0 by itself. Early at boot, 'updater boot' runs the health check and confirms it."])
    v2 = demo.reboot()

    step(8, "Where the device stands now", [])
    demo.run("--sysroot", demo.device, "status")
    with open(demo.etc_file(v2, "hostname")) as f:
        host = f.read().strip()
    with open(demo.etc_file(v2, "app.conf")) as f:
        conf = f.read()
    demo.run("--sysroot", demo.device, "fsck", quiet=True)
    say("")
    say("=" * WIDTH)
    say("Done. Version 2.0 runs and is confirmed good; 1.0 stays as the rollback target")
    say("('updater --sysroot %s rollback' would go back)." % demo.short(demo.device))
    say("The owner's /etc/hostname survived the update: '%s'; the new default setting" % host)
    say("arrived too: /etc/app.conf now has '%s'." % conf.strip().split("\n")[-1])
    if demo.fetched:
        size = 0
        for dirpath, _, files in os.walk(os.path.join(demo.work, "build-server", "os-2.0")):
            size += sum(os.lstat(os.path.join(dirpath, f)).st_size for f in files)
        say("Upgrading downloaded %d bytes for an OS of %d bytes (%.1f%%)." % (demo.fetched, size,
                                                                            100.0 * demo.fetched / size))
    return 0


if __name__ == "__main__":
    start = time.time()
    rc = main()
    say("(demo took %.1f s)" % (time.time() - start))
    sys.exit(rc)
