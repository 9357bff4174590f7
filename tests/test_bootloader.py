"""The boot contract: simulate_boot (boot.cmd's state machine) and the file and U-Boot backends."""

import pytest

from updater import board as board_mod
from updater import bootloader as bl
from updater import envstore
from updater import ubootenv as u
from updater.errors import EnvError, FormatError, UsageError


def contract(current="a.0", trial="", count="", limit="", failed=""):
    return {"current": current, "trial": trial, "count": count, "limit": limit, "failed": failed}


def keys(c):
    return dict((k, c[k]) for k in bl.CONTRACT_KEYS)


# --- simulate_boot -------------------------------------------------------------------------------
def test_no_trial_boots_current_and_changes_nothing():
    target, new = bl.simulate_boot(contract(count="0", limit="3"))
    assert target == "a.0"
    assert bl.changes_between(contract(count="0", limit="3"), new) == {}


def test_trial_counts_then_rolls_back_after_the_limit():
    c = contract(trial="b.0", count="0", limit="2")
    booted = []
    for _ in range(4):
        target, c = bl.simulate_boot(c)
        booted.append((target, c["count"], c["trial"], c["failed"]))
    assert booted == [("b.0", 1, "b.0", ""), ("b.0", 2, "b.0", ""), ("a.0", 0, "", "b.0"), ("a.0", 0, "", "b.0")]


@pytest.mark.parametrize("limit,attempts", [("1", 1), ("9", 9), ("", 3), ("0", 3), ("x", 3), ("12", 3)])
def test_limit_digit_else_three(limit, attempts):
    c = contract(trial="b.0", count="0", limit=limit)
    n = 0
    while True:
        target, c = bl.simulate_boot(c)
        if target != "b.0":
            break
        n += 1
    assert n == attempts and c["failed"] == "b.0"


@pytest.mark.parametrize("count,first", [("", "b.0"), ("0", "b.0"), ("2", "b.0"), ("3", "a.0"), ("x", "a.0"),
                                         ("10", "a.0"), ("-1", "a.0"), ("a", "a.0")])
def test_count_digit_empty_is_zero_else_exhausted(count, first):
    target, new = bl.simulate_boot(contract(trial="b.0", count=count, limit="3"))
    assert target == first
    if first == "a.0":
        assert keys(new) == {"current": "a.0", "trial": "", "count": 0, "limit": 3, "failed": "b.0"}


def test_try_order_when_files_do_not_load():
    c = contract(trial="b.0", count="0", limit="3", failed="old.0")
    assert bl.simulate_boot(c, lambda n: n != "b.0")[0] == "a.0"  # attempt counted, current boots
    assert bl.simulate_boot(c, lambda n: n != "b.0")[1]["count"] == 1
    assert bl.simulate_boot(c, lambda n: n == "old.0")[0] == "old.0"  # last resort: failed
    assert bl.simulate_boot(c, lambda n: False)[0] is None
    given_up = contract(trial="b.0", count="3", limit="3")
    assert bl.simulate_boot(given_up, lambda n: n != "a.0")[0] == "b.0"  # the given-up trial, last
    assert bl.simulate_boot(contract(failed="f.0"), lambda n: n != "a.0")[0] == "f.0"
    assert bl.simulate_boot(contract(current=""))[0] is None


def test_lost_environment_uses_the_fallback_file_values_without_saving():
    lost = contract(current="")
    target, new = bl.simulate_boot(lost, fallback={"current": "a.0", "limit": "3"})
    assert target == "a.0"
    assert bl.changes_between(lost, new) == {}
    # Only when both current and trial are empty.
    target, _ = bl.simulate_boot(contract(current="", trial="b.0"), fallback={"current": "a.0"})
    assert target == "b.0"


def test_read_results_feed_back_with_their_raw_text():
    read = bl.contract_from_raw({"current": "a.0", "trial": "b.0", "count": "x", "limit": "3"})
    assert read["count"] is None  # invalid digit
    target, _ = bl.simulate_boot(read)
    assert target == "a.0"  # the stored "x" counts as exhausted, not as 0


def test_encode_changes_validates():
    assert bl.encode_changes({"trial": "b.0", "count": 0, "limit": 3, "failed": None}) == \
        {"trial": "b.0", "count": "0", "limit": "3", "failed": None}
    for bad in ({"count": 10}, {"limit": 0}, {"count": "1x"}, {"trial": "has space"}, {"trial": "a=b"},
                {"current": "x" * 200}, {"nope": "1"}, {"bootargs": "a\nb"}, {"count": True}):
        with pytest.raises(UsageError):
            bl.encode_changes(bad)


