"""Board configs: the shipped boards, every invalid-config data file, lookup, fw_env.config export."""

import os
import shutil
import subprocess
import sys

import pytest

from updater import board as board_mod
from updater.errors import ConfigError, NotFoundError, UnsupportedError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INVALID = os.path.join(ROOT, "tests", "data", "boards-invalid")
SHIPPED = ("qemu-arm64", "qemu-arm", "beaglebone-black")


@pytest.mark.parametrize("name", sorted(os.listdir(INVALID)))
def test_invalid_board_configs(name):
    path = os.path.join(INVALID, name)
    with open(path) as f:
        first = f.readline()
        text = first + f.read()
    assert first.startswith("# ") and " -- expect: " in first, "first line must say why: " + first
    expect = first.split(" -- expect: ", 1)[1].strip()
    with pytest.raises(ConfigError) as err:
        board_mod.parse(text, path)
    assert expect in str(err.value), "%s: %s" % (name, err.value)
    assert path in str(err.value)  # errors name the file


def test_invalid_files_differ_from_a_valid_base_only_where_they_say():
    # The data files are variations of one valid config: prove the base itself is valid.
    with open(os.path.join(INVALID, "unknown-key.conf")) as f:
        text = f.read().replace("sise = 0x20000\n", "")
    b = board_mod.parse(text, "base")
    assert b.env.redundant and b.name == "test-board"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_boards_load(name):
    b = board_mod.load(name)
    assert b.name == name and b.source.endswith("board-configs/%s.conf" % name)
    assert b.boot.vars["current"] == "upd_current" and b.boot.attempt_limit == 3
    assert "zlib" in b.device.codecs and b.device.require_signatures
    assert b.disk.sysroot().role == "sysroot"


def test_qemu_boards_match_what_u_boot_uses():
    for name in ("qemu-arm64", "qemu-arm"):
        env = board_mod.load(name).env
        assert (env.storage, env.device, env.base) == ("cfi-nor", "/dev/mem", 0x04000000)
        assert (env.offset, env.size, env.sector_size, env.redundant) == (0, 0x40000, 0x40000, False)
    assert board_mod.load("qemu-arm64").boot.boot_command == "booti"
    assert board_mod.load("qemu-arm").boot.boot_command == "bootz"


def test_beaglebone_black_has_a_redundant_emmc_env():
    env = board_mod.load("beaglebone-black").env
    assert (env.storage, env.device) == ("block", "/dev/mmcblk1")
    assert env.offsets() == [0x260000, 0x280000] and env.size == 0x20000
    assert env.flags == "counter" and env.default_env is None


def test_default_env_files_come_from_the_real_u_boot():
    # Every variable of the shipped default env appears, as name=value, in Debian's U-Boot binary.
    for name, binary in (("qemu-arm64", "/usr/lib/u-boot/qemu_arm64/u-boot.bin"),
                         ("qemu-arm", "/usr/lib/u-boot/qemu_arm/u-boot.bin")):
        if not os.path.exists(binary):
            pytest.fail("%s is missing: run .ci/setup (Debian package u-boot-qemu)" % binary)
        defaults = board_mod.default_env(board_mod.load(name))
        assert defaults["bootcmd"] == "run distro_bootcmd"
        with open(binary, "rb") as f:
            blob = f.read()
        for key, value in defaults.items():
            assert ("\0%s=%s\0" % (key, value)).encode() in blob, key


def test_unknown_board_lists_where_it_looked(tmp_path):
    with pytest.raises(NotFoundError) as err:
        board_mod.load("no-such-board", [str(tmp_path)])
    assert str(tmp_path) in str(err.value) and "board list" in err.value.hint
    with pytest.raises(NotFoundError):
        board_mod.load("../etc/passwd")
    with pytest.raises(NotFoundError):
        board_mod.load("Bad Name")


def test_file_name_must_match_board_name(tmp_path):
    src = os.path.join(ROOT, "board-configs", "beaglebone-black.conf")
    shutil.copy(src, str(tmp_path / "other.conf"))
    with pytest.raises(ConfigError, match="but the file is named other.conf"):
        board_mod.load("other", [str(tmp_path)])
    assert board_mod.load(str(tmp_path / "other.conf")).name == "beaglebone-black"  # a path is fine


def test_search_path_environment_variable_comes_first(tmp_path, monkeypatch):
    text = open(os.path.join(ROOT, "board-configs", "qemu-arm64.conf")).read()
    (tmp_path / "qemu-arm64.conf").write_text(text.replace("attempt_limit = 3", "attempt_limit = 5"))
    shutil.copy(os.path.join(ROOT, "board-configs", "qemu-arm64.env"), str(tmp_path))
    monkeypatch.setenv(board_mod.ENV_VAR, str(tmp_path))
    assert board_mod.search_path()[0] == str(tmp_path)
    assert board_mod.load("qemu-arm64").boot.attempt_limit == 5
    assert board_mod.available()["qemu-arm64"] == str(tmp_path / "qemu-arm64.conf")


def test_lookup_works_with_the_package_copied_next_to_its_board_configs(tmp_path):
    # As on a device: /somewhere/updater/ and /somewhere/board-configs/ side by side.
    shutil.copytree(os.path.join(ROOT, "updater"), str(tmp_path / "updater"),
                    ignore=shutil.ignore_patterns("__pycache__", "host"))
    shutil.copytree(os.path.join(ROOT, "board-configs"), str(tmp_path / "board-configs"))
    code = "from updater import board; b = board.load('beaglebone-black'); print(b.source)"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop(board_mod.ENV_VAR, None)
    out = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / "board-configs" / "beaglebone-black.conf")


def test_setup_cfg_installs_the_board_configs_as_data_files():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    lines = cfg.get("options.data_files", "share/updater/boards").split()
    assert "board-configs/*.conf" in lines and "board-configs/*.env" in lines
    assert board_mod.search_path().count(os.path.join(sys.prefix, "share/updater/boards")) == 1


def test_fw_env_config_export():
    bbb = board_mod.load("beaglebone-black")
    lines = [x for x in board_mod.fw_env_config(bbb).splitlines() if not x.startswith("#")]
    assert lines == ["/dev/mmcblk1 0x260000 0x20000 0x200", "/dev/mmcblk1 0x280000 0x20000 0x200"]
    qemu = board_mod.load("qemu-arm64")
    with pytest.raises(UnsupportedError) as err:
        board_mod.fw_env_config(qemu)
    assert "--env-file" in err.value.hint
    assert board_mod.fw_env_config(qemu, "images/flash1.img").splitlines()[-1] == "images/flash1.img 0x0 0x40000 0x40000"


def test_settings_and_bootargs():
    boot = board_mod.load("qemu-arm64").boot
    assert boot.settings() == {"kernel": "boot/vmlinuz", "initrd": "boot/initrd.img", "fdt": None,
                               "bootargs": "console=ttyAMA0,115200 rootwait=10 panic=5"}
    assert board_mod.load("beaglebone-black").boot.settings()["fdt"] == "boot/dtbs/am335x-boneblack.dtb"


@pytest.mark.parametrize("text,value", [("4096", 4096), ("0x1000", 4096), ("4K", 4096), ("2M", 2 << 20), ("1G", 1 << 30)])
def test_parse_size(text, value):
    assert board_mod.parse_size(text, "x") == value


def test_partition_device_names():
    assert board_mod.partition_device("/dev/vda", 1) == "/dev/vda1"
    assert board_mod.partition_device("/dev/mmcblk1", 2) == "/dev/mmcblk1p2"
