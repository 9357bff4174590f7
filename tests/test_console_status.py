"""``updater console status``: a device shell on a pty running the real ``updater status --json``,
found between markers; logging in first when the console asks."""

import io
import json
import sys

import pytest

import serialrig as rig
from updater.cli import main
from updater.sysroot import DeviceConfig, Sysroot

LOGIN = r"""
trap '' INT
while :; do
  printf 'device login: '; read user
  [ -n "$user" ] || continue
  stty -echo; printf 'Password: '; read pass; stty echo; echo
  if [ "$user" = tech ] && [ "$pass" = 's3cret word' ]; then exec /bin/sh -i; fi
  echo 'Login incorrect'
done
"""


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def device(tmp_path):
    root = str(tmp_path / "sysroot")
    Sysroot.create(root, DeviceConfig(board="qemu-arm64", branch="qemu-arm64/stable"))
    made = []

    def start(argv=("/bin/sh", "-i")):
        line = rig.Line()
        proc = rig.spawn_on(line.ds, list(argv), env=rig.device_env())
        made.append((line, proc))
        return line

    yield root, start
    for line, proc in made:
        rig.kill(proc)
        line.close()


def device_cmd(root):
    return "%s -m updater --sysroot %s" % (sys.executable, root)


def test_status_json_is_the_devices_document(device):
    root, start = device
    line = start()
    rc, out, err = cli("console", "--port", line.host_path, "status", "--json", "--device-cmd", device_cmd(root))
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["board"] == "qemu-arm64" and doc["branch"] == "qemu-arm64/stable" and doc["sysroot"] == root


def test_status_text_reads_like_the_device_command(device):
    root, start = device
    line = start()
    rc, out, err = cli("console", "--port", line.host_path, "status", "--device-cmd", device_cmd(root))
    assert rc == 0, err
    assert out.startswith("Device %s: board qemu-arm64, following qemu-arm64/stable." % root)
    assert "No deployments yet" in out


def test_status_logs_in_first(device, monkeypatch):
    root, start = device
    line = start(("/bin/sh", "-c", LOGIN))
    rc, _, err = cli("console", "--port", line.host_path, "status", "--device-cmd", device_cmd(root), "--timeout", "5")
    assert rc == 1 and "asks for a login" in err and "--login USER" in err
    monkeypatch.setenv("TECH_PASSWORD", "wrong")
    rc, _, err = cli("console", "--port", line.host_path, "status", "--device-cmd", device_cmd(root),
                     "--login", "tech", "--password-env", "TECH_PASSWORD")
    assert rc == 1 and "the login failed" in err
    monkeypatch.setenv("TECH_PASSWORD", "s3cret word")
    rc, out, err = cli("console", "--port", line.host_path, "status", "--json", "--device-cmd", device_cmd(root),
                       "--login", "tech", "--password-env", "TECH_PASSWORD")
    assert rc == 0, err
    assert json.loads(out)["board"] == "qemu-arm64"


def test_status_with_a_missing_device_command(device):
    root, start = device
    line = start()
    rc, _, err = cli("console", "--port", line.host_path, "status", "--device-cmd", "/nonexistent/updater")
    assert rc == 1 and "no such command" in err and "--device-cmd" in err


def test_status_of_a_device_whose_updater_fails(device, tmp_path):
    root, start = device
    line = start()
    rc, out, err = cli("console", "--port", line.host_path, "status", "--json",
                       "--device-cmd", "%s -m updater --sysroot %s" % (sys.executable, tmp_path / "missing"))
    assert rc == 1
    assert json.loads(out)["error"]["type"] == "ConfigError"  # the device's own error document
