"""Seeding a new device sysroot on the host: what ``updater provision`` puts on the sysroot partition.

Steps (each its own function, in the order ``seed`` runs them):

1. ``check_inputs``: the board config, the commit (resolved in the source repository, its
   objects read with their hashes checked), the commit's board against the board's name, and
   its signature against the given public keys when the board requires signatures;
2. ``Sysroot.create`` with a device configuration (board, bootloader = uboot, remote, branch,
   trusted keys) and a NEW bare repository; ``copy_commit`` copies just the objects the commit
   needs into it, each re-hashed on the way (a mismatch stops everything), then its signature
   file and the branch ref;
3. the first deployment by the device's own code (``updater.deploy.deploy``: the same hard-link
   farm, /etc copy, state record and ``boot/updater-env.txt`` a device makes), staged through a
   boot contract backed by an in-memory copy of the board's env medium, which first receives the
   initial environment (the board's U-Boot defaults plus the per-unit values);
4. ``boot/boot.scr`` compiled from bootloader-scripts/boot.cmd with ``mkimage`` (SOURCE_DATE_EPOCH
   fixes its time stamp), and an identical ``/boot.scr`` (distro_bootcmd's first choice);
5. every time in the state map and every file time set to the epoch (reproducible bytes).

Needs root (or fakeroot): the repository keeps each file's owner as the commit records it.
"""

import os
import shutil
import subprocess

from .. import board as board_mod
from .. import deploy, envstore, fs, objects, trust, ubootenv
from ..bootloader import UBootBootloader
from ..errors import ConfigError, IntegrityError, SpaceError, StorageError, TrustError, UpdaterError, UsageError
from ..objects import to_hex
from ..repo import Repo
from ..sysroot import DeviceConfig, Sysroot, parse_public_key
from .diskimage import clamp_times

BOOT_SCRIPT = "boot/boot.scr"
BOOT_SCRIPT_COPY = "boot.scr"
MKIMAGE_ARCH = {"arm64": "arm64", "arm": "arm"}
_STATE_TIME_KEYS = ("created", "good", "failed", "time")
_CHUNK = 1 << 20


class Inputs:
    """Checked inputs of one provisioning: board, source repo, commit, trusted keys."""

    def __init__(self, board, repo, commit_id, commit, keys, signed_by, branch):
        self.board = board
        self.repo = repo
        self.commit_id = commit_id
        self.commit = commit
        self.keys = keys  # {file name: file bytes}
        self.signed_by = signed_by
        self.branch = branch


def load_board(name):
    """A Board from a name or a .conf path (NotFoundError/ConfigError say which and why)."""
    if isinstance(name, board_mod.Board):
        return name
    return board_mod.load(name)


def read_keys(paths):
    """{file name: bytes} of public key files (name as the device lists it in [trust] keys)."""
    keys = {}
    for path in paths or ():
        data = fs.read_bytes(path, 4096, "reading public key")
        parse_public_key(data, path)
        name = os.path.basename(path)
        if not name.endswith(".pub"):
            name += ".pub"
        if name.startswith(".") or name in keys:
            raise UsageError("reading public key %s: the name %s is %s" % (path, name, "taken by another key" if name in keys else "hidden"),
                             "give each key file its own name (KEYNAME.pub)")
        keys[name] = bytes(data)
    return keys


def check_remote(remote):
    """The device's [remote] url must be one its fetchers speak (as ``updater init`` checks)."""
    if remote and not (remote.startswith("http://") or remote.startswith("file:///")):
        raise UsageError("provisioning: the remote must be http://HOST[:PORT]/PATH or file:///PATH, got '%s'" % remote)


def check_inputs(board, repo_path, ref, key_paths=(), branch=None):
    """Inputs for provisioning ``ref`` of ``repo_path`` onto ``board``; raises on bad input."""
    board = load_board(board)
    repo = Repo.open(repo_path)
    cid = repo.resolve(ref)
    commit = repo.load_commit(cid)
    made_for = deploy.commit_board(commit)
    if made_for and made_for != board.name:
        raise TrustError("provisioning commit %s onto board %s: the commit was made for board '%s' (branch %s)"
                         % (to_hex(cid)[:12], board.name, made_for, commit.branch),
                         "provision a commit of a %s branch, e.g. %s/stable" % (board.name, board.name))
    keys = read_keys(key_paths)
    trusted = dict((name, parse_public_key(keys[name], name)) for name in keys)
    blob = trust.read_commit_sig(repo, cid)
    signed_by = None
    if board.device.require_signatures:
        if not trusted:
            raise UsageError("provisioning onto board %s: it requires signed commits ([device] require_signatures) "
                             "and no public key was given" % board.name,
                             "pass the build server's key with --key-pub KEY.pub (the device trusts it from then on)")
        signed_by = trust.verify_commit_blob(trusted, cid, blob)
    elif blob and trusted:
        signed_by = trust.verify_commit_blob(trusted, cid, blob)
    branch = branch or commit.branch
    objects.check_branch(branch)
    return Inputs(board, repo, cid, commit, keys, signed_by, branch)


