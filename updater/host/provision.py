"""Factory provisioning: a commit and a board config in, a flashable image (or a filled root file
system) out, byte-identical for the same inputs. The library a factory script calls directly::

    from updater.host import provision
    record = provision.provision_image("qemu-arm64", "build/repo", "qemu-arm64/stable", "out/disk.img",
                                       key_pub=["keys/build.pub"], unit_values={"serial#": "A0001"})
    # out/disk.img, out/disk.img.bmap and (env in flash) out/disk.img.env; record: see RECORD_KEYS

Functions (all raise ``updater.errors`` classes with a hint; nothing partial is left behind):

- ``needed_size(board, repo, ref)``: what an image needs, before anything is written;
- ``provision_image(...)``: the partitioned image (board [disk]), its bmap (bmaptool format 2.0)
  and the initial U-Boot environment (inside the image, or ``IMAGE.env`` for a flash medium);
- ``provision_target(...)``: the same sysroot laid out in an already-mounted empty directory.

The image is built under temp names beside ``output`` (a hidden scratch directory holds the
sysroot tree) and renamed into place at the end: env image, bmap, then the image. Reproducible:
file systems, partition table and IDs depend only on the inputs and ``source_date_epoch``
(default SOURCE_DATE_EPOCH, else the commit's timestamp). docs/provisioning.md has the details.
"""

import hashlib
import os
import shutil

from .. import board as board_mod
from .. import fs
from ..errors import ConfigError, SpaceError, StorageError, UsageError
from ..objects import to_hex
from . import bmap, imagesize, sysrootseed
from .diskimage import ALIGN, TYPES, DiskImage, Partition, ext4_journal_ranges, stable_uuid

PROVISION_FORMAT = 1
RECORD_KEYS = ("format", "mode", "board", "commit", "version", "branch", "subject", "deployment", "signed_by",
               "trusted_keys", "remote", "image", "image_sha256", "image_size", "mapped_size", "bmap",
               "partitions", "env", "unit_values", "contents", "sysroot_needed", "source_date_epoch")
BMAP_SUFFIX = ".bmap"
ENV_SUFFIX = ".env"


def _epoch(source_date_epoch, commit):
    if source_date_epoch is not None:
        return int(source_date_epoch)
    env = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(env) if env.isdigit() else commit.timestamp


def _size(value, what):
    if value is None or isinstance(value, int):
        return value
    return board_mod.parse_size(str(value), what)