# --- FileBootloader ------------------------------------------------------------------------------
def test_file_backend_lifecycle_with_boot_once(tmp_path):
    path = tmp_path / "bootenv"
    f = bl.FileBootloader(str(path))
    assert keys(f.read()) == {"current": "", "trial": "", "count": 0, "limit": None, "failed": ""}
    f.write({"current": "a.0", "limit": 2})
    f.write({"trial": "b.0", "count": 0})
    assert path.read_text() == "# updater boot contract, format 1\ncount=0\ncurrent=a.0\nlimit=2\ntrial=b.0\n"
    assert [bl.boot_once(f, lambda n: n != "b.0") for _ in range(3)] == ["a.0", "a.0", "a.0"]
    assert keys(f.read()) == {"current": "a.0", "trial": "", "count": 0, "limit": 2, "failed": "b.0"}
    f.write({"failed": None, "trial": "c.0", "count": 0})
    assert bl.boot_once(f) == "c.0"
    f.write({"current": "c.0", "trial": None, "count": 0})  # what mark-good does, in one write
    assert bl.boot_once(f) == "c.0" and f.read()["trial"] == ""


def test_file_backend_rejects_foreign_content(tmp_path):
    path = tmp_path / "bootenv"
    path.write_text("current=a.0\n")
    with pytest.raises(FormatError, match="first line"):
        bl.FileBootloader(str(path)).read()
    path.write_text(bl.FILE_HEADER + "\nbootcmd=reset\n")
    with pytest.raises(FormatError, match="unexpected line"):
        bl.FileBootloader(str(path)).read()


# --- UBootBootloader -------------------------------------------------------------------------------
@pytest.fixture
def qemu():
    board = board_mod.load("qemu-arm64")
    storage = envstore.MemoryStorage(0x40000 * 2, fill=0xFF)
    return board, storage, bl.UBootBootloader(board, storage=storage)


def test_uboot_backend_on_blank_flash_refuses_then_forced_write_keeps_defaults(qemu):
    board, storage, b = qemu
    state = b.read()
    assert not state["env_ok"] and "erased" in state["problem"]
    assert keys(state) == {"current": "", "trial": "", "count": 0, "limit": None, "failed": ""}
    with pytest.raises(EnvError, match="refusing"):
        b.write({"current": "a.0"})
    assert storage.writes == 0
    b.write({"current": "a.0", "limit": 3}, force=True)
    assert storage.writes == 1
    env = u.parse(storage.read(0, 0x40000)).variables
    assert env["bootcmd"] == "run distro_bootcmd"  # U-Boot's defaults survive
    assert env["upd_current"] == "a.0" and env["upd_limit"] == "3"
    assert env["upd_bootargs"] == "console=ttyAMA0,115200 rootwait=10 panic=5"
    assert env["upd_kernel"] == "boot/vmlinuz" and env["upd_initrd"] == "boot/initrd.img"
    assert "upd_fdt" not in env


def test_uboot_backend_one_write_per_change_and_other_variables_kept(qemu):
    board, storage, b = qemu
    b.write({"current": "a.0", "limit": 3}, force=True)
    store = envstore.EnvStore(board.env, storage)
    store.update({"custom": "keep me"})
    n = storage.writes
    b.write({"trial": "b.0", "count": 0, "failed": None})
    assert storage.writes == n + 1
    state = b.read()
    assert state["env_ok"] and keys(state) == {"current": "a.0", "trial": "b.0", "count": 0, "limit": 3, "failed": ""}
    assert store.read()["custom"] == "keep me"
    assert bl.boot_once(b) == "b.0" and b.read()["count"] == 1


def test_uboot_backend_uses_the_board_variable_names(tmp_path):
    src = open(board_mod.find("beaglebone-black")).read().replace("attempt_limit = 3", "attempt_limit = 3\nvar_trial = my_trial")
    conf = tmp_path / "custom.conf"
    conf.write_text(src.replace("name = beaglebone-black", "name = custom"))
    board = board_mod.load(str(conf))
    storage = envstore.MemoryStorage(0x2A0000, fill=0)
    b = bl.UBootBootloader(board, storage=storage)
    b.write({"trial": "b.0"}, force=True)
    env = envstore.EnvStore(board.env, storage).read()
    assert env["my_trial"] == "b.0" and "upd_trial" not in env
    assert b.read()["trial"] == "b.0"


def test_for_sysroot_picks_the_backend(tmp_path):
    class Cfg:
        bootloader = "file"
        board = "qemu-arm64"

    assert isinstance(bl.for_sysroot(str(tmp_path), Cfg()), bl.FileBootloader)
    Cfg.bootloader = "uboot"
    b = bl.for_sysroot(str(tmp_path), Cfg(), env_file=str(tmp_path / "flash.img"))
    assert isinstance(b, bl.UBootBootloader) and b.board.name == "qemu-arm64"
