"""U-Boot environment storage: a board's env area on a file, block device, MTD device or NOR flash.

The storage interface (all a backend implements; offsets are relative to the env medium):

    name                 text for messages (a path)
    erase_size           0 when writes need no erase (files, block devices), else the erase
                         block size in bytes (NOR/NAND flash)
    read(offset, size)   -> exactly ``size`` bytes, or StorageError
    write(offset, data)  durable when it returns (fsync'd). On flash the range must have been
                         erased first: programming only clears bits (1 -> 0), so writing 0xff
                         leaves a byte unchanged and writing 0x00 over anything gives 0x00
    erase(offset, size)  flash only: set the range to 0xff; offset and size are multiples of
                         erase_size

Backends here: FileStorage (files and block devices, through updater.fs), MtdStorage (/dev/mtdN,
MEMERASE ioctl) and MemoryStorage (RAM: tests and demos, optionally with NOR semantics). For
``storage = cfi-nor`` (QEMU's virt flash reached through /dev/mem) the module updater.cfiflash
provides ``open_storage(device, base, sector_size)`` returning such a backend.

EnvStore writes the way U-Boot's own saveenv does, never weaker:
- a redundant env is written to the copy NOT in force, with the flags advanced (counter + 1 mod
  256, or 1 = active on boolean/NOR boards); the copy in force is not touched until the new copy
  has been written, synced and read back identical. Only then, on boolean boards, its flags byte
  is cleared to 0 (obsolete) - the one-byte switch U-Boot's flash driver makes too;
- every change goes into one image and one write;
- when no copy is valid it reports why and refuses to write unless forced; a forced write starts
  from the board's default environment (what U-Boot itself runs on in that case), not from
  nothing, so boot commands are not lost.
A single-copy env has no such protection: a torn write leaves U-Boot on its defaults.
"""

from . import fs, ubootenv
from .errors import EnvError, StorageError, UnsupportedError

LIBUBOOTENV_LOCK = "/var/lock/fw_printenv.lock"


class FileStorage:
    """A file or block device (eMMC, SD card, disk or flash image): in-place writes, no erase."""

    erase_size = 0

    def __init__(self, path):
        self.path = path
        self.name = path

    def read(self, offset, size):
        return fs.read_at(self.path, offset, size)

    def write(self, offset, data):
        fs.write_at(self.path, offset, data, sync=True)

    def erase(self, offset, size):
        raise StorageError("erasing %s: a file or block device has no erase operation" % self.path)


class MtdStorage(FileStorage):
    """An MTD character device (/dev/mtdN, NOR or NAND flash): erase blocks before writing."""

    def __init__(self, path, erase_size):
        FileStorage.__init__(self, path)
        self.erase_size = erase_size

    def erase(self, offset, size):
        fs.erase_mtd(self.path, offset, size)


class MemoryStorage:
    """Bytes in RAM behind the storage interface; ``nor=True`` gives flash semantics."""

    def __init__(self, size, fill=0xFF, erase_size=0, nor=False, name="<memory>"):
        self.buf = bytearray(bytes([fill]) * size)
        self.erase_size = erase_size
        self.nor = nor
        self.name = name
        self.writes = 0

    def _check(self, offset, size, doing):
        if offset < 0 or offset + size > len(self.buf):
            raise StorageError("%s %d bytes at 0x%x of %s: outside its %d bytes"
                               % (doing, size, offset, self.name, len(self.buf)))

    def read(self, offset, size):
        self._check(offset, size, "reading")
        return bytes(self.buf[offset:offset + size])

    def write(self, offset, data):
        self._check(offset, len(data), "writing")
        self.writes += 1
        if not self.nor:
            self.buf[offset:offset + len(data)] = data
            return
        # NOR programming only clears bits: AND the whole span at once (big-int, not per byte)
        n = len(data)
        old = int.from_bytes(bytes(self.buf[offset:offset + n]), "big")
        self.buf[offset:offset + n] = (old & int.from_bytes(bytes(data), "big")).to_bytes(n, "big")

    def erase(self, offset, size):
        self._check(offset, size, "erasing")
        if not self.erase_size or offset % self.erase_size or size % self.erase_size:
            raise StorageError("erasing %d bytes at 0x%x of %s: not whole erase blocks of %d"
                               % (size, offset, self.name, self.erase_size))
        self.buf[offset:offset + size] = b"\xff" * size


def open_storage(layout, env_file=None):
    """The storage backend for an EnvLayout; ``env_file`` stands for the medium (an image file)."""
    if env_file:
        return FileStorage(env_file)
    if layout.storage in ("file", "block"):
        return FileStorage(layout.device)
    if layout.storage == "mtd":
        return MtdStorage(layout.device, layout.sector_size)
    if layout.storage == "cfi-nor":
        try:
            from . import cfiflash
        except ImportError:
            raise UnsupportedError(
                "opening the env flash at 0x%x through %s: this updater has no CFI flash backend"
                % (layout.base, layout.device),
                "pass --env-file with an image of the flash bank, or install updater/cfiflash.py")
        return cfiflash.open_storage(layout.device, layout.base, layout.sector_size)
    raise UnsupportedError("opening env storage: unknown kind '%s'" % layout.storage)


