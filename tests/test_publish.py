"""keygen -> commit -> publish -> device verification, end to end, and every refusal on the way."""

import os
import stat

import pytest

from updater import fs, prune, signature, summary, trust
from updater.errors import ConfigError, NotFoundError, TrustError
from updater.host import keys as keys_mod
from updater.host import publish as publish_mod
from updater.host.commit import commit_source
from updater.objects import to_hex
from updater.repo import Repo
from updater.sysroot import DeviceConfig, Sysroot, parse_public_key

BRANCH = "qemu-arm64/stable"
T0 = 1_750_000_000
DAY = 86400


@pytest.fixture
def setup(tmp_path):
    key = keys_mod.keygen(str(tmp_path / "build.key"))
    repo = Repo.init(str(tmp_path / "repo"), "user")
    return tmp_path, key, repo


def commit(tmp_path, repo, version, ts, content=b"v"):
    src = tmp_path / ("src-" + version)
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "version").write_bytes(content + version.encode())
    src = str(src)
    cid, _ = commit_source(repo, src, BRANCH, "build " + version, version, None, ts)
    return cid


def device(tmp_path, pubs, name="dev"):
    names = sorted(pubs)
    cfg = DeviceConfig(board="qemu-arm64", url="file://" + str(tmp_path / "repo"), branch=BRANCH, keys=names)
    return Sysroot.create(str(tmp_path / name), cfg, keys=dict((n, (pubs[n].hex() + "\n").encode()) for n in names),
                          repo_mode="user")


def published(repo):
    data = fs.read_bytes(fs.join(repo.path, "summary"))
    return data, fs.read_bytes(fs.join(repo.path, summary.signature_name(data)))


# --- keys --------------------------------------------------------------------------------------
def test_keygen_files(setup):
    tmp_path, key, _ = setup
    path = str(tmp_path / "build.key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = open(path).read()
    assert "ed25519-seed " + key.seed.hex() in text and text.startswith("#")
    pub = open(path + ".pub").read()
    assert pub == key.public.hex() + "\n"
    assert parse_public_key(pub.encode()) == key.public
    assert keys_mod.load_key(path).public == key.public
    with pytest.raises(ConfigError, match="already exists"):
        keys_mod.keygen(path)
    assert keys_mod.keygen(path, force=True).public != key.public


def test_key_file_errors_and_mode_warning(tmp_path):
    p = tmp_path / "k"
    p.write_text("ed25519-seed " + "ab" * 31 + "\n")
    with pytest.raises(ConfigError, match="64-hex-digit"):
        keys_mod.load_key(str(p))
    p.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="no key"):
        keys_mod.load_key(str(p))
    p.write_text("ab" * 32 + "\n")  # a bare seed from another tool
    os.chmod(str(p), 0o644)
    warnings = []
    keys_mod.load_key(str(p), warnings.append)
    assert warnings and "chmod 600" in warnings[0]
    with pytest.raises(NotFoundError):
        keys_mod.load_key(str(tmp_path / "missing"))


# --- publish -----------------------------------------------------------------------------------
def test_round_trip_to_a_device(setup):
    tmp_path, key, repo = setup
    cid = commit(tmp_path, repo, "2.1.0", T0 - 50)
    report = publish_mod.publish(repo, [key], 30, now=T0)
    assert report["serial"] == 1 and report["signed_commits"] == {to_hex(cid): [key.hexid()]}
    assert trust.verify_commit(repo, cid, {"build.pub": key.public}) == "build.pub"
    data, sig = published(repo)
    assert sig == fs.read_bytes(fs.join(repo.path, "summary.sig"))
    dev = device(tmp_path, {"build.pub": key.public})
    s, entry = trust.check_summary(dev, data, sig, now=T0 + 1)
    assert entry.commit == cid and entry.version == "2.1.0" and s.expires == T0 + 30 * DAY
    state = Sysroot.open(dev.path).load_state()
    assert state[summary.STATE_SERIAL] == 1
    assert state[summary.STATE_BRANCHES][BRANCH]["version"] == "2.1.0"
    summary.check_commit(s, BRANCH, cid, repo.load_commit(cid), "qemu-arm64")


