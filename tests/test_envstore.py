"""Env storage: writes go to the copy not in force, in one write, and survive power cuts."""

import pytest

from updater import board as board_mod
from updater import envstore, fs
from updater import ubootenv as u
from updater.errors import EnvError, StorageError

SECTOR = 0x200
SIZE = 0x1000
OLD = {"bootcmd": "run distro_bootcmd", "upd_current": "old.0", "pad": "p" * 300}
NEW = {"bootcmd": "run distro_bootcmd", "upd_current": "new.0", "upd_trial": "t.1"}


def layout(redundant=True, flags="counter", storage="block", size=SIZE, sector=SECTOR, pad="0x00"):
    text = """
[board]
name = t
arch = arm64
[env]
storage = %s
device = /dev/fake
offset = 0x0
size = 0x%x
sector_size = 0x%x
pad = %s
%s
[boot]
kernel = boot/vmlinuz
boot_command = booti
root = /dev/vda1
[disk]
table = gpt
device = /dev/vda
first_offset = 1M
[partition.sysroot]
index = 1
size = rest
fs = ext4
role = sysroot
""" % (storage if storage != "cfi-nor" else "cfi-nor\nbase = 0x04000000", size, sector, pad,
       ("redundant_offset = 0x%x\nflags = %s" % (0x4000, flags)) if redundant else "")
    return board_mod.parse(text, "<test>").env


class PowerCut(Exception):
    pass


class TornStorage(envstore.MemoryStorage):
    """Memory storage that loses power after ``budget`` more bytes are programmed or erased."""

    def __init__(self, *args, **kw):
        envstore.MemoryStorage.__init__(self, *args, **kw)
        self.budget = None

    def _spend(self, n):
        if self.budget is None:
            return n
        if self.budget < n:
            done, self.budget = self.budget, 0
            return done
        self.budget -= n
        return n

    def write(self, offset, data):
        n = self._spend(len(data))
        envstore.MemoryStorage.write(self, offset, data[:n])
        if n < len(data):
            raise PowerCut("power cut after %d of %d bytes" % (n, len(data)))

    def erase(self, offset, size):
        n = self._spend(size)
        if n < size:  # a half-erased region: the first n bytes are 0xff
            self.buf[offset:offset + n] = b"\xff" * n
            raise PowerCut("power cut during erase")
        envstore.MemoryStorage.erase(self, offset, size)


def medium(nor=False, erase_size=0):
    return TornStorage(0x8000, fill=0xFF, erase_size=erase_size, nor=nor)


OLDER = dict(OLD, upd_current="older.0", fill="q" * (SIZE - 600))


def two_writes(store):
    """Leave OLD in force with both copies written; the other holds OLDER, which fills it."""
    store.update(OLDER, force=True)
    store.replace(OLD)
    assert store.read() == OLD


def in_force_after_cut(lay, st, target):
    """The env in force after a cut: OLD, unless the cut copy happens to hold the whole new image."""
    got = envstore.EnvStore(lay, st).read()
    whole = st.read(lay.offsets()[target], SIZE)[5:] == u.encode(NEW, SIZE, True, 0, lay.pad)[5:]
    return got, whole


# --- where writes go -------------------------------------------------------------------------
def test_redundant_writes_alternate_and_advance_flags():
    lay = layout()
    st = medium()
    store = envstore.EnvStore(lay, st)
    store.update({"a": "1"}, force=True)
    env = store.load()
    first = env.active
    for i in range(2, 6):
        before = st.read(lay.offsets()[env.active], SIZE)
        store.update({"a": str(i)})
        new = store.load()
        assert new.active == 1 - env.active
        assert new.copies[new.active].flags == (env.copies[env.active].flags + 1) & 0xFF
        assert st.read(lay.offsets()[env.active], SIZE) == before  # the old copy was not touched
        env = new
    assert store.read() == {"a": "5"}
    assert first == 0


def test_counter_wraps_255_to_0():
    lay = layout()
    st = medium()
    st.write(0, u.encode({"v": "255"}, SIZE, True, 255))
    st.write(0x4000, u.encode({"v": "254"}, SIZE, True, 254))
    store = envstore.EnvStore(lay, st)
    assert store.read() == {"v": "255"}
    store.update({"v": "next"})
    env = store.load()
    assert env.active == 1 and env.copies[1].flags == 0 and env.variables == {"v": "next"}


