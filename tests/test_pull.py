"""Pull over HTTP end to end, and every bad input of issue 8: each refused with a clear error, no crash,
fsck passes, and the next pull against a good server succeeds."""

import json
import os
import shutil

import pytest
from crashharness import run_cli
from deltakit import BRANCH, Host, clean, fsck_ok, make_device, start_server

from updater import bspatch, fs, httpfetch, pull, signature, summary
from updater.errors import FetchError, FormatError, IntegrityError, SpaceError, TrustError
from updater.host import keys as keys_mod
from updater.objects import to_hex

NOW = 1_700_000_500


@pytest.fixture
def world(tmp_path):
    """Host with v1, v2 and v3, deltas full->v1, v1->v2, v2->v3 (small parts), published, served."""
    host = Host(tmp_path)
    host.commit("1")
    host.delta("1")
    host.publish(now=NOW)
    server = start_server(host.repo.path)
    dev = make_device(tmp_path, server.url(), host.pub)
    yield host, server, dev
    server.shutdown()
    server.server_close()


def do_pull(dev, **kw):
    kw.setdefault("now", NOW + 10)
    return pull.pull(dev, **kw)


def advance(host, version, part_size=4096, full=False):
    prev = str(int(version) - 1)
    host.commit(version)
    host.delta(version, prev, part_size=part_size)
    if full:
        host.delta(version)
    host.publish(now=NOW + int(version))


def good_again(host, dev, version):
    fsck_ok(dev)
    result = do_pull(dev)
    assert result["commit"] == to_hex(host.commits[version])
    assert dev.repo().read_ref(BRANCH) == host.commits[version]
    fsck_ok(dev)
    assert clean(dev) == []
    return result


def test_full_then_delta_then_up_to_date(world):
    host, server, dev = world
    seen = []
    r1 = do_pull(dev, progress=lambda done, total: seen.append((done, total)))
    assert r1["changed"] and r1["delta_used"] and r1["delta"].startswith("full-") and r1["previous"] is None
    assert seen and seen[-1][0] == seen[-1][1] and all(d <= t for d, t in seen if t)
    advance(host, "2")
    r2 = good_again(host, dev, "2")
    assert r2["delta_used"] and r2["previous"] == to_hex(host.commits["1"]) and r2["objects_fetched"] == 0
    delta_bytes = sum(os.path.getsize(os.path.join(host.delta_dir("2", "1"), n))
                      for n in os.listdir(host.delta_dir("2", "1")))
    assert r2["bytes_fetched"] <= delta_bytes + 4096  # summary, signatures and the delta: nothing else
    assert not any("/objects/" in p and not p.endswith(".sig") for _, p, _ in server.requests)
    r3 = do_pull(dev)
    assert r3["changed"] is False and r3["bytes_fetched"] < 4096
    state = dev.load_state()
    assert state[summary.STATE_BRANCHES][BRANCH]["version"] == "2"  # the floor was recorded


def test_each_part_is_hashed_once(world, monkeypatch):
    from updater import deltaapply

    host, server, dev = world
    do_pull(dev)
    advance(host, "2")
    checked = []
    real = deltaapply.check_part_file
    monkeypatch.setattr(deltaapply, "check_part_file", lambda path, part, what: checked.append(part.index) or
                        real(path, part, what))
    r = good_again(host, dev, "2")
    parts = [n for n in os.listdir(host.delta_dir("2", "1")) if n.isdigit()]
    assert r["delta_used"] and len(parts) > 1 and sorted(checked) == sorted(int(n) for n in parts)


def test_no_delta_falls_back_to_single_objects(world):
    host, server, dev = world
    do_pull(dev)
    host.commit("2")
    host.publish(now=NOW + 2)  # no delta for v2
    r = good_again(host, dev, "2")
    assert not r["delta_used"] and r["delta"] is None and r["objects_fetched"] > 3


def test_pull_command_json(world, tmp_path):
    host, server, dev = world
    host.publish()  # the command line uses the real clock
    rc, out, err = run_cli(["--sysroot", dev.path, "pull", "--json"])
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["changed"] and doc["delta_used"] and doc["commit"] == to_hex(host.commits["1"])
    rc, out, err = run_cli(["--sysroot", dev.path, "pull"])
    assert rc == 0 and "up to date" in out


