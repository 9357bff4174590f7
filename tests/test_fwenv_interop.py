"""Interop with the standard tools: libubootenv's fw_printenv/fw_setenv and U-Boot's mkenvimage.

The boards are the shipped configs with --env-file: qemu-arm64 (one copy, 0xff padding) and
beaglebone-black (two copies, counter flags). fw_printenv reads with the fw_env.config that
``board.fw_env_config`` exports, so the export is tested too. The tools come from Debian's
libubootenv-tool and u-boot-tools (installed by .ci/setup); a missing tool fails the test.
"""

import os
import shutil
import subprocess

import pytest

from updater import board as board_mod
from updater import envstore
from updater import ubootenv as u

NASTY = {"empty": "", "spaces": "  two  spaces  ", "eq": "a=b==c", "script": "if test ${x} = 1; then echo ok; fi",
         "utf8": "gr\u00fc\u00dfe", "dollar": "$x ${y}"}


def tool(name):
    path = shutil.which(name)
    if not path:
        pytest.fail("%s is missing: run .ci/setup (Debian packages libubootenv-tool, u-boot-tools)" % name)
    return path


class Rig:
    """A board, its env medium as a file, and an fw_env.config for that file."""

    def __init__(self, tmp_path, name):
        self.board = board_mod.load(name)
        self.image = str(tmp_path / (name + ".img"))
        end = max(off for off in self.board.env.offsets()) + self.board.env.size
        with open(self.image, "wb") as f:
            f.write(b"\xff" * end)
        self.config = str(tmp_path / (name + ".fw_env.config"))
        with open(self.config, "w") as f:
            f.write(board_mod.fw_env_config(self.board, os.path.abspath(self.image)))
        self.defenv = str(tmp_path / "empty-default.env")
        open(self.defenv, "w").close()

    def store(self):
        return envstore.open_env(self.board, self.image)

    def printenv(self):
        res = subprocess.run([tool("fw_printenv"), "-c", self.config], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        out = {}
        for line in res.stdout.splitlines():
            name, _, value = line.partition("=")
            out[name] = value
        return out

    def setenv_script(self, variables, tmp_path):
        script = tmp_path / "fw_setenv.script"
        # libubootenv's script format is name=value per line; an empty value deletes the name.
        script.write_text("".join("%s=%s\n" % (k, v) for k, v in variables.items()))
        res = subprocess.run([tool("fw_setenv"), "-c", self.config, "-f", self.defenv, "-s", str(script)],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr


@pytest.fixture(params=["qemu-arm64", "beaglebone-black"])
def rig(request, tmp_path):
    return Rig(tmp_path, request.param)


def test_exported_config_lines(rig):
    lines = [line for line in open(rig.config).read().splitlines() if not line.startswith("#")]
    assert len(lines) == (2 if rig.board.env.redundant else 1)
    assert lines[0].split()[1:] == ["0x%x" % rig.board.env.offset, "0x%x" % rig.board.env.size,
                                    "0x%x" % rig.board.env.sector_size]


def test_updater_writes_fw_printenv_reads(rig):
    store = rig.store()
    store.update(dict(NASTY, base="1"), force=True)  # blank medium: starts from defaults
    want = store.read()
    assert rig.printenv() == want
    for round_ in range(5):  # alternate copies, flags advance
        store.update({"round": str(round_), "eq": "r=%d" % round_, "spaces": None})
        want = store.read()
        assert "spaces" not in want and want["round"] == str(round_)
        assert rig.printenv() == want


def test_empty_value_stored_not_deleted(rig):
    store = rig.store()
    variables = {"empty": "", "other": "x", "eq": "="}
    store.replace(variables, force=True)  # replace() stores exactly these, empty value included
    assert store.read() == variables
    assert rig.printenv() == variables


def test_fw_setenv_writes_updater_reads(rig, tmp_path):
    values = {"a": "1", "spaces": "x  y ", "eq": "k=v=w", "script": "run a; run b"}
    rig.setenv_script(values, tmp_path)
    assert rig.store().read() == values
    rig.setenv_script({"a": "", "b": "2"}, tmp_path)  # a name without value deletes it
    want = dict(values, b="2")
    del want["a"]
    assert rig.store().read() == want
    assert rig.printenv() == want


def test_writers_interleaved(rig, tmp_path):
    store = rig.store()
    expect = {}
    for i in range(6):
        if i % 2:
            rig.setenv_script({"k%d" % i: "fw %d" % i}, tmp_path)
        else:
            store.update({"k%d" % i: "up %d" % i}, force=(i == 0))
            if i == 0:
                expect = dict(store.read())
        expect["k%d" % i] = ("fw %d" if i % 2 else "up %d") % i
        got = store.read()
        for k in expect:
            assert got[k] == expect[k]
        assert rig.printenv() == got


def test_full_env_roundtrip(rig):
    lay = rig.board.env
    data_size = lay.size - lay.header
    base = {"a": "1"}
    fill = data_size - u.used_bytes(base) - len("z=") - 1
    variables = dict(base, z="f" * fill)
    assert u.used_bytes(variables) == data_size
    rig.store().replace(variables, force=True)
    assert rig.printenv() == variables
    with pytest.raises(Exception, match="the area holds"):
        rig.store().update({"b": "2"})
    assert rig.printenv() == variables  # the refused write changed nothing


@pytest.mark.parametrize("fa,fb", [(1, 2), (2, 1), (255, 0), (0, 255), (7, 7), (0, 0), (254, 255)])
def test_copy_choice_agrees_with_libubootenv(tmp_path, fa, fb):
    rig = Rig(tmp_path, "beaglebone-black")
    lay = rig.board.env
    with open(rig.image, "r+b") as f:
        for off, flags, tag in ((lay.offset, fa, "one"), (lay.redundant_offset, fb, "two")):
            f.seek(off)
            f.write(u.encode({"copy": tag}, lay.size, True, flags))
    ours = rig.store().read()
    assert rig.printenv() == ours


@pytest.mark.parametrize("bad", [0, 1])
def test_bad_copy_choice_agrees_with_libubootenv(tmp_path, bad):
    rig = Rig(tmp_path, "beaglebone-black")
    lay = rig.board.env
    with open(rig.image, "r+b") as f:
        for i, off in enumerate(lay.offsets()):
            img = bytearray(u.encode({"copy": str(i)}, lay.size, True, 9 if i == bad else 1))
            if i == bad:
                img[40] ^= 1
            f.seek(off)
            f.write(bytes(img))
    assert rig.store().read() == {"copy": str(1 - bad)} == rig.printenv()


# --- mkenvimage --------------------------------------------------------------------------------
def mkenvimage(tmp_path, variables, size, redundant=False, pad=None):
    src = tmp_path / "env.txt"
    src.write_text(u.format_text(variables))  # sorted: mkenvimage keeps input order
    out = tmp_path / "env.bin"
    cmd = [tool("mkenvimage"), "-s", str(size), "-o", str(out)]
    if redundant:
        cmd.append("-r")
    if pad is not None:
        cmd += ["-p", str(pad)]
    subprocess.run(cmd + [str(src)], check=True)
    return out.read_bytes()


@pytest.mark.parametrize("redundant", [False, True])
@pytest.mark.parametrize("pad", [None, 0])
def test_mkenvimage_parses_and_matches_byte_for_byte(tmp_path, redundant, pad):
    variables = dict(NASTY)
    del variables["empty"]  # mkenvimage keeps "empty=" too, but compare the common case first
    image = mkenvimage(tmp_path, variables, 0x2000, redundant, pad)
    assert u.parse(image if not redundant else [image, image]).variables == variables
    ours = u.encode(variables, 0x2000, redundant, u.FLAG_ACTIVE, 0xFF if pad is None else pad)
    assert ours == image


def test_mkenvimage_empty_value_and_empty_env(tmp_path):
    image = mkenvimage(tmp_path, {"e": "", "f": "1"}, 256)
    assert u.parse(image).variables == {"e": "", "f": "1"}
    assert u.encode({"e": "", "f": "1"}, 256, pad=0xFF) == image
    empty = mkenvimage(tmp_path, {}, 256)
    assert u.encode({}, 256, pad=0xFF) == empty


def test_mkenvimage_full_env_limit_agrees(tmp_path):
    size = 64
    fits = {"a": "x" * (size - 4 - 4)}  # "a=" + value + NUL + terminator == 60
    assert mkenvimage(tmp_path, fits, size) == u.encode(fits, size, pad=0xFF)
    too_big = {"a": "x" * (size - 4 - 3)}
    with pytest.raises(subprocess.CalledProcessError):
        mkenvimage(tmp_path, too_big, size)
    with pytest.raises(Exception, match="the area holds"):
        u.encode(too_big, size)
