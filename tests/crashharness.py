"""Fault injection for the crash-safety tests and bench: kill an updater command at its k-th
durable operation, then check what the next boot would find.

``fs.set_hook`` sees every durable operation of the device core in order (write = create of a
new file, fsync, sync, rename, link, symlink, unlink, mkdir, rmdir, chmod, write_at; the boot
selection is a FileBootloader file replaced by rename, or an env image by write_at). The command
runs in a forked child (``updater.cli.main``) whose hook calls ``os._exit`` just before
operation k: the process dies as if killed, with everything before k done and nothing after.

After each crash ``Device.check_after_crash`` runs what the device would: the boot script's
state machine (``bootloader.boot_once``, saving its count as U-Boot does), then
``updater boot`` on the deployment it chose, then ``fsck``, a re-hash of every stored object
(unreferenced ones too: their header is rebuilt from the bare object's inode), and finally the
interrupted command again, a reboot into the result, and ``fsck`` once more.
"""

import io
import os
import subprocess

from updater import bootloader, fs, objects
from updater.cli import main
from updater.repo import Repo

CRASH_EXIT = 77


def run_cli(argv, env=None):
    """(exit code, stdout, stderr) of ``updater argv`` run in this process."""
    saved = {}
    for key in env or {}:
        saved[key] = os.environ.get(key)
        os.environ[key] = env[key]
    out, err = io.StringIO(), io.StringIO()
    try:
        rc = main([str(a) for a in argv], stdout=out, stderr=err)
    finally:
        for key in saved:
            if saved[key] is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = saved[key]
    return rc, out.getvalue(), err.getvalue()