def test_pull_command_no_delta(world):
    host, server, dev = world
    host.publish()  # the command line uses the real clock
    rc, out, err = run_cli(["--sysroot", dev.path, "pull", "--no-delta", "--json"])
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["changed"] and not doc["delta_used"] and doc["delta"] is None and doc["objects_fetched"] > 3


def test_init_command(tmp_path, world):
    host, server, dev = world
    host.publish()
    path = str(tmp_path / "new")
    rc, out, err = run_cli(["--sysroot", path, "init", "--remote", server.url(), "--branch", BRANCH,
                            "--trust", host.pub, "--board", "qemu-arm64", "--keep", "4", "--mode", "user", "--json"])
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["keys"] == ["build.key.pub"] and doc["board"] == "qemu-arm64" and doc["keep"] == 4
    assert open(os.path.join(path, "updater/keys/build.key.pub")).read() == open(host.pub).read()
    rc, out, err = run_cli(["--sysroot", path, "pull", "--json"])
    assert rc == 0, err
    rc, out, err = run_cli(["--sysroot", str(tmp_path / "x"), "init", "--branch", BRANCH])
    assert rc == 2 and "--trust" in err
    rc, out, err = run_cli(["--sysroot", str(tmp_path / "x"), "init", "--branch", BRANCH, "--trust", host.pub,
                            "--remote", "ftp://x"])
    assert rc == 2
    rc, out, err = run_cli(["--repo", str(tmp_path / "plainrepo"), "init"])  # the repository form still works
    assert rc == 0 and "repository" in out


# --- bad parts and responses ---------------------------------------------------------------------
def first_part(host, version, prev):
    return "/deltas/%s-%s/0" % (to_hex(host.commits[prev]), to_hex(host.commits[version]))


def tamper(path, at=100):
    data = bytearray(open(path, "rb").read())
    data[min(at, len(data) - 1)] ^= 0x40
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("how", ["tampered", "truncated", "swapped"])
def test_bad_part_is_refused_then_objects_or_next_pull_succeed(world, how):
    host, server, dev = world
    do_pull(dev)
    advance(host, "2")
    d = host.delta_dir("2", "1")
    assert len(os.listdir(d)) > 3
    saved = {n: open(os.path.join(d, n), "rb").read() for n in os.listdir(d)}
    if how == "tampered":
        tamper(os.path.join(d, "0"))
    elif how == "truncated":
        open(os.path.join(d, "0"), "wb").write(saved["0"][:-10])
    else:
        open(os.path.join(d, "0"), "wb").write(saved["1"])
        open(os.path.join(d, "1"), "wb").write(saved["0"])
    with pytest.raises((IntegrityError, FetchError)) as err:
        do_pull(dev, allow_objects=False)
    assert "part" in str(err.value) or "bytes" in str(err.value)
    assert dev.repo().read_ref(BRANCH) == host.commits["1"]
    fsck_ok(dev)
    # With the object fallback (the default) the same pull completes, reporting why the delta failed.
    r = do_pull(dev)
    assert not r["delta_used"] and r["delta_error"] and r["objects_fetched"] > 0
    assert dev.repo().read_ref(BRANCH) == host.commits["2"]
    for n, data in saved.items():
        open(os.path.join(d, n), "wb").write(data)
    advance(host, "3")
    good_again(host, dev, "3")


def test_superblock_for_another_base(world, tmp_path):
    host, server, dev = world
    do_pull(dev)
    advance(host, "2")
    advance(host, "3")
    # deltas/<v1>-<v3> holding the v2->v3 delta, published (so its hash is signed): a mix-up
    wrong = os.path.join(host.repo.path, "deltas", "%s-%s" % (to_hex(host.commits["1"]), to_hex(host.commits["3"])))
    shutil.copytree(host.delta_dir("3", "2"), wrong)
    host.publish(now=NOW + 4)
    with pytest.raises(IntegrityError, match="superblock.*is for"):
        do_pull(dev, allow_objects=False)
    fsck_ok(dev)
    r = do_pull(dev)
    assert r["delta_error"] and "is for" in r["delta_error"] and r["commit"] == to_hex(host.commits["3"])
    fsck_ok(dev)


