"""The env and board commands through updater.cli.main, as a user or script runs them."""

import io
import json
import os

import pytest

from updater import board as board_mod
from updater import cli, envstore
from updater import ubootenv as u


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(list(argv), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def flash(tmp_path):
    """A qemu-arm64 env flash bank image holding U-Boot's defaults plus one variable."""
    path = tmp_path / "flash1.img"
    defaults = board_mod.default_env(board_mod.load("qemu-arm64"))
    path.write_bytes(u.encode(dict(defaults, foo="bar"), 0x40000, pad=0xFF) + b"\xff" * 0x40000)
    return str(path)


@pytest.fixture
def bbb(tmp_path):
    path = tmp_path / "emmc.img"
    path.write_bytes(b"\0" * 0x2A0000)
    return str(path)


def test_print_all_and_named(flash):
    rc, out, _ = run("--board", "qemu-arm64", "env", "print", "--env-file", flash)
    assert rc == 0 and "bootcmd=run distro_bootcmd\n" in out and "foo=bar\n" in out
    assert out.splitlines() == sorted(out.splitlines())
    rc, out, _ = run("--board", "qemu-arm64", "env", "print", "--env-file", flash, "foo", "bootdelay")
    assert rc == 0 and out == "bootdelay=2\nfoo=bar\n"


def test_print_json(flash):
    rc, out, _ = run("--board", "qemu-arm64", "env", "print", "--env-file", flash, "--json", "foo")
    doc = json.loads(out)
    assert rc == 0 and doc["vars"] == {"foo": "bar"} and doc["active_copy"] == 1 and not doc["redundant"]
    assert doc["copies"][0]["crc_ok"] and doc["board"] == "qemu-arm64"


def test_print_missing_variable_is_exit_1(flash):
    rc, out, err = run("--board", "qemu-arm64", "env", "print", "--env-file", flash, "nope")
    assert rc == 1 and out == "" and "not set: nope" in err


def test_set_one_write_and_delete(flash):
    storage = envstore.FileStorage(flash)
    rc, out, err = run("--board", "qemu-arm64", "env", "set", "--env-file", flash,
                       "a=1", "b=x=y", "spaced= two  words ", "foo=")
    assert rc == 0 and "wrote copy 1" in err
    env = u.parse(storage.read(0, 0x40000)).variables
    assert env["a"] == "1" and env["b"] == "x=y" and env["spaced"] == " two  words " and "foo" not in env
    rc, out, _ = run("--board", "qemu-arm64", "env", "set", "--env-file", flash, "--json", "a=2")
    assert rc == 0 and json.loads(out)["set"] == {"a": "2"}


@pytest.mark.parametrize("arg,msg", [("noequals", "expected NAME=VALUE"), ("=v", "expected NAME=VALUE"),
                                     ("bad name=1", "cannot contain NUL, blanks"), ("a=\nb", "line break")])
def test_set_rejects_bad_assignments_with_exit_2(flash, arg, msg):
    before = open(flash, "rb").read()
    rc, _, err = run("--board", "qemu-arm64", "env", "set", "--env-file", flash, arg)
    assert rc == 2 and msg in err
    assert open(flash, "rb").read() == before


def test_set_twice_same_name_is_usage_error(flash):
    rc, _, err = run("--board", "qemu-arm64", "env", "set", "--env-file", flash, "a=1", "a=2")
    assert rc == 2 and "given twice" in err


def test_blank_medium_needs_force_and_force_keeps_defaults(bbb):
    rc, _, err = run("--board", "beaglebone-black", "env", "print", "--env-file", bbb)
    assert rc == 1 and "both copies fail their CRC" in err and "--force" in err
    rc, _, err = run("--board", "beaglebone-black", "env", "set", "--env-file", bbb, "a=1")
    assert rc == 1 and "refusing" in err
    assert open(bbb, "rb").read() == b"\0" * 0x2A0000
    rc, out, _ = run("--board", "beaglebone-black", "env", "set", "--env-file", bbb, "--force", "--json", "a=1")
    doc = json.loads(out)
    assert rc == 0 and doc["forced"] and doc["copy"] == 1 and doc["flags"] == 1
    rc, out, _ = run("--board", "beaglebone-black", "env", "set", "--env-file", bbb, "--json", "b=2")
    doc = json.loads(out)
    assert doc["copy"] == 2 and doc["flags"] == 2 and not doc["forced"]
    rc, out, _ = run("--board", "beaglebone-black", "env", "print", "--env-file", bbb)
    assert out == "a=1\nb=2\n"


def test_board_selected_from_the_sysroot_config(tmp_path, flash):
    cfg = tmp_path / "sysroot" / "updater" / "config"
    cfg.parent.mkdir(parents=True)
    cfg.write_text("[device]\nformat = 1\nboard = qemu-arm64\nbootloader = uboot\n")
    rc, out, err = run("--sysroot", str(tmp_path / "sysroot"), "env", "print", "--env-file", flash, "foo")
    assert rc == 0 and out == "foo=bar\n", err


def test_no_board_is_a_config_error():
    rc, _, err = run("env", "print")
    assert rc == 2 and "no board selected" in err and "--board" in err


def test_board_file_path(flash):
    path = board_mod.find("qemu-arm64")
    rc, out, _ = run("--board", path, "env", "print", "--env-file", flash, "foo")
    assert rc == 0 and out == "foo=bar\n"


def test_board_show_text_and_json():
    rc, out, _ = run("board", "show", "beaglebone-black")
    assert rc == 0 and "redundant at 0x280000 (counter flags)" in out and "/dev/mmcblk1" in out
    rc, out, _ = run("board", "show", "qemu-arm64", "--json")
    doc = json.loads(out)
    assert doc["env"]["base"] == 0x04000000 and doc["boot"]["vars"]["trial"] == "upd_trial"
    assert doc["disk"]["partitions"][0]["role"] == "sysroot"
    rc, out, _ = run("--board", "qemu-arm", "board", "show")
    assert rc == 0 and out.startswith("board qemu-arm ")


def test_board_show_fw_env_config(tmp_path):
    rc, out, _ = run("board", "show", "beaglebone-black", "--fw-env-config")
    assert rc == 0 and out.splitlines()[-2:] == ["/dev/mmcblk1 0x260000 0x20000 0x200",
                                                 "/dev/mmcblk1 0x280000 0x20000 0x200"]
    rc, _, err = run("board", "show", "qemu-arm64", "--fw-env-config")
    assert rc == 1 and "--env-file" in err
    img = str(tmp_path / "f.img")
    rc, out, _ = run("board", "show", "qemu-arm64", "--fw-env-config", "--env-file", img)
    assert rc == 0 and out.splitlines()[-1] == img + " 0x0 0x40000 0x40000"
    rc, _, err = run("board", "show", "qemu-arm64", "--env-file", img)
    assert rc == 2


def test_board_list():
    rc, out, _ = run("board", "list")
    names = [line.split()[0] for line in out.splitlines()]
    assert rc == 0 and {"qemu-arm64", "qemu-arm", "beaglebone-black"} <= set(names)
    rc, out, _ = run("board", "list", "--json")
    doc = json.loads(out)
    assert any(b["name"] == "qemu-arm64" and b["arch"] == "arm64" for b in doc["boards"])
    assert doc["search_path"]


def test_unknown_board_exit_1_with_hint():
    rc, _, err = run("board", "show", "nope")
    assert rc == 1 and "board list" in err


def test_help_lists_the_commands():
    rc, out, _ = run("--help")
    for name in ("env print", "env set", "board show", "board list"):
        assert name in out
    assert os.path.basename(cli.__file__) == "cli.py"
