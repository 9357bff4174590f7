"""The updater command line for repository commands: help, exit codes, --json, errors."""

import os
import subprocess
import sys

import pytest

from updater.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = sorted(build_parser().commands)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_on_every_command(cli, name):
    r = cli(*(name.split() + ["--help"]))
    assert r.rc == 0, r
    assert r.out.startswith("usage: updater " + name)


def test_main_help_and_no_command(cli):
    r = cli("--help")
    assert r.rc == 0 and "commands:" in r.out and "exit codes" in r.out
    r = cli()
    assert r.rc == 2 and "commands:" in r.err


def test_usage_errors_exit_2(cli, tmp_path):
    assert cli("frobnicate").rc == 2
    r = cli("--repo", str(tmp_path), "log")
    assert r.rc == 2 and "missing argument REV" in r.err
    r = cli("--repo", str(tmp_path), "log", "a", "--bogus")
    assert r.rc == 2 and "unknown option --bogus" in r.err
    r = cli("--repo", str(tmp_path), "prune", "--keep", "zero")
    assert r.rc == 2 and "whole number" in r.err


def test_not_a_repository_exit_2_one_line(cli, tmp_path):
    r = cli("--repo", str(tmp_path), "log", "main")
    assert r.rc == 2
    assert r.err.startswith("updater: opening repository") and r.err.count("\n") == 2  # message + try:


def test_full_flow_with_json(cli, tmp_path, sample_tree):
    repo = str(tmp_path / "repo")
    assert cli("--repo", repo, "init", "--json").json()["repo"] == repo
    one = cli("--repo", repo, "commit", "--branch", "b/stable", sample_tree, "--version", "1.0", "--json")
    assert one.rc == 0, one
    c1 = one.json()["commit"]
    with open(os.path.join(sample_tree, "etc/motd"), "wb") as f:
        f.write(b"v2\n")
    os.remove(os.path.join(sample_tree, "etc/hostname"))
    os.makedirs(os.path.join(sample_tree, "opt/new"))
    with open(os.path.join(sample_tree, "opt/new/file"), "wb") as f:
        f.write(b"n")
    c2 = cli("--repo", repo, "commit", "--branch", "b/stable", sample_tree, "--version", "2.0", "--json").json()["commit"]
    log = cli("--repo", repo, "log", "b/stable", "--json").json()["commits"]
    assert [e["version"] for e in log] == ["2.0", "1.0"] and log[0]["parent"] == c1
    show = cli("--repo", repo, "show", c2[:8], "--json").json()
    assert show["commit"] == c2 and show["board"] == "b"
    ls = cli("--repo", repo, "ls", "b/stable", "/etc", "--json").json()["entries"]
    assert [e["path"] for e in ls] == ["/etc/empty.conf", "/etc/motd"]
    one_file = cli("--repo", repo, "ls", "b/stable", "usr/lib/libfoo.so.1", "--json").json()["entries"][0]
    assert one_file["type"] == "symlink" and one_file["target"] == "libfoo.so.1.2"
    diff = cli("--repo", repo, "diff", c1, c2, "--json").json()
    assert diff["added"] == ["/opt/", "/opt/new/", "/opt/new/file"]
    assert diff["removed"] == ["/etc/hostname"]
    assert diff["modified"] == ["/etc/motd"]
    text = cli("--repo", repo, "diff", "b/stable^", "b/stable").out
    assert "M /etc/motd" in text and "D /etc/hostname" in text and "A /opt/new/file" in text
    co = cli("--repo", repo, "checkout", "b/stable", str(tmp_path / "co"), "--json")
    assert co.rc == 0 and co.json()["files"] >= 6
    assert cli("--repo", repo, "fsck", "--json").json()["ok"] is True
    pr = cli("--repo", repo, "prune", "--keep", "1", "--json").json()
    assert pr["removed"]["commit"] == 1
    assert cli("--repo", repo, "fsck").rc == 0


def test_rev_errors(cli, tmp_path, sample_tree):
    repo = str(tmp_path / "repo")
    cli("--repo", repo, "init")
    cli("--repo", repo, "commit", "--branch", "b/stable", sample_tree)
    r = cli("--repo", repo, "show", "no/such")
    assert r.rc == 1 and "no/such" in r.err
    r = cli("--repo", repo, "show", "abc")
    assert r.rc == 1
    r = cli("--repo", repo, "ls", "b/stable", "/nope", "--json")
    assert r.rc == 1 and r.json()["ok"] is False and r.json()["error"]["type"] == "NotFoundError"


def test_fsck_exit_1_on_corruption(cli, tmp_path, sample_tree):
    repo = str(tmp_path / "repo")
    cli("--repo", repo, "init")
    cli("--repo", repo, "commit", "--branch", "b/stable", sample_tree)
    victim = None
    for dirpath, _, names in os.walk(os.path.join(repo, "objects")):
        for n in names:
            path = os.path.join(dirpath, n)
            if n.endswith(".file") and not os.path.islink(path) and os.path.getsize(path) > 1000:
                victim = path
    with open(victim, "r+b") as f:
        f.write(b"!")
    r = cli("--repo", repo, "fsck")
    oid = os.path.basename(os.path.dirname(victim)) + os.path.basename(victim).split(".")[0]
    assert r.rc == 1 and "corrupt" in r.out and oid[:12] in r.out and "FAILED" in r.out


def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "updater", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.startswith("updater ")


def test_global_json_before_the_command(cli, tmp_path):
    repo = str(tmp_path / "repo")
    r = cli("--json", "--repo", repo, "init")
    assert r.rc == 0 and r.json()["repo"] == repo
    r = cli("--json", "--repo", repo, "refs")
    assert r.json() == {"refs": {}}