def test_replayed_older_summary_and_lower_version_are_refused(setup):
    tmp_path, key, repo = setup
    commit(tmp_path, repo, "2.1.0", T0 - 50)
    publish_mod.publish(repo, [key], 30, now=T0)
    old = published(repo)
    commit(tmp_path, repo, "2.2.0", T0 + 50)
    publish_mod.publish(repo, [key], 30, now=T0 + 100)
    new = published(repo)
    dev = device(tmp_path, {"build.pub": key.public})
    trust.check_summary(dev, new[0], new[1], now=T0 + 200)
    with pytest.raises(TrustError, match="Expected serial >= 2, got 1"):
        trust.check_summary(Sysroot.open(dev.path), old[0], old[1], now=T0 + 200)
    # the publisher rolls the branch back to an older build: refused by version
    commit(tmp_path, repo, "2.0.3", T0 + 300, content=b"other")
    publish_mod.publish(repo, [key], 30, now=T0 + 400)
    data, sig = published(repo)
    with pytest.raises(TrustError, match=r"Expected version >= 2\.2\.0, got 2\.0\.3"):
        trust.check_summary(Sysroot.open(dev.path), data, sig, now=T0 + 500)
    assert Sysroot.open(dev.path).load_state()[summary.STATE_SERIAL] == 2  # a refusal records nothing


def test_device_refusals(setup):
    tmp_path, key, repo = setup
    commit(tmp_path, repo, "1.0", T0)
    publish_mod.publish(repo, [key], 1, now=T0)
    data, sig = published(repo)
    other = keys_mod.keygen(str(tmp_path / "other.key"))
    with pytest.raises(TrustError, match="no trusted keys"):
        trust.check_summary(device(tmp_path, {}, "nokeys"), data, sig, now=T0)
    with pytest.raises(TrustError, match="unknown keys"):
        trust.check_summary(device(tmp_path, {"other.pub": other.public}, "other"), data, sig, now=T0)
    dev = device(tmp_path, {"build.pub": key.public})
    with pytest.raises(TrustError, match="expired"):
        trust.check_summary(dev, data, sig, now=T0 + 2 * DAY)
    with pytest.raises(TrustError, match="not signed"):
        trust.check_summary(dev, data, b"", now=T0)
    bad = bytearray(data)
    bad[-3] ^= 1
    with pytest.raises(TrustError, match="does not match"):
        trust.check_summary(dev, bytes(bad), sig, now=T0)
    with pytest.raises(TrustError, match="malformed signature file"):
        trust.check_summary(dev, data, sig[:-1], now=T0)
    assert dev.load_state() == {"format": 1}
    trust.check_summary(dev, data, sig, now=0)  # device clock at the epoch: accepted (documented)


def test_commit_signatures(setup):
    tmp_path, key, repo = setup
    cid = commit(tmp_path, repo, "1.0", T0)
    trusted = {"build.pub": key.public}
    with pytest.raises(TrustError, match="not signed"):
        trust.verify_commit(repo, cid, trusted)
    assert keys_mod.sign_commit(repo, cid, [key]) == [key.hexid()]
    assert keys_mod.sign_commit(repo, cid, [key]) == []  # already signed
    assert trust.verify_commit(repo, cid, trusted) == "build.pub"
    path = trust.commit_sig_path(repo, cid)
    blob = bytearray(open(path, "rb").read())
    blob[-1] ^= 1
    open(path, "wb").write(bytes(blob))
    with pytest.raises(TrustError, match="does not match"):
        trust.verify_commit(repo, cid, trusted)
    assert keys_mod.sign_commit(repo, cid, [key]) == [key.hexid()]  # a bad signature by this key is replaced
    assert trust.verify_commit(repo, cid, trusted) == "build.pub"
    # a summary signature is not a commit signature, even over the same digest
    entry = key.sign_digest(cid, "summary")
    with pytest.raises(TrustError):
        trust.verify_commit_blob(trusted, cid, signature.encode_blob([entry]))
    # prune removes the signature with its commit
    cid2 = commit(tmp_path, repo, "1.1", T0 + 1)
    keys_mod.sign_commit(repo, cid2, [key])
    prune.prune(repo, keep=1)
    assert not os.path.exists(path) and os.path.exists(trust.commit_sig_path(repo, cid2))


