"""Offline bundles: written from a published repository, installed through the pull's own checks,
from a private copy (a bundle swapped after the copy changes nothing)."""

import json
import os

import pytest
from crashharness import run_cli
from deltakit import BRANCH, Host, clean, fsck_ok, make_device

from updater import bundle, fs, pull
from updater.errors import (ConfigError, FetchError, FormatError, IntegrityError, NotFoundError, StorageError,
                            TrustError)
from updater.host import bundler
from updater.objects import to_hex

NOW = 1_700_000_500


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path / "host")
    h.commit("1")
    h.delta("1")
    h.commit("2")
    h.delta("2", "1")
    h.publish(now=NOW)
    return h


def test_full_then_delta_bundle(tmp_path, host):
    dev = make_device(tmp_path, "", host.pub)
    full = str(tmp_path / "full.bundle")
    delta_b = str(tmp_path / "delta.bundle")
    # the summary names v2 as the head: a full bundle of v2, and a v1 -> v2 delta bundle
    host.delta("2")
    host.publish(now=NOW + 1)
    report = bundler.write(host.repo, host.commits["2"], None, full)
    assert "summary" in report["entries"] and any(e.endswith("/superblock") for e in report["entries"])
    bundler.write(host.repo, host.commits["2"], host.commits["1"], delta_b)
    with pytest.raises(NotFoundError, match="holds no delta"):
        # a device with nothing cannot use a delta bundle (and a bundle has no single objects)
        pull.install(dev, delta_b, now=NOW + 10)
    fsck_ok(dev)
    stale = os.path.join(dev.tmp_dir, ".tmp-bundle-0123456789ab-1")
    os.makedirs(stale)
    open(os.path.join(stale, "bundle"), "wb").write(b"left by an interrupted install")
    r = pull.install(dev, full, now=NOW + 10)
    assert not os.path.exists(stale)
    assert r["changed"] and r["delta_used"] and r["source"] == full
    assert dev.repo().read_ref(BRANCH) == host.commits["2"]
    fsck_ok(dev)
    assert clean(dev) == []


def test_delta_bundle_via_commands(tmp_path, host):
    # a device at v1 (pulled from the published repository directory), then the v1 -> v2 bundle
    dev = make_device(tmp_path, "file://" + host.repo.path, host.pub)
    v2_state = {n: open(os.path.join(host.repo.path, n), "rb").read() for n in ("summary", "summary.sig")}
    old_head = host.repo.read_ref(BRANCH)
    host.repo.write_ref(BRANCH, host.commits["1"])
    host.publish()  # real clock, for the command line
    rc, out, err = run_cli(["--sysroot", dev.path, "pull", "--json"])
    assert rc == 0, err
    host.repo.write_ref(BRANCH, old_head)
    host.publish()
    out_file = str(tmp_path / "u.bundle")
    rc, out, err = run_cli(["--repo", host.repo.path, "bundle", "--from", to_hex(host.commits["1"]), "--to", BRANCH,
                            "-o", out_file, "--json"])
    assert rc == 0, err
    assert json.loads(out)["size"] == os.path.getsize(out_file)
    rc, out, err = run_cli(["--sysroot", dev.path, "install", out_file, "--json"])
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["delta_used"] and doc["commit"] == to_hex(host.commits["2"]) and doc["bytes_fetched"] > 0
    fsck_ok(dev)
    assert v2_state  # (kept for readability: the v2 summary was re-published above)


def test_bundle_needs_a_published_delta(tmp_path, host):
    with pytest.raises(ConfigError, match="lists no delta"):
        bundler.write(host.repo, host.commits["2"], None, str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="names no branch"):
        bundler.write(host.repo, host.commits["1"], None, str(tmp_path / "x"))
    host.delta("2", "1", codec="xz")  # regenerated after publishing: the signed hash no longer matches
    with pytest.raises(ConfigError, match="changed since"):
        bundler.write(host.repo, host.commits["2"], host.commits["1"], str(tmp_path / "x"))