@pytest.mark.parametrize("fault", ["404", "500", "drop", "endless", "oversize"])
def test_server_faults_on_a_part(world, fault):
    host, server, dev = world
    do_pull(dev)
    advance(host, "2")
    server.faults[first_part(host, "2", "1")] = (fault, 1)
    with pytest.raises(FetchError) as err:
        do_pull(dev, allow_objects=False)
    assert {"404": "404", "500": "500", "drop": "closed", "endless": "more than", "oversize": "signed size"}[fault] in str(err.value)
    fsck_ok(dev)
    r = good_again(host, dev, "2")
    assert r["delta_used"]
    if fault == "drop":
        assert r["bytes_resumed"] > 0  # the half that arrived was kept and not fetched again


def test_resume_after_interruption_sends_little_again(world):
    host, server, dev = world
    do_pull(dev)
    host.big = 1 << 20  # big files: a part of several fetch chunks
    advance(host, "2", part_size=4 << 20)
    d = host.delta_dir("2", "1")
    part = os.path.getsize(os.path.join(d, "0"))
    assert part > 100000

    class Stop(Exception):
        pass

    def cut(done, total):
        if total and done > part // 2:
            raise Stop()

    f1 = httpfetch.HttpFetcher(server.url())
    with pytest.raises(Stop):
        do_pull(dev, progress=cut, fetcher=f1)
    first = f1.bytes_fetched  # what this device received (the server may have queued more in socket buffers)
    assert part // 3 < first < part
    assert clean(dev)  # the partial part is kept
    r = do_pull(dev)
    second = r["bytes_fetched"]
    assert r["delta_used"] and r["bytes_resumed"] > part // 3
    total = sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d))
    again = first + second - total
    assert again < 0.02 * total + 8192, (first, second, total)  # summary and signatures are fetched twice
    fsck_ok(dev)


def test_full_disk_mid_pull(world):
    host, server, dev = world
    do_pull(dev)
    advance(host, "2")
    count = [0]

    def hook(op, path):
        if op == "write" and "/repo/tmp/" in path:
            count[0] += 1
            if count[0] == 3:
                raise SpaceError("writing %s: no space left on device (simulated)" % path)

    fs.set_hook(hook)
    try:
        with pytest.raises(SpaceError):
            do_pull(dev, allow_objects=False)
    finally:
        fs.set_hook(None)
    assert dev.repo().read_ref(BRANCH) == host.commits["1"]
    assert not [n for n in os.listdir(os.path.join(dev.repo_path, "tmp")) if n.startswith(".tmp")]
    good_again(host, dev, "2")


def test_free_space_check_writes_nothing(world):
    host, server, dev = world
    do_pull(dev)
    advance(host, "2")
    cfg = dev.config()
    cfg.reserve = fs.free_bytes(dev.dir) + (1 << 30)  # a margin: other processes share this disk
    before = sorted(dev.repo().iter_objects())
    with pytest.raises(SpaceError, match="reserve"):
        do_pull(dev)
    assert sorted(dev.repo().iter_objects()) == before and clean(dev) == []
    cfg.reserve = 0
    good_again(host, dev, "2")


# --- trust -------------------------------------------------------------------------------------------
def test_trust_failures(world, tmp_path):
    host, server, dev = world
    do_pull(dev)
    advance(host, "2")
    sig_files = [os.path.join(host.repo.path, "summary.sig")] + [
        os.path.join(host.repo.path, "summaries", n) for n in os.listdir(os.path.join(host.repo.path, "summaries"))]
    saved = {p: open(p, "rb").read() for p in sig_files}
    # unsigned: no signature files at all
    for p in sig_files:
        os.remove(p)
    with pytest.raises(FetchError, match="404"):
        do_pull(dev)
    # signed by an unknown key
    other = Host(tmp_path / "other")
    data = open(os.path.join(host.repo.path, "summary"), "rb").read()
    forged = keys_mod.sign_blob([other.key], data, signature.PURPOSE_SUMMARY)
    for p in sig_files:
        open(p, "wb").write(forged)
    with pytest.raises(TrustError):
        do_pull(dev)
    for p, blob in saved.items():
        open(p, "wb").write(blob)
    # expired
    with pytest.raises(TrustError, match="expired"):
        do_pull(dev, now=NOW + 400 * 86400)
    # no trusted key configured: refused, never accepted
    cfg = dev.config()
    keys = cfg.keys
    cfg.keys = []
    with pytest.raises(TrustError):
        do_pull(dev)
    cfg.keys = keys
    assert dev.repo().read_ref(BRANCH) == host.commits["1"]
    fsck_ok(dev)
    good_again(host, dev, "2")