def _mib(n):
    return -(-n // ALIGN) * ALIGN


def needed_size(board, repo, ref, key_pub=(), inputs=None):
    """{"sysroot": bytes the sysroot file system needs, "image": smallest image size, "default":
    the size used without --size, "tally": what was counted} for provisioning ``ref``."""
    inp = inputs or sysrootseed.check_inputs(board, repo, ref, key_pub)
    t = imagesize.tally(inp.repo, inp.commit_id, extra_bytes=64 * 1024 + sum(len(k) for k in inp.keys.values()))
    fs_need = imagesize.ext4_bytes(t)
    disk = inp.board.disk
    root = disk.sysroot()
    fixed = disk.first_offset + (ALIGN if disk.table == "gpt" else 0)
    for p in disk.partitions:
        if p is not root:
            fixed += _mib(p.size or ALIGN)
    if root.size is not None and root.size < fs_need:
        raise ConfigError("provisioning %s onto board %s: its sysroot partition (%s) is %d bytes, the commit "
                          "needs %d (%d more)" % (to_hex(inp.commit_id)[:12], inp.board.name, root.name,
                                                  root.size, fs_need, fs_need - root.size),
                          "raise [partition.%s] size in %s" % (root.name, inp.board.source))
    image = fixed + (root.size if root.size is not None else fs_need)
    default = disk.size if disk.size is not None else fixed + _mib(2 * fs_need)
    return {"sysroot": fs_need, "image": image, "default": max(default, image), "tally": t.as_dict()}


def _check_space(directory, need, doing):
    free = fs.free_bytes(directory)
    if free < need:
        raise SpaceError("%s: %s has %d bytes free, provisioning needs about %d (%d more)"
                         % (doing, directory, free, need, need - free),
                         "free space there, or write the image to another file system")


def env_medium_chunks(board, images, chunk=1 << 20):
    """The bytes of an env medium image, in chunks: erased (0xff) flash or a zeroed file, with
    the env copies ``images`` [(offset, bytes)] at their offsets; ``board.env.medium_end()`` long."""
    env = board.env
    fill = bytes([0xFF if env.storage in ("cfi-nor", "mtd") else 0x00]) * chunk
    total = env.medium_end()
    pos = 0
    while pos < total:
        n = min(chunk, total - pos)
        buf = None
        for off, image in images:
            if off < pos + n and pos < off + len(image):
                buf = buf or bytearray(fill[:n])
                a, b = max(off, pos), min(off + len(image), pos + n)
                buf[a - pos:b - pos] = image[a - off:b - off]
        yield bytes(buf) if buf is not None else fill[:n]
        pos += n


def write_env_medium(path, board, images):
    """Write the env medium image to the new file ``path`` (fsync'd; removed again on failure);
    returns (sha256 hex, size)."""
    h = hashlib.sha256()

    def hashed():
        for data in env_medium_chunks(board, images):
            h.update(data)
            yield data

    fs.write_stream(path, hashed(), sync=True)
    return h.hexdigest(), board.env.medium_end()


def unit_env_image(board, env_file, unit_values, output):
    """Another unit's env image from an existing one (``env_file``, e.g. IMAGE.env): the same
    environment with ``unit_values`` set, written to ``output``; returns (sha256 hex, size).

    For boards whose env lives in flash every unit shares the disk image: provision once, then
    make one env image per unit with this (the contract variables cannot be changed here).
    """
    from .. import ubootenv

    board = sysrootseed.load_board(board)
    values = sysrootseed.check_unit_values(board, unit_values)
    env = board.env
    copies = [fs.read_at(env_file, off, env.size) for off in env.offsets()]
    parsed = ubootenv.parse(copies, env.flags)
    if not parsed.valid():
        raise ConfigError("reading the env image %s: %s" % (env_file, parsed.problem()),
                          "give an env image written by updater provision")
    variables = dict(parsed.variables)
    variables.update(values)
    images = sysrootseed.env_images(board, variables)
    output = os.path.abspath(output)
    try:
        return _env_file(output, board, images)
    except StorageError as err:
        raise _in_context(err, "writing the env image %s" % output, os.path.dirname(output))


def _env_file(output, board, images):
    """``write_env_medium`` to a temp name beside ``output``, renamed over it (nothing left on failure)."""
    tmp = fs.temp_name(os.path.dirname(output), os.path.basename(output)[:24])
    written = write_env_medium(tmp, board, images)
    try:
        fs.rename(tmp, output)
    except BaseException:
        fs.remove(tmp, missing_ok=True)
        raise
    fs.fsync_dir(os.path.dirname(output))
    return written


def _env_record(board, seeded, where, path=None, written=None):
    env = board.env
    names = board.boot.vars
    contract = dict((k, seeded["env"].get(names[k])) for k in ("current", "trial", "count", "limit", "failed"))
    return {"storage": env.storage, "device": env.device, "offsets": env.offsets(), "size": env.size,
            "redundant": env.redundant, "written_to": where, "file": path,
            "file_sha256": written[0] if written else None, "file_size": written[1] if written else None,
            "contract": contract,
            "fw_env_config": board_mod.fw_env_config(board, path or ("IMAGE" if where == "image" else "ENVFILE"))}


def _disk(board, inp, tree, size, epoch, boot_files):
    disk = board.disk
    key = "/".join((board.name, to_hex(inp.commit_id), str(size)))
    table = "gpt" if disk.table == "gpt" else "dos"
    disk_id = stable_uuid("disk", key) if table == "gpt" else "0x" + hashlib.sha256(key.encode()).hexdigest()[:8]
    img = DiskImage(table, disk_id=disk_id, epoch=epoch, first_offset=disk.first_offset, size=size)
    boot_parts = [p for p in disk.partitions if p.role == "boot" and p.fs == "vfat"]
    if boot_files and not boot_parts:
        raise ConfigError("provisioning boot files onto board %s: it has no FAT boot partition "
                          "(role = boot, fs = vfat)" % board.name, "add one to %s, or drop the boot files" % board.source)
    for p in disk.partitions:
        gpt_type, mbr_type = TYPES[p.type]
        kw = {"label": p.label, "bootable": p.bootable, "type": gpt_type if table == "gpt" else mbr_type,
              "uuid": stable_uuid("part", key, p.name), "fs_uuid": stable_uuid("fs", key, p.name),
              "hash_seed": stable_uuid("hash", key, p.name)}
        if p.role == "sysroot":
            if p.fs != "ext4":
                raise ConfigError("provisioning board %s: the sysroot partition must be ext4, got %s" % (board.name, p.fs))
            part = Partition(p.name, p.size, source=tree, fs="ext4", lazy_itable_init=True,
                             inode_ratio=imagesize.INODE_RATIO, **kw)
        elif p.fs == "vfat":
            part = Partition(p.name, p.size, fs="vfat", files=boot_files if p is boot_parts[0] else None, **kw)
        elif p.fs == "ext4":
            part = Partition(p.name, p.size, fs="ext4", lazy_itable_init=True, **kw)
        else:
            part = Partition(p.name, p.size, **kw)
        img.add(part)
    return img


def provision_image(board, repo, ref, output, size=None, unit_values=None, source_date_epoch=None,
                    progress=None, key_pub=(), remote="", branch=None, env_output=None, write_env=True,
                    boot_cmd=None, boot_files=None, scratch_dir=None, say=None):
    """Provision ``ref`` of repository ``repo`` for ``board`` into the image file ``output``.

    ``size``: bytes or text ("2G"); default the board's [disk] size, else room for two of this
    commit. ``unit_values``: {name: value} for this unit's U-Boot env (serial number, MAC).
    ``key_pub``: public key files the device trusts (checked against the commit's signature when
    the board requires signatures). ``remote``/``branch``: where the device pulls updates.
    ``env_output``: where a flash env image goes (default ``output`` + ".env"). ``write_env=False``:
    no env (boot.cmd then reads boot/updater-env.txt). ``boot_files``: {name: host path} for the
    board's FAT boot partition. ``progress(done, total)``: bytes of objects copied. ``say(text)``:
    status lines. Returns the record (RECORD_KEYS); writes ``output``, ``output``.bmap and maybe
    the env image, all or nothing.
    """
    say = say or (lambda text: None)
    output = os.path.abspath(output)
    out_dir = os.path.dirname(output)
    if not os.path.isdir(out_dir):
        raise UsageError("provisioning %s: the directory %s does not exist" % (output, out_dir))
    if os.path.isdir(output):
        raise UsageError("provisioning %s: it is a directory" % output, "give the path of the image file to write")
    sysrootseed.check_remote(remote)
    inp = sysrootseed.check_inputs(board, repo, ref, key_pub, branch)
    board = inp.board
    sysrootseed.initial_env(board, sysrootseed.check_unit_values(board, unit_values), require_defaults=write_env)
    epoch = _epoch(source_date_epoch, inp.commit)
    need = needed_size(board, repo, ref, inputs=inp)
    size = _size(size, "--size")
    if size is None:
        size = need["default"]
    if size % 512:
        raise UsageError("provisioning %s: the image size %d is not a multiple of 512 bytes" % (output, size))
    if size < need["image"]:
        raise UsageError("provisioning %s: an image of %d bytes is too small for commit %s on board %s: it needs "
                         "at least %d bytes (%d MiB), %d more" % (output, size, to_hex(inp.commit_id)[:12], board.name,
                                                                   need["image"], -(-need["image"] // ALIGN),
                                                                   need["image"] - size),
                         "pass --size %dM or more" % -(-need["image"] // ALIGN))
    env = board.env
    env_in_image = env.storage == "block" and env.device == board.disk.device
    env_path = None
    if write_env and not env_in_image:
        env_path = os.path.abspath(env_output or output + ENV_SUFFIX)
    staging = need["tally"]["blocks"] * imagesize.BLOCK
    _check_space(out_dir, 2 * staging + (env.medium_end() if env_path else 0) + (4 << 20),
                 "provisioning %s" % output)
    tag = "%d-%s" % (os.getpid(), os.urandom(4).hex())
    scratch = os.path.join(scratch_dir or out_dir, ".%s.provision-%s" % (os.path.basename(output), tag))
    temps = {"image": os.path.join(out_dir, ".%s.tmp-%s" % (os.path.basename(output), tag))}
    temps["bmap"] = temps["image"] + BMAP_SUFFIX
    if env_path:
        temps["env"] = os.path.join(os.path.dirname(env_path), ".%s.tmp-%s" % (os.path.basename(env_path), tag))
    try:
        os.makedirs(scratch)
        tree = os.path.join(scratch, "sysroot")
        os.mkdir(tree)
        seeded = sysrootseed.seed(tree, inp, remote, unit_values, epoch, boot_cmd, progress, say, write_env,
                                  need["tally"]["content_bytes"])
        img = _disk(board, inp, tree, size, epoch, boot_files)
        keep = _always_mapped(img, size)
        if write_env and env_in_image:
            for off, data in seeded["env_images"]:
                img.add_raw(off, data)
                start, end = env.span(off)
                keep.append((start, end - start))
        say("writing the image (%d MiB)" % (size >> 20))
        try:
            parts = img.write(temps["image"])
        except StorageError as err:
            if "Could not allocate" in str(err):  # the estimate was too low: mke2fs -d ran out of room
                raise SpaceError("provisioning %s: the sysroot file system is full: %s" % (output, err),
                                 "pass a larger --size (the estimate was %d bytes)" % need["image"])
            raise
        shutil.rmtree(scratch)
        for p in parts:
            if p.fs == "ext4":
                keep += ext4_journal_ranges(temps["image"], p.start)
        say("writing the bmap")
        scan = bmap.write_bmap(temps["image"], temps["bmap"], keep=keep)
        env_rec = None
        if env_path:
            written = write_env_medium(temps["env"], board, seeded["env_images"])
            env_rec = _env_record(board, seeded, "file", env_path, written)
        elif write_env:
            env_rec = _env_record(board, seeded, "image")
        else:
            env_rec = _env_record(board, seeded, None)
        if env_path:
            os.replace(temps["env"], env_path)
        os.replace(temps["bmap"], output + BMAP_SUFFIX)
        os.replace(temps["image"], output)
        fs.fsync_dir(out_dir)
    except BaseException as err:
        fs.remove_tree(scratch)
        for path in temps.values():
            fs.remove_tree(path)
        if isinstance(err, StorageError):
            raise _in_context(err, "provisioning %s" % output, out_dir)
        raise
    record = _record("image", inp, seeded, epoch, unit_values, need, env_rec, remote)
    record.update({"image": output, "image_sha256": scan["sha256"], "image_size": scan["image_size"],
                   "mapped_size": scan["mapped_bytes"], "bmap": output + BMAP_SUFFIX,
                   "partitions": [{"name": p.name, "index": i + 1, "start": p.start, "size": p.size, "fs": p.fs,
                                   "label": p.label, "uuid": p.uuid, "fs_uuid": p.fs_uuid if p.fs else None}
                                  for i, p in enumerate(parts)]})
    return record


def _always_mapped(img, size):
    """Byte ranges the bmap maps even if they were holes: the partition tables (a GPT entry array
    or an MBR is mostly zeros under its CRC; a medium's old bytes there would break it)."""
    if img.table == "gpt":
        return [(0, 34 * 512), (size - 33 * 512, 33 * 512)]
    return [(0, 512)]


def _in_context(err, doing, directory):
    """The storage error with what was being done in front, and a host-side hint for space."""
    text = str(err)
    if not text.startswith(doing):
        text = "%s: %s" % (doing, text)
    hint = err.hint
    if isinstance(err, SpaceError) or "no space left" in text.lower():
        hint = "free space in %s (nothing was left behind), or write the image to another file system" % directory
        return SpaceError(text, hint)
    return type(err)(text, hint)


def _record(mode, inp, seeded, epoch, unit_values, need, env_rec, remote):
    rec = dict((k, None) for k in RECORD_KEYS)
    rec.update({"format": PROVISION_FORMAT, "mode": mode, "board": inp.board.name, "commit": to_hex(inp.commit_id),
                "version": inp.commit.version, "branch": inp.branch, "subject": inp.commit.subject,
                "deployment": seeded["deployment"], "remote": remote or "",
                "signed_by": inp.signed_by, "trusted_keys": sorted(inp.keys),
                "env": env_rec, "unit_values": dict(unit_values or {}), "sysroot_needed": need["sysroot"],
                "contents": _contents(seeded),
                "source_date_epoch": epoch})
    return rec


def _contents(seeded):
    co = seeded.get("checkout") or {}
    return {"objects": seeded["copied"]["objects"], "object_bytes": seeded["copied"]["bytes"],
            "files": co.get("files", 0), "linked": co.get("linked", 0), "copied": co.get("copied", 0),
            "created_empty": co.get("created_empty", 0), "dirs": co.get("dirs", 0)}


def provision_target(board, repo, ref, target_dir, unit_values=None, source_date_epoch=None, progress=None,
                     key_pub=(), remote="", branch=None, env_output=None, write_env=True, boot_cmd=None, say=None):
    """Lay out the sysroot of ``ref`` in ``target_dir``, an already-mounted, empty root file system.

    Same inputs as ``provision_image``. The env goes to ``env_output`` when given (an image of the
    board's env medium); otherwise none is written and U-Boot's boot script finds the deployment
    through boot/updater-env.txt until the device's first env write. On failure everything this
    call created in ``target_dir`` is removed again.
    """
    say = say or (lambda text: None)
    target_dir = os.path.abspath(target_dir)
    if not os.path.isdir(target_dir):
        raise UsageError("provisioning into %s: it is not a directory" % target_dir, "mount the root file system there first")
    present = [n for n in os.listdir(target_dir) if n != "lost+found"]
    if present:
        raise UsageError("provisioning into %s: the directory is not empty (%s)" % (target_dir, ", ".join(sorted(present)[:5])),
                         "provision onto a freshly made file system")
    sysrootseed.check_remote(remote)
    inp = sysrootseed.check_inputs(board, repo, ref, key_pub, branch)
    sysrootseed.initial_env(inp.board, sysrootseed.check_unit_values(inp.board, unit_values),
                            require_defaults=write_env and bool(env_output))
    epoch = _epoch(source_date_epoch, inp.commit)
    need = needed_size(inp.board, repo, ref, inputs=inp)
    _check_space(target_dir, need["tally"]["blocks"] * imagesize.BLOCK, "provisioning into %s" % target_dir)
    try:
        seeded = sysrootseed.seed(target_dir, inp, remote, unit_values, epoch, boot_cmd, progress, say,
                                  write_env and bool(env_output), need["tally"]["content_bytes"])
        env_rec = _env_record(inp.board, seeded, None)
        if env_output and write_env:
            env_output = os.path.abspath(env_output)
            written = _env_file(env_output, inp.board, seeded["env_images"])
            env_rec = _env_record(inp.board, seeded, "file", env_output, written)
    except BaseException as err:
        for name in os.listdir(target_dir):
            if name != "lost+found":
                fs.remove_tree(os.path.join(target_dir, name))
        if isinstance(err, StorageError):
            raise _in_context(err, "provisioning into %s" % target_dir, target_dir)
        raise
    record = _record("target", inp, seeded, epoch, unit_values, need, env_rec, remote)
    record["target"] = target_dir
    return record