def test_a_file_changing_while_bundled_leaves_no_bundle(tmp_path, host):
    out = str(tmp_path / "x.bundle")
    sig = os.path.join(host.repo.path, "summary.sig")
    saved = open(sig, "rb").read()

    def hook(op, path):
        if op == "write" and "bundle" in os.path.basename(path):
            open(sig, "ab").write(b"grown")  # e.g. a publish between indexing and copying

    fs.set_hook(hook)
    try:
        with pytest.raises(StorageError, match="changed while being copied"):
            bundler.write(host.repo, host.commits["2"], host.commits["1"], out)
    finally:
        fs.set_hook(None)
        open(sig, "wb").write(saved)
    assert not os.path.exists(out) and not [n for n in os.listdir(str(tmp_path)) if n.startswith(".tmp")]


def _at_v1(tmp_path, host):
    dev = make_device(tmp_path, "", host.pub)
    b1 = str(tmp_path / "v1.bundle")
    head = host.repo.read_ref(BRANCH)
    host.repo.write_ref(BRANCH, host.commits["1"])
    host.publish(now=NOW - 100)
    bundler.write(host.repo, host.commits["1"], None, b1)
    host.repo.write_ref(BRANCH, head)
    host.publish(now=NOW)
    pull.install(dev, b1, now=NOW + 10)
    dev.v1_bundle = b1
    return dev


def test_tampered_bundle_is_refused(tmp_path, host):
    dev = _at_v1(tmp_path, host)
    b = str(tmp_path / "d.bundle")
    bundler.write(host.repo, host.commits["2"], host.commits["1"], b)
    raw = bytearray(open(b, "rb").read())
    index = bundle.parse_index(lambda o, n: bytes(raw[o:o + n]), len(raw))
    name = [n for n in index if n.endswith("/0")][0]
    off, length = index[name]
    for pos, exc in ((off + length // 2, IntegrityError), (index["summary"][0] + 5, TrustError)):
        bad = bytearray(raw)
        bad[pos] ^= 1
        open(str(tmp_path / "bad.bundle"), "wb").write(bytes(bad))
        with pytest.raises(exc):
            pull.install(dev, str(tmp_path / "bad.bundle"), now=NOW + 10)
        assert dev.repo().read_ref(BRANCH) == host.commits["1"]
        fsck_ok(dev)
    open(str(tmp_path / "bad.bundle"), "wb").write(bytes(raw[: len(raw) - 10]))
    with pytest.raises(FormatError, match="truncated|past the end"):
        pull.install(dev, str(tmp_path / "bad.bundle"), now=NOW + 10)
    with pytest.raises(FormatError, match="magic"):
        pull.install(dev, host.pub, now=NOW + 10)
    r = pull.install(dev, b, now=NOW + 10)
    assert r["commit"] == to_hex(host.commits["2"])
    assert clean(dev) == []
    with pytest.raises(TrustError, match="Expected serial"):  # the older bundle is now a replay
        pull.install(dev, dev.v1_bundle, now=NOW + 10)
    assert dev.repo().read_ref(BRANCH) == host.commits["2"]


def test_bundle_swapped_after_the_copy_changes_nothing(tmp_path, host):
    dev = _at_v1(tmp_path, host)
    b = str(tmp_path / "d.bundle")
    bundler.write(host.repo, host.commits["2"], host.commits["1"], b)
    swapped = []

    def hook(op, path):
        # the first write into the device repository happens after the copy was made and checked
        if not swapped and "/repo/tmp/" in path:
            with open(b, "r+b") as f:
                f.seek(200)
                f.write(b"\xff" * 4096)
            swapped.append(path)

    fs.set_hook(hook)
    try:
        r = pull.install(dev, b, now=NOW + 10)
    finally:
        fs.set_hook(None)
    assert swapped and r["commit"] == to_hex(host.commits["2"])
    fsck_ok(dev)
    private = [n for n in os.listdir(dev.tmp_dir) if "bundle" in n]
    assert not private  # the private copy is removed afterwards


def test_missing_bundle_file(tmp_path, host):
    dev = make_device(tmp_path, "", host.pub)
    with pytest.raises(Exception, match="no such file"):
        pull.install(dev, str(tmp_path / "nope"), now=NOW)
    assert FetchError  # every fetch error inside a bundle is a FetchError, as over the network