def test_rotation_publish_with_old_and_new_key(setup):
    tmp_path, old, repo = setup
    cid = commit(tmp_path, repo, "1.0", T0)
    publish_mod.publish(repo, [old], 30, now=T0)
    new = keys_mod.keygen(str(tmp_path / "new.key"))
    report = publish_mod.publish(repo, [old, new], 30, now=T0 + 10)
    assert report["signed_commits"] == {to_hex(cid): [new.hexid()]}  # old signature kept, new added
    data, sig = published(repo)
    assert sorted(signature.signers(sig)) == sorted([old.hexid(), new.hexid()])
    for name, pub in (("old.pub", old.public), ("new.pub", new.public)):
        dev = device(tmp_path, {name: pub}, "dev-" + name)
        assert trust.check_summary(dev, data, sig, now=T0 + 20)[1].commit == cid
        assert trust.verify_commit(repo, cid, {name: pub}) == name
    # after the transition: devices trusting only the new key accept new-only summaries
    publish_mod.publish(repo, [new], 30, now=T0 + 30)
    data, sig = published(repo)
    assert signature.signers(sig) == [new.hexid()]
    with pytest.raises(TrustError, match="unknown keys"):
        trust.check_summary(device(tmp_path, {"old.pub": old.public}, "dev-old-only"), data, sig, now=T0 + 40)


def test_serial_and_timestamp_only_grow(setup):
    tmp_path, key, repo = setup
    commit(tmp_path, repo, "1.0", T0)
    assert publish_mod.publish(repo, [key], 30, now=T0)["serial"] == 1
    r = publish_mod.publish(repo, [key], 30, now=T0 - 1000)  # the build server's clock went back
    assert r["serial"] == 2 and r["timestamp"] == T0
    with pytest.raises(ConfigError, match="not above"):
        publish_mod.publish(repo, [key], 30, now=T0, serial=2)
    assert publish_mod.publish(repo, [key], 30, now=T0, serial=10)["serial"] == 10
    with pytest.raises(ConfigError, match="--expires"):
        publish_mod.publish(repo, [key], 0, now=T0)
    with pytest.raises(ConfigError, match="no signing key"):
        publish_mod.publish(repo, [], 30, now=T0)


def test_deltas_are_listed_with_hashes_and_sizes(setup):
    tmp_path, key, repo = setup
    c1 = commit(tmp_path, repo, "1.0", T0)
    c2 = commit(tmp_path, repo, "1.1", T0 + 1)
    top = tmp_path / "repo" / "deltas"
    d = top / ("%s-%s" % (to_hex(c1), to_hex(c2)))
    d.mkdir(parents=True)
    (d / "superblock").write_bytes(b"S" * 123)
    (d / "0").write_bytes(b"p" * 1000)
    (d / "1").write_bytes(b"q" * 10)
    full = top / ("full-" + to_hex(c2))
    full.mkdir()
    (full / "superblock").write_bytes(b"F" * 50)
    (full / "0").write_bytes(b"z" * 5000)
    (top / ("full-" + to_hex(c1))).mkdir()  # incomplete: no superblock
    (top / "junk").mkdir()
    (top / (".tmp-delta-" + to_hex(c2))).mkdir()
    warnings = []
    publish_mod.publish(repo, [key], 30, now=T0 + 5, warn=warnings.append)
    s = summary.decode_unverified(published(repo)[0])
    delta = s.find_delta(c1, c2)
    import hashlib

    assert delta.superblock_sha256 == hashlib.sha256(b"S" * 123).digest()
    assert (delta.superblock_size, delta.total_size) == (123, 1133)
    assert s.find_delta(None, c2).total_size == 5050
    assert s.find_delta(None, c1) is None and len(s.deltas) == 2
    assert any("incomplete" in w for w in warnings) and any("junk" in w for w in warnings)


