"""``updater console uboot env|rollback`` against a scripted U-Boot 2023.01 console on a pty
(tests/fake_uboot.py), and the errors a technician can act on (wrong, busy or silent port,
U-Boot where a shell was expected and the other way round)."""

import io
import json
import os
import socket
import sys

import pytest

import serialrig as rig
from updater.cli import main
from updater.host import uboot_console as ub

# A real session with Debian's u-boot-qemu 2023.01 under QEMU 10 (printenv with two names,
# one of them undefined, then the tail of a full printenv).
REAL_PRINTENV = (
    'printenv upd_current bootdelay\r\n## Error: "upd_current" not defined\r\nbootdelay=2\r\n'
    "boot_targets=qfw usb0 scsi0 virtio0 nvme0 dhcp \r\nbootcmd=run distro_bootcmd\r\n"
    "upd_current=abc.0\r\nvendor=emulation\r\n\r\nEnvironment size: 4529/262140 bytes\r\n"
).replace("\r\n", "\n")


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


class UBootRig:
    def __init__(self, tmp_path, env, *args):
        self.env_path = str(tmp_path / "env.json")
        with open(self.env_path, "w") as f:
            json.dump(env, f)
        self.line = rig.Line()
        self.proc = rig.spawn_on(self.line.ds, [sys.executable, os.path.join(rig.TESTS, "fake_uboot.py"),
                                                self.env_path] + list(args), env=rig.device_env())

    def saved(self):
        with open(self.env_path) as f:
            return json.load(f)

    def run(self, *argv):
        return cli("console", "--port", self.line.host_path, *argv)

    def close(self):
        rig.kill(self.proc)
        self.line.close()


ENV = {"bootdelay": "2", "bootcmd": "run distro_bootcmd", "upd_current": "aaa.1", "upd_trial": "bbb.2",
       "upd_count": "2", "upd_limit": "3"}


@pytest.fixture
def uboot(tmp_path):
    made = []

    def make(env=ENV, *args):
        r = UBootRig(tmp_path, env, *args)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_printenv_output_of_real_uboot_parses():
    env = ub.parse_printenv(REAL_PRINTENV)
    assert env["bootdelay"] == "2" and env["upd_current"] == "abc.0"
    assert env["boot_targets"] == "qfw usb0 scsi0 virtio0 nvme0 dhcp "
    assert "printenv upd_current bootdelay" not in env and len(env) == 5


def test_rollback_plans():
    names = {"current": "c", "trial": "t", "count": "n", "limit": "l", "failed": "f"}
    changes, why = ub.plan_rollback({"c": "good.1", "t": "bad.2", "n": "3"}, names)
    assert changes == {"t": None, "n": "0", "f": "bad.2"} and "bad.2" in why
    changes, _ = ub.plan_rollback({"c": "good.1"}, names, to="older.0")
    assert changes == {"c": "older.0", "t": None, "n": "0"}
    with pytest.raises(Exception) as e:
        ub.plan_rollback({"c": "good.1"}, names)
    assert "no trial deployment" in str(e.value) and "--to NAME" in e.value.hint
    with pytest.raises(Exception) as e:
        ub.plan_rollback({"t": "bad.2"}, names)
    assert "no known-good" in str(e.value)
    with pytest.raises(Exception):
        ub.plan_rollback({"c": "good.1"}, names, to="x; reset")


def test_env_stops_autoboot_and_shows_the_contract(uboot):
    r = uboot()
    rc, out, err = r.run("uboot", "env", "--wait", "10")
    assert rc == 0, err
    assert "current  upd_current  aaa.1" in out and "trial    upd_trial    bbb.2" in out
    assert "failed   upd_failed   (not set)" in out
    rc, out, err = r.run("uboot", "env", "--json")
    doc = json.loads(out)
    assert doc["contract"]["count"] == "2" and doc["env"]["bootcmd"] == "run distro_bootcmd"