# --- the repository ----------------------------------------------------------------------------
def _chunks(path):
    with open(path, "rb") as f:
        while True:
            data = f.read(_CHUNK)
            if not data:
                return
            yield data


def copy_commit(src, dst, commit_id, progress=None, total=None):
    """Copy commit ``commit_id`` and every object it needs from ``src`` into ``dst`` (both Repo),
    each re-hashed on the way; returns {"objects", "bytes"}. The caller writes the ref."""
    tx = dst.transaction()
    done = [0]

    def meta(oid, kind):
        data = src.read_object(oid, kind)  # checks the hash
        tx.add_meta(kind, data)
        return data

    try:
        commit_data = src.read_object(commit_id, "commit")
        commit = objects.parse_commit(commit_data, "commit " + to_hex(commit_id))
        seen = {}
        stack = [(commit.tree, commit.meta)]
        while stack:
            tid, mid = stack.pop()
            if (tid, mid) in seen:  # an identical directory elsewhere: copied already
                continue
            seen[(tid, mid)] = True
            meta(mid, "meta")
            tree = objects.parse_tree(meta(tid, "tree"), "tree " + to_hex(tid))
            for name, oid, header, size in tree.files:
                if oid in seen:
                    continue
                seen[oid] = True
                hdr = src.header(header)
                if hdr.is_link():
                    got = tx.add_symlink(header)
                    if got != oid:
                        raise IntegrityError("copying symlink object %s: its header hashes to %s"
                                             % (to_hex(oid), to_hex(got)))
                    continue
                path = src.object_path(oid, "file")
                if fs.lstat(path) is None:
                    raise IntegrityError("copying file object %s (%s): it is missing from %s"
                                         % (to_hex(oid), name, src.path), "pull or commit it again")
                try:
                    tx.add_file_chunks(header, _chunks(path), expect=oid)
                except IntegrityError as err:
                    raise IntegrityError("copying file object %s (%s) from %s: %s" % (to_hex(oid), name, src.path, err),
                                         "the source repository is damaged: run 'updater --repo %s fsck'" % src.path)
                done[0] += size
                if progress is not None:
                    progress(done[0], total)
            for entry in tree.dirs:
                stack.append((entry[1], entry[2]))
        tx.add_meta("commit", commit_data)
        count = tx.count
        tx.commit()
    except BaseException:
        tx.abort()
        raise
    return {"objects": count, "bytes": tx.bytes}


# --- the environment ---------------------------------------------------------------------------
def check_unit_values(board, values):
    """{name: value} of per-unit env values, checked; the boot contract's names are refused."""
    out = {}
    reserved = dict((board.boot.vars[k], k) for k in board.boot.vars)
    for name in sorted(values or {}):
        value = values[name]
        if name in reserved:
            raise UsageError("setting %s for this unit: it is the boot contract's '%s' variable, which "
                             "provisioning writes itself" % (name, reserved[name]), "choose another name")
        try:
            ubootenv.check_variable(name, value)
        except UpdaterError as err:  # EnvError from the codec
            raise UsageError("setting %s=%r for this unit: %s" % (name, value, err))
        out[name] = value
    return out


def memory_medium(board):
    """An in-memory env medium shaped like the board's: erased flash (0xff) or zeroed disk."""
    env = board.env
    flash = env.storage in ("cfi-nor", "mtd")
    size = max(env.span(off)[1] for off in env.offsets())
    return envstore.MemoryStorage(size, fill=0xFF if flash else 0x00, erase_size=env.sector_size if flash else 0,
                                  nor=flash, name="the env of the image")


def initial_env(board, unit_values, require_defaults=True):
    """The environment written before the first deployment: U-Boot's defaults + the unit values."""
    defaults = board_mod.default_env(board)
    if defaults is None and require_defaults:
        raise ConfigError("writing the initial U-Boot environment for board %s: its config names no "
                          "default_env, and an env without U-Boot's defaults (bootcmd) would stop autoboot"
                          % board.name,
                          "add [env] default_env = FILE (fw_printenv text of U-Boot's defaults), or "
                          "provision without an env (--no-env: boot.cmd then reads boot/updater-env.txt)")
    variables = dict(defaults or {})
    variables.update(unit_values)
    return variables


def env_images(board, variables):
    """[(offset, bytes)] of every env copy for ``variables``; redundant copies are identical with
    equal flags (U-Boot takes copy 1; the device's first save goes to copy 2)."""
    env = board.env
    flags = ubootenv.FLAG_ACTIVE if env.flags == ubootenv.FLAGS_BOOLEAN else 1
    image = ubootenv.encode(variables, env.size, env.redundant, flags if env.redundant else 0, env.pad)
    return [(off, image) for off in env.offsets()]