def test_a_client_racing_the_publisher_always_finds_a_matching_signature(setup):
    tmp_path, key, repo = setup
    commit(tmp_path, repo, "1.0", T0)
    publish_mod.publish(repo, [key], 30, now=T0)
    trusted = {"k": key.public}
    first = fs.read_bytes(fs.join(repo.path, "summary"))  # the client read the summary ...
    for i in range(1, 4):  # ... and publishes happen before it fetches the signature
        commit(tmp_path, repo, "1.%d" % i, T0 + i)
        publish_mod.publish(repo, [key], 30, now=T0 + 10 * i)
    named = fs.read_bytes(fs.join(repo.path, summary.signature_name(first)))
    assert summary.parse_verified(first, named, trusted, T0 + 100).serial == 1
    fixed = fs.read_bytes(fs.join(repo.path, "summary.sig"))
    with pytest.raises(TrustError):  # the fixed name pairs with the newest summary only
        summary.parse_verified(first, fixed, trusted, T0 + 100)


def test_content_named_signatures_are_pruned(setup):
    tmp_path, key, repo = setup
    commit(tmp_path, repo, "1.0", T0)
    for i in range(publish_mod.KEEP_SIGNATURES + 5):
        publish_mod.publish(repo, [key], 30, now=T0 + i)
    names = os.listdir(os.path.join(repo.path, "summaries"))
    assert len(names) == publish_mod.KEEP_SIGNATURES
    assert os.path.basename(summary.signature_name(published(repo)[0])) in names


# --- command line ------------------------------------------------------------------------------
def test_cli_keygen_commit_sign_publish_summary(cli, tmp_path, sample_tree):
    key = str(tmp_path / "k")
    r = cli("keygen", "--out", key, "--json")
    assert r.rc == 0, r
    doc = r.json()
    assert doc["public"] == open(key + ".pub").read().strip() and len(doc["key_id"]) == 16
    assert cli("keygen", "--out", key).rc == 2
    repo = str(tmp_path / "repo")
    assert cli("--repo", repo, "init", "--mode", "user").rc == 0
    assert cli("--repo", repo, "commit", sample_tree, "--branch", BRANCH, "--version", "3.0").rc == 0
    r = cli("--repo", repo, "sign", BRANCH, "--key", key, "--json")
    assert r.rc == 0 and r.json()["added"] == [doc["key_id"]], r
    r = cli("--repo", repo, "publish", "--key", key, "--expires", "7", "--json")
    assert r.rc == 0, r
    pub = r.json()
    assert pub["serial"] == 1 and pub["branches"][BRANCH]["version"] == "3.0" and pub["signed_commits"] == {}
    assert pub["expires"] - pub["timestamp"] == 7 * DAY
    r = cli("--repo", repo, "summary", "--trust", key + ".pub", "--json")
    assert r.rc == 0 and r.json()["verified_by"] == "k.pub", r
    other = str(tmp_path / "o")
    cli("keygen", "--out", other)
    r = cli("--repo", repo, "summary", "--trust", other + ".pub")
    assert r.rc == 1 and "unknown keys" in r.err
    r = cli("--repo", repo, "summary", "--trust", key + ".pub", "--now", str(pub["expires"]))
    assert r.rc == 1 and "expired" in r.err
    r = cli("--repo", repo, "publish", "--json")
    assert r.rc == 2