def run_killed_at(argv, k, env=None):
    """Run ``updater argv`` in a forked child killed just before durable operation ``k``
    (0: never). Returns (exit status, ["op path", ...] of the operations it started)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(r)
        seen = []

        def hook(op, path):
            seen.append("%s %s" % (op, path))
            if len(seen) == k:
                _send(w, seen)
                os._exit(CRASH_EXIT)

        fs.set_hook(hook)
        try:
            rc, _, _ = run_cli(argv, env)
        except BaseException:  # noqa: BLE001 - any escape is a failure the parent reports
            rc = 98
        _send(w, seen)
        os._exit(rc)
    os.close(w)
    chunks = []
    while True:
        data = os.read(r, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode("utf-8", "replace")
    return os.WEXITSTATUS(status), [line for line in text.split("\n") if line]


def _send(fd, seen):
    data = ("\n".join(seen) + "\n").encode("utf-8", "replace")
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def copy_tree(src, dst, link=False):
    """cp -a: hard links between repository objects and deployments are preserved.

    ``link``: hard-link every file instead of copying (fast for big trees; safe because updater
    never writes into an existing file: objects, deployments, state and contract are replaced by
    rename). The lock file, written in place, is copied.
    """
    subprocess.run(["cp", "-al" if link else "-a", src, dst], check=True)
    if link:
        lock = os.path.join(dst, "updater", "lock")
        if os.path.exists(lock):
            os.remove(lock)


def bad_objects(repo_path):
    """Objects stored under a name their bytes do not hash to (every object, referenced or not)."""
    repo = Repo.open(repo_path)
    bad = []
    for oid, kind in repo.iter_objects():
        path = repo.object_path(oid, kind)
        if kind != "file":
            data = fs.read_bytes(path)
            if objects.sha256(data) != oid:
                bad.append((kind, objects.to_hex(oid)))
            continue
        st = os.lstat(path)
        xattrs = fs.read_xattrs(path) if repo.mode == "bare" and not os.path.islink(path) else None
        uid, gid = (st.st_uid, st.st_gid) if repo.mode == "bare" else (0, 0)
        if os.path.islink(path):
            header = objects.file_header(st.st_mode, uid, gid, None, os.readlink(path))
            digest = objects.symlink_id(header)
        else:
            if repo.mode != "bare":
                continue  # user mode: the header (owner) lives only in the tree entry
            header = objects.file_header(st.st_mode, uid, gid, xattrs)
            digest = fs.sha256_file(path, header)[0]
        if digest != oid:
            bad.append((kind, objects.to_hex(oid)))
    return bad


class Device:
    """A sysroot with the file bootloader, and how to boot it the way U-Boot and init would."""

    def __init__(self, path, cmdline, probe="boot/vmlinuz", env_image=None, board=None):
        self.path = path
        self.cmdline = cmdline
        self.probe = probe  # the file U-Boot loads from a deployment (it "boots" if present)
        self.env = {"UPDATER_CMDLINE": cmdline}
        # U-Boot devices: the env medium is an image file inside the sysroot (copied with it)
        self.env_image = env_image
        self.board = board
        self.extra = ["--env-file", os.path.join(path, env_image)] if env_image else []

    def running(self, name):
        """Say (on the simulated kernel command line) that deployment ``name`` is running."""
        with open(self.cmdline, "w") as f:
            f.write("console=ttyS0 updater.deployment=%s\n" % name)

    def deploy_dir(self):
        return os.path.join(self.path, "updater", "deploy")

    def bootloader(self):
        if self.env_image:
            from updater import board as board_mod

            return bootloader.UBootBootloader(board_mod.load(self.board), env_file=os.path.join(self.path, self.env_image))
        return bootloader.FileBootloader(os.path.join(self.path, bootloader.SYSROOT_FILE))

    def contract(self):
        return self.bootloader().read()

    def can_load(self, name):
        return os.path.isfile(os.path.join(self.deploy_dir(), name, self.probe))

    def reboot(self):
        """One boot: the boot script picks (and counts), init mounts it, ``updater boot`` runs.
        Returns (deployment booted, result of updater boot)."""
        fallback = None
        text = os.path.join(self.path, "boot", "updater-env.txt")
        if os.path.exists(text):
            from updater import ubootenv

            with open(text) as f:
                values = ubootenv.parse_text(f.read())
            fallback = {"current": values.get("upd_current"), "limit": values.get("upd_limit")}
        name = bootloader.boot_once(self.bootloader(), self.can_load, fallback)
        with open(self.cmdline, "w") as f:
            f.write("console=ttyS0 updater.deployment=%s\n" % (name or ""))
        rc, out, err = run_cli(["--sysroot", self.path, "boot", "--json"] + self.extra, self.env)
        return name, (rc, out, err)

    def fsck(self):
        return run_cli(["--sysroot", self.path, "fsck"], self.env)

    def run(self, argv):
        return run_cli(["--sysroot", self.path] + list(argv) + self.extra, self.env)

    def leftovers(self):
        out = [n for n in os.listdir(self.deploy_dir()) if n.startswith(fs.TMP_PREFIX)]
        tmp = os.path.join(self.path, "updater", "repo", "tmp")
        out += [os.path.join("repo/tmp", n) for n in os.listdir(tmp)]
        return out

    def check_after_crash(self, argv, old, new_commit):
        """Problems (a list of text) found after a crash of ``argv``; empty when all is well."""
        problems = []
        name, (rc, out, err) = self.reboot()
        if name != old and not (name or "").startswith(new_commit + "."):
            problems.append("the boot script chose %r: neither the old %s nor a deployment of %s"
                            % (name, old, new_commit[:12]))
        if rc != 0:
            problems.append("updater boot failed (%d): %s %s" % (rc, out, err))
        left = self.leftovers()
        if left:
            problems.append("leftovers after boot: %s" % left)
        rc, out, err = self.fsck()
        if rc != 0:
            problems.append("fsck after the crash failed: %s %s" % (out, err))
        bad = bad_objects(os.path.join(self.path, "updater", "repo"))
        if bad:
            problems.append("objects under a wrong hash: %s" % bad)
        rc, out, err = self.run(argv)
        if rc != 0:
            problems.append("running %s again failed (%d): %s" % (" ".join(argv), rc, err))
            return problems
        name, (rc, out, err) = self.reboot()
        if not (name or "").startswith(new_commit + "."):
            problems.append("after the re-run the device booted %r, not the new commit %s" % (name, new_commit[:12]))
        if rc != 0:
            problems.append("updater boot after the re-run failed (%d): %s %s" % (rc, out, err))
        contract = self.contract()
        if contract["current"] != name or contract["trial"]:
            problems.append("the new deployment was not marked good: %r" % contract)
        rc, out, err = self.fsck()
        if rc != 0:
            problems.append("fsck after the re-run failed: %s %s" % (out, err))
        return problems