def test_boolean_flags_on_nor_clear_the_old_copy_last():
    lay = layout(flags="boolean", storage="mtd", sector=0x1000)
    st = medium(nor=True, erase_size=0x1000)
    store = envstore.EnvStore(lay, st)
    store.update({"a": "1"}, force=True)
    assert [c.flags for c in store.load().copies] == [1, 0xFF]
    store.update({"a": "2"})
    env = store.load()
    assert [c.flags for c in env.copies] == [0, 1] and env.variables == {"a": "2"}
    store.update({"a": "3"})
    env = store.load()
    assert [c.flags for c in env.copies] == [1, 0] and env.variables == {"a": "3"}


def test_all_changes_in_one_write():
    st = medium()
    store = envstore.EnvStore(layout(), st)
    two_writes(store)
    n = st.writes
    store.update({"upd_current": "x.0", "upd_trial": "y.0", "upd_count": "0", "pad": None})
    assert st.writes == n + 1
    assert store.read() == {"bootcmd": "run distro_bootcmd", "upd_current": "x.0", "upd_trial": "y.0", "upd_count": "0"}


def test_flash_erase_preserves_the_rest_of_the_sector():
    lay = layout(redundant=False, storage="mtd", size=0x300, sector=0x400)
    st = medium(nor=True, erase_size=0x400)
    st.buf[0x300:0x400] = bytes(range(256))  # someone else's data after the env in its sector
    store = envstore.EnvStore(lay, st)
    store.update({"a": "1"}, force=True)
    store.update({"a": "2"})
    assert store.read() == {"a": "2"}
    assert st.read(0x300, 0x100) == bytes(range(256))


# --- refusing and forcing ----------------------------------------------------------------------
def test_both_bad_refuses_then_force_starts_from_defaults():
    st = medium()
    store = envstore.EnvStore(layout(), st, defaults={"bootcmd": "run distro_bootcmd", "x": "default"})
    with pytest.raises(EnvError, match="both copies fail their CRC") as err:
        store.read()
    assert "--force" in err.value.hint
    with pytest.raises(EnvError, match="refusing"):
        store.update({"a": "1"})
    assert st.writes == 0
    assert store.update({"a": "1", "x": ""}, force=True) == {"bootcmd": "run distro_bootcmd", "a": "1"}
    assert store.read() == {"bootcmd": "run distro_bootcmd", "a": "1"}


def test_malformed_copy_in_force_is_refused():
    st = medium()
    lay = layout(redundant=False)
    data = b"a=" + b"x" * (SIZE - 4 - 3) + b"\0"  # passes its CRC, lacks the terminator
    st.write(0, u.crc32(data).to_bytes(4, "little") + data)
    store = envstore.EnvStore(lay, st)
    with pytest.raises(EnvError, match="no terminator"):
        store.update({"b": "1"})


class ReadOnly(envstore.MemoryStorage):
    def write(self, offset, data):
        self.writes += 1  # a write-protected eMMC that acknowledges and drops writes


def test_read_back_mismatch_is_an_error_and_the_old_copy_stays():
    lay = layout(flags="boolean")
    st = ReadOnly(0x8000)
    st.buf[0:SIZE] = u.encode(OLD, SIZE, True, 1)
    store = envstore.EnvStore(lay, st)
    with pytest.raises(EnvError, match="reads back different"):
        store.update({"a": "1"})
    assert st.writes == 1  # the obsolete mark on the old copy was never attempted
    assert store.read() == OLD


# --- power cuts ----------------------------------------------------------------------------------
CASES = [("counter", False, 0), ("boolean", False, 0), ("boolean", True, SECTOR), ("counter", True, SECTOR)]


@pytest.mark.parametrize("flags,nor,erase", CASES)
def test_write_torn_at_every_sector_boundary_keeps_the_previous_env(flags, nor, erase):
    lay = layout(flags=flags, storage="mtd" if nor else "block")
    cuts = list(range(0, SIZE + (SIZE if erase else 0), SECTOR)) + [5, SECTOR + 77, SIZE - 1]
    kept_old = 0
    for cut in cuts:
        st = medium(nor=nor, erase_size=erase)
        store = envstore.EnvStore(lay, st)
        two_writes(store)
        active = store.load().active
        active_bytes = st.read(lay.offsets()[active], SIZE)
        st.budget = cut
        with pytest.raises(PowerCut):
            store.replace(NEW)
        st.budget = None
        got, whole = in_force_after_cut(lay, st, 1 - active)
        if whole:  # only the trailing zeros were cut, and they were zeros already
            assert got == NEW and cut >= SIZE - SECTOR, "cut after %d bytes" % cut
        else:
            assert got == OLD, "cut after %d bytes" % cut
            kept_old += 1
        assert st.read(lay.offsets()[active], SIZE) == active_bytes
    assert kept_old >= len(cuts) - 2