def test_rollback_clears_the_trial_saves_and_boots_the_known_good(uboot):
    r = uboot()
    rc, out, err = r.run("uboot", "rollback", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["after"]["trial"] is None and doc["after"]["failed"] == "bbb.2" and doc["after"]["current"] == "aaa.1"
    assert "booting aaa.1" in doc["boot_line"]
    saved = r.saved()
    assert "upd_trial" not in saved and saved["upd_failed"] == "bbb.2" and saved["upd_count"] == "0"
    assert saved["upd_current"] == "aaa.1"


def test_rollback_to_a_named_deployment_without_booting(uboot):
    r = uboot(dict(ENV, upd_trial=""), "--at-prompt")
    rc, out, err = r.run("uboot", "rollback", "--to", "ccc.0", "--no-boot")
    assert rc == 0, err
    assert "make ccc.0 the known-good deployment" in out
    assert r.saved()["upd_current"] == "ccc.0"
    rc, out, _ = r.run("uboot", "env", "--json")  # still at the prompt: it did not boot
    assert rc == 0 and json.loads(out)["contract"]["current"] == "ccc.0"


def test_nothing_to_roll_back_changes_nothing(uboot):
    env = {"bootdelay": "2", "upd_current": "aaa.1"}
    r = uboot(env, "--at-prompt")
    rc, out, err = r.run("uboot", "rollback")
    assert rc == 1 and "no trial deployment is set" in err and "--to NAME" in err
    assert r.saved() == env


def test_board_config_variable_names_are_used(uboot, tmp_path):
    src = os.path.join(rig.ROOT, "board-configs", "qemu-arm64.conf")
    with open(src) as f:
        text = f.read()
    text = text.replace("var_current = upd_current", "var_current = good").replace(
        "var_trial = upd_trial", "var_trial = try")
    text = text.replace("default_env = qemu-arm64.env", "default_env = %s" % os.path.join(
        rig.ROOT, "board-configs", "qemu-arm64.env"))
    conf = tmp_path / "custom.conf"
    conf.write_text(text)
    r = uboot({"bootdelay": "2", "good": "g.1", "try": "t.2", "upd_count": "1"}, "--at-prompt")
    rc, out, err = cli("--board", str(conf), "console", "--port", r.line.host_path, "uboot", "rollback", "--no-boot",
                       "--json")
    assert rc == 0, err
    saved = r.saved()
    assert "try" not in saved and saved["upd_failed"] == "t.2" and saved["good"] == "g.1"


def test_linux_answering_where_uboot_was_expected(uboot):
    r = uboot()
    rc, out, err = r.run("uboot", "env", "--wait", "1")  # catches autoboot, then boot it to "Linux"
    assert rc == 0
    r.run("uboot", "rollback", "--to", "aaa.1")
    rc, out, err = r.run("uboot", "env", "--wait", "3")
    assert rc == 1 and "Linux is running" in err and "--reboot" in err
    rc, out, err = r.run("uboot", "env", "--wait", "15", "--reboot", "reboot", "--json")
    assert rc == 0, err
    assert json.loads(out)["contract"]["current"] == "aaa.1"


def test_status_at_the_uboot_prompt_says_so(uboot):
    r = uboot(ENV, "--at-prompt")
    rc, out, err = r.run("status", "--timeout", "5")
    assert rc == 1 and "U-Boot bootloader, not Linux" in err and "uboot rollback" in err


# --- port errors ----------------------------------------------------------------------------------
def test_wrong_port():
    rc, out, err = cli("console", "--port", "/dev/ttyUSB-nonexistent", "status", "--json")
    assert rc == 1 and "no such file" in err.lower() and "updater console list" in err
    assert json.loads(out)["error"]["type"] == "FetchError"


def test_bad_port_url():
    rc, _, err = cli("console", "--port", "nosuch://x", "status")
    assert rc == 2 and "socket://HOST:PORT" in err


def test_busy_port():
    import serial

    line = rig.Line()
    try:
        holder = serial.Serial(line.host_path, exclusive=True)
        rc, _, err = cli("console", "--port", line.host_path, "status", "--timeout", "2")
        holder.close()
    finally:
        line.close()
    assert rc == 1 and "in use by another program" in err


def test_refused_socket():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    rc, _, err = cli("console", "--port", "socket://127.0.0.1:%d" % port, "status")
    assert rc == 1 and "refused" in err.lower() and "console server is running" in err


def test_silent_device():
    import termios
    import tty

    line = rig.Line()
    tty.setraw(line.ds, termios.TCSANOW)  # nothing runs there: no echo either
    try:
        rc, _, err = cli("console", "--port", line.host_path, "status", "--timeout", "2")
    finally:
        line.close()
    assert rc == 1 and "no answer from the device" in err and "baud rate" in err


def test_list_ports_json():
    rc, out, _ = cli("console", "list", "--json")
    assert rc == 0
    for port in json.loads(out)["ports"]:
        assert port["device"].startswith("/dev/")
