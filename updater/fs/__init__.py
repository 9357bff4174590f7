"""The file-system layer: the only part of the device core that touches the file system.

Everything else works on bytes and calls ``updater.fs`` for I/O, so durability rules live in
one place and a fault-injection hook (``set_hook``) sees every durable operation in order.

Durable write rule: temp file in the same directory, fsync, rename, fsync the directory.
Batches (``Staging``) write many temp files, sync the file system once, then rename each and
fsync each directory they touched (OSTree found per-object fsync 40x slower than one syncfs).

Runs on CPython and MicroPython. MicroPython's unix port lacks link, symlink, readlink, lstat,
chmod, chown, xattrs and fsync: hard links fall back to copies, metadata is not applied, fsync
becomes flush, and operations that cannot be emulated raise UnsupportedError.

Parts: base (platform facts, errors, hook, paths, reads), write (durable writes, links,
removal), rawio (offset I/O for env areas), physmem (/dev/mem words for NOR flash),
staging (batched renames), lock (flock), tty (a serial line for ``updater receive``; imported
as ``updater.fs.tty`` by the code that needs it).
"""

from .base import *  # noqa: F401,F403
from .base import set_hook  # noqa: F401
from .lock import FileLock  # noqa: F401
from .physmem import PhysMap  # noqa: F401
from .rawio import erase_mtd, read_at, write_at  # noqa: F401
from .staging import Staging  # noqa: F401
from .write import *  # noqa: F401,F403