@pytest.mark.parametrize("nor", [False, True])
def test_boolean_cut_between_new_copy_and_obsolete_mark(nor):
    lay = layout(flags="boolean", storage="mtd" if nor else "block")
    for first_active in (0, 1):
        st = medium(nor=nor, erase_size=SECTOR if nor else 0)
        store = envstore.EnvStore(lay, st)
        two_writes(store)
        if store.load().active != first_active:
            store.replace(OLD)  # every write moves the env to the other copy
        assert store.load().active == first_active and store.read() == OLD
        written = SIZE + (SIZE if nor else 0)  # erase + program the new copy
        st.budget = written  # the new copy is complete, the 1-byte switch is cut
        with pytest.raises(PowerCut):
            store.replace(NEW)
        st.budget = None
        got = envstore.EnvStore(lay, st).read()
        # Equal flags (1, 1): U-Boot takes copy 1, which is either env, never a mix.
        assert got == (NEW if first_active == 1 else OLD)
        assert [c.flags for c in envstore.EnvStore(lay, st).load().copies] == [1, 1]


def test_single_copy_torn_write_loses_the_env_as_documented():
    lay = layout(redundant=False)
    st = medium()
    store = envstore.EnvStore(lay, st)
    store.update(OLDER, force=True)
    st.budget = SECTOR
    with pytest.raises(PowerCut):
        store.replace(NEW)
    st.budget = None
    assert not envstore.EnvStore(lay, st).load().valid()


def test_hook_crash_before_write_on_a_file(tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * 0x8000)
    lay = layout()
    store = envstore.EnvStore(lay, envstore.FileStorage(str(img)))
    two_writes(store)
    seen = []

    def hook(op, path):
        seen.append(op)
        if op == "write_at":
            raise PowerCut(path)

    fs.set_hook(hook)
    try:
        with pytest.raises(PowerCut):
            store.update(NEW)
    finally:
        fs.set_hook(None)
    assert seen == ["write_at"]
    assert store.read() == OLD


# --- backends --------------------------------------------------------------------------------------
def test_file_storage_errors_name_the_file(tmp_path):
    st = envstore.FileStorage(str(tmp_path / "missing.img"))
    with pytest.raises(StorageError, match="missing.img"):
        st.read(0, 16)
    short = tmp_path / "short.img"
    short.write_bytes(b"\0" * 10)
    with pytest.raises(StorageError, match="only 10 bytes"):
        envstore.FileStorage(str(short)).read(0, 16)


def test_mtd_erase_on_a_regular_file_fails_cleanly(tmp_path):
    path = tmp_path / "notmtd"
    path.write_bytes(b"\0" * 4096)
    with pytest.raises(StorageError, match="erasing 4096 bytes at offset 0x0"):
        envstore.MtdStorage(str(path), 4096).erase(0, 4096)


def test_memory_storage_bounds_and_erase_alignment():
    st = envstore.MemoryStorage(1024, erase_size=256, nor=True)
    with pytest.raises(StorageError):
        st.read(1000, 100)
    with pytest.raises(StorageError):
        st.erase(10, 256)
    st.write(0, b"\x0f")
    st.write(0, b"\xf0")
    assert st.read(0, 1) == b"\x00"  # programming only clears bits
    st.erase(0, 256)
    assert st.read(0, 1) == b"\xff"


def test_open_storage_kinds(tmp_path):
    assert isinstance(envstore.open_storage(layout()), envstore.FileStorage)
    mtd = envstore.open_storage(layout(storage="mtd"))
    assert isinstance(mtd, envstore.MtdStorage) and mtd.erase_size == SECTOR
    nor = layout(redundant=False, storage="cfi-nor")
    assert envstore.open_storage(nor, str(tmp_path / "flash.img")).erase_size == 0


def test_lock_is_taken_and_released(tmp_path):
    st = medium()
    lock = str(tmp_path / "fw_printenv.lock")
    store = envstore.EnvStore(layout(), st, lock_path=lock)
    store.update({"a": "1"}, force=True)
    again = fs.FileLock(lock, "test").acquire(wait=False)
    again.release()