class EnvStore:
    """Read and write one board's U-Boot environment through a storage backend."""

    def __init__(self, layout, storage, defaults=None, lock_path=None):
        self.layout = layout
        self.storage = storage
        self.defaults = defaults
        self.lock_path = lock_path

    def where(self):
        offs = " and ".join("0x%x" % o for o in self.layout.offsets())
        return "the U-Boot environment at %s of %s" % (offs, self.storage.name)

    def load(self):
        """A ubootenv.Env: both copies read and judged as U-Boot would."""
        images = [self.storage.read(off, self.layout.size) for off in self.layout.offsets()]
        return ubootenv.parse(images, self.layout.flags)

    def load_valid(self):
        """Like load, but EnvError when no copy is valid."""
        env = self.load()
        if not env.valid():
            raise EnvError("reading %s: %s" % (self.where(), env.problem()), self._bad_hint())
        return env

    def read(self):
        """The variables in force; EnvError when no copy is valid."""
        return self.load_valid().variables

    def update(self, changes, force=False):
        """Apply ``changes`` ({name: value}, None or "" deletes) in one write; the new variables."""
        return self._locked(self._update, changes, force)

    def replace(self, variables, force=False):
        """Write exactly ``variables`` as the new environment (one write); they are returned."""
        return self._locked(self._replace, variables, force)

    # --- internals -------------------------------------------------------------------------
    def _locked(self, fn, arg, force):
        if not self.lock_path:
            return fn(arg, force)
        lock = fs.FileLock(self.lock_path, "the U-Boot environment").acquire()
        try:
            return fn(arg, force)
        finally:
            lock.release()

    def _bad_hint(self):
        base = "the board's default environment" if self.defaults else "nothing but the given variables"
        return ("U-Boot runs on its built-in defaults until a valid env is saved; 'updater env set "
                "--force NAME=VALUE' writes one from %s" % base)

    def _base(self, env, force):
        if env.valid():
            return env.variables
        if not force:
            raise EnvError("writing %s: refusing, %s" % (self.where(), env.problem()), self._bad_hint())
        return dict(self.defaults or {})

    def _update(self, changes, force):
        env = self.load()
        new = ubootenv.apply_changes(self._base(env, force), changes)
        self._write(env, new)
        return new

    def _replace(self, variables, force):
        env = self.load()
        self._base(env, force)
        self._write(env, variables)
        return dict(variables)

    def _write(self, env, variables):
        lay = self.layout
        index, flags = env.target()
        if lay.redundant and env.active is not None and index == env.active:
            raise EnvError("writing %s: internal error, the target is the copy in force" % self.where())
        image = ubootenv.encode(variables, lay.size, lay.redundant, flags or 0, lay.pad)
        offset = lay.offsets()[index]
        self._program(offset, image)
        back = self.storage.read(offset, lay.size)
        if back != image:
            raise EnvError("writing %s: copy %d reads back different from what was written"
                           % (self.where(), index + 1),
                           "the medium may be failing or write-protected; the previous copy is still in force")
        if lay.redundant and lay.flags == ubootenv.FLAGS_BOOLEAN and env.active is not None:
            # The switch: clear the old copy's flags byte (1 -> 0 needs no erase on flash).
            self.storage.write(lay.offsets()[env.active] + 4, bytes([ubootenv.FLAG_OBSOLETE]))
        self.last_write = {"copy": index + 1, "offset": offset, "flags": flags}
        return index

    def _program(self, offset, image):
        es = self.storage.erase_size
        if not es:
            self.storage.write(offset, image)
            return
        if offset % es:
            raise EnvError("writing %s: offset 0x%x is not on an erase block of 0x%x" % (self.where(), offset, es))
        end = offset + (len(image) + es - 1) // es * es
        tail = self.storage.read(offset + len(image), end - offset - len(image))
        self.storage.erase(offset, end - offset)
        if tail.count(b"\xff") == len(tail):
            tail = b""
        self.storage.write(offset, image + tail)


def open_env(board, env_file=None, storage=None, lock=False):
    """An EnvStore for a Board: its device (or ``env_file``, or a given storage) and defaults."""
    from . import board as board_mod

    if storage is None:
        storage = open_storage(board.env, env_file)
    lock_path = None
    if lock and not env_file and fs.is_dir(fs.dirname(LIBUBOOTENV_LOCK)):
        lock_path = LIBUBOOTENV_LOCK
    return EnvStore(board.env, storage, board_mod.default_env(board), lock_path)