class _SeedSysroot(Sysroot):
    """A sysroot for the given Board (perhaps a .conf path, not on the search path) whose boot
    contract lives in an in-memory env medium (not the host's /dev)."""

    def __init__(self, path, board, store):
        Sysroot.__init__(self, path)
        self._board = board
        self._store = store

    def bootloader(self, board=None, env_file=None):
        return UBootBootloader(self._board, store=self._store)

    def check_space(self, needed, doing):
        """The host's scratch space: the device's [deploy] reserve does not apply here."""
        free = fs.free_bytes(self.dir)
        if free < needed:
            raise SpaceError("%s: not enough space to stage the sysroot in %s: needs about %d bytes, %d are free"
                             % (doing, self.path, needed, free), "free space there, or pass another scratch directory")
        return free


# --- the boot script ---------------------------------------------------------------------------
def default_boot_cmd():
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(here, "bootloader-scripts", "boot.cmd")


def compile_boot_script(arch, out, source=None, epoch=0):
    """``mkimage -T script`` of ``source`` (default bootloader-scripts/boot.cmd) into ``out``."""
    source = source or default_boot_cmd()
    if not os.path.isfile(source):
        raise ConfigError("compiling the boot script: %s is missing" % source,
                          "pass boot_cmd= the path of boot.cmd (bootloader-scripts/ of the updater source)")
    with open(source, "rb") as f:
        if f.read(4) == b"\x27\x05\x19\x56":  # already a legacy image (boot.scr)
            shutil.copyfile(source, out)
            return out
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
    cmd = ["mkimage", "-A", MKIMAGE_ARCH[arch], "-T", "script", "-C", "none", "-n", "updater boot", "-d", source, out]
    try:
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    except FileNotFoundError:
        raise StorageError("compiling the boot script: mkimage is not installed", "apt-get install u-boot-tools")
    if res.returncode != 0:
        raise StorageError("compiling the boot script %s: mkimage failed: %s"
                           % (source, res.stderr.decode("utf-8", "replace").strip()))
    return out


# --- the whole sysroot -------------------------------------------------------------------------
def clamp_state_times(sysroot, epoch):
    """Every time stamp in the state map set to ``epoch`` (deploy records the host's clock)."""

    def walk(value):
        if isinstance(value, dict):
            for key in value:
                if key in _STATE_TIME_KEYS and isinstance(value[key], int) and not isinstance(value[key], bool):
                    value[key] = epoch
                else:
                    walk(value[key])
        elif isinstance(value, list):
            for item in value:
                walk(item)

    state = sysroot.load_state()
    walk(state)
    sysroot.save_state(state)


def seed(path, inp, remote="", unit_values=None, epoch=0, boot_cmd=None, progress=None, say=None,
         write_env=True, total=None):
    """Lay out the sysroot of ``inp`` (check_inputs) in the empty directory ``path``.

    Returns {"deployment", "env" (the final variables), "env_images" [(offset, bytes)] or None,
    "copied": {...}}. ``remote``: the [remote] url the device pulls from later.
    """
    say = say or (lambda text: None)
    if not fs.is_root():
        raise StorageError("provisioning a sysroot in %s: the repository keeps each file's owner as the commit "
                           "records it, which needs root" % path, "run as root, or under fakeroot")
    check_remote(remote)
    board = inp.board
    unit = check_unit_values(board, unit_values)
    variables = initial_env(board, unit, require_defaults=write_env)
    store = envstore.EnvStore(board.env, memory_medium(board), board_mod.default_env(board))
    store.replace(variables, force=True)
    config = DeviceConfig(board=board.name, bootloader="uboot", url=remote.rstrip("/"), branch=inp.branch,
                          keys=sorted(inp.keys))
    Sysroot.create(path, config, inp.keys, "bare")
    os.chmod(path, 0o755)
    root = _SeedSysroot(path, board, store)
    repo = root.repo()
    say("copying commit %s (version %s) from %s" % (to_hex(inp.commit_id)[:12], inp.commit.version or "-", inp.repo.path))
    copied = copy_commit(inp.repo, repo, inp.commit_id, progress, total)
    blob = trust.read_commit_sig(inp.repo, inp.commit_id)
    if blob:
        trust.store_commit_sig(repo, inp.commit_id, blob)
    repo.write_ref(inp.branch, inp.commit_id)
    say("deploying %s" % to_hex(inp.commit_id)[:12])
    result = deploy.deploy(root, inp.commit_id, verify="all", say=say)
    fs.makedirs(os.path.join(path, "boot"))
    compile_boot_script(board.arch, os.path.join(path, BOOT_SCRIPT), boot_cmd, epoch)
    # A second identical copy: distro_bootcmd tries /boot.scr, then /boot/boot.scr, and skips a
    # copy that fails its CRC (bootloader-scripts/README.md, "What the other parts must provide").
    shutil.copyfile(os.path.join(path, BOOT_SCRIPT), os.path.join(path, BOOT_SCRIPT_COPY))
    clamp_state_times(root, epoch)
    fs.clean_temps(root.tmp_dir)
    clamp_times(path, epoch)
    final = store.read()
    return {"deployment": result["deployment"], "env": final,
            "env_images": env_images(board, final) if write_env else None, "copied": copied,
            "checkout": result.get("checkout")}
