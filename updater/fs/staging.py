"""File-system layer: batched durable renames (one file-system sync for many new files)."""

from .base import dirname, lstat
from .write import fsync_dir, remove, rename, sync_fs

class Staging:
    """Batched durable renames: add(temp, final) many times, then commit() once.

    commit() syncs the file system once, renames every temp onto its final name (a temp whose
    final name already exists is dropped: content-addressed objects are immutable), then fsyncs
    each directory that received an entry. Until commit() nothing is visible under a final name.
    """

    def __init__(self, sync_path):
        self.sync_path = sync_path
        self.pending = []

    def add(self, temp, final):
        self.pending.append((temp, final))

    def discard(self):
        for temp, _ in self.pending:
            remove(temp, missing_ok=True)
        self.pending = []

    def commit(self):
        if not self.pending:
            return 0
        sync_fs(self.sync_path)
        dirs = {}
        for temp, final in self.pending:
            if lstat(final) is not None:
                remove(temp)
                continue
            rename(temp, final)
            dirs[dirname(final)] = True
        for directory in sorted(dirs):
            fsync_dir(directory)
        count = len(self.pending)
        self.pending = []
        return count