def test_replayed_older_summary(world):
    host, server, dev = world
    do_pull(dev)
    old = {n: open(os.path.join(host.repo.path, n), "rb").read() for n in ("summary", "summary.sig")}
    old_sigs = set(os.listdir(os.path.join(host.repo.path, "summaries")))
    advance(host, "2")
    good_again(host, dev, "2")
    # the server goes back to the v1 summary (validly signed, not expired)
    for n, data in old.items():
        open(os.path.join(host.repo.path, n), "wb").write(data)
    for n in set(os.listdir(os.path.join(host.repo.path, "summaries"))) - old_sigs:
        os.remove(os.path.join(host.repo.path, "summaries", n))
    with pytest.raises(TrustError, match="Expected"):
        do_pull(dev)
    assert dev.repo().read_ref(BRANCH) == host.commits["2"]
    fsck_ok(dev)
    advance(host, "3")
    good_again(host, dev, "3")


def test_commit_for_another_board_is_refused(world, tmp_path):
    host, server, dev = world
    other = make_device(tmp_path, server.url(), host.pub, name="other", board="beaglebone-black")
    with pytest.raises(TrustError, match="board"):
        do_pull(other)
    assert other.repo().read_ref(BRANCH) is None
    fsck_ok(other)
    with pytest.raises(FormatError):
        pull.open_bundle(host.pub)


def test_target_already_in_the_repository_moves_only_the_ref(world):
    host, server, dev = world
    do_pull(dev)
    advance(host, "2")
    do_pull(dev)
    dev.repo().write_ref(BRANCH, host.commits["1"])  # e.g. a rollback moved the ref back
    before = len(server.requests)
    r = do_pull(dev)
    assert r["changed"] and not r["delta_used"] and r["objects_fetched"] == 0 and r["new_objects"] == 0
    assert not [p for _, p, _ in server.requests[before:] if "/deltas/" in p]
    assert dev.repo().read_ref(BRANCH) == host.commits["2"]
    fsck_ok(dev)


@pytest.mark.parametrize("value", [-1000, 1 << 40])
def test_malicious_control_block_in_a_signed_delta(world, value):
    """Even a validly published delta (the key holder's mistake or compromise) cannot crash the patcher."""
    from deltakit import rewrite_part

    from updater import delta

    host, server, dev = world
    do_pull(dev)
    advance(host, "2", part_size=1 << 20)
    d = host.delta_dir("2", "1")

    def corrupt(stream):
        """Set the first x of the first bsdiff record's control block to ``value``."""
        sb = delta.parse_superblock(open(os.path.join(d, "superblock"), "rb").read())
        pos = [0]

        def read(n):
            pos[0] += n
            return stream[pos[0] - n:pos[0]]

        reader = delta.PartReader(read, sb.parts[0], "part")
        while True:
            op = reader.next_op()
            if op.code == delta.OP_PATCH:
                at = pos[0] - len(op.control)
                return stream[:at] + bspatch.encode_int64(value) + stream[at + 8:]
            if op.code == delta.OP_FILE:
                reader.read(op.size)
            elif op.code == delta.OP_RAWPATCH:
                _, dl, el = bspatch.parse_control(op.control, 1 << 40, op.size)
                reader.read(dl + el)

    rewrite_part(d, 0, corrupt)
    host.publish(now=NOW + 3)
    with pytest.raises(FormatError, match="control tuple"):
        do_pull(dev, allow_objects=False)
    assert dev.repo().read_ref(BRANCH) == host.commits["1"]
    fsck_ok(dev)
    host.delta("2", "1")
    host.publish(now=NOW + 4)
    good_again(host, dev, "2")
