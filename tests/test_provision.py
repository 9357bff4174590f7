"""Factory provisioning (updater.host.provision, `updater provision`): image structure, the sysroot
inside it, the U-Boot environment, reproducibility, --target, and the record."""

import json
import os
import subprocess

import pytest

from provkit import EPOCH, Source, cat, debugfs, env_at, flash_over, inode_of, ls, missing_tool, part_device, run, sfdisk_json, sha256
from updater import board as board_mod
from updater import bootloader
from updater.host import bmap, provision
from updater.host.diskimage import ext4_journal_ranges
from updater.objects import to_hex

pytestmark = pytest.mark.skipif(missing_tool() is not None, reason=missing_tool() or "")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOARD_CONF = """[board]
format = 1
name = testboard
arch = arm
[env]
storage = block
device = /dev/mmcblk1
offset = 0x260000
redundant_offset = 0x280000
size = 0x20000
sector_size = 0x200
flags = counter
default_env = testboard.env
[boot]
kernel = boot/vmlinuz
initrd = boot/initrd.img
boot_command = bootz
console = ttyS0,115200n8
root = /dev/mmcblk1p2
[device]
require_signatures = no
[disk]
table = mbr
device = /dev/mmcblk1
first_offset = 4M
[partition.firmware]
index = 1
size = 8M
type = fat32
fs = vfat
label = FIRMWARE
role = boot
[partition.sysroot]
index = 2
size = rest
fs = ext4
label = sysroot
bootable = yes
role = sysroot
"""


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("provsrc"))
    s = Source(tmp)
    s.commit("1.0")
    s.commit("1.0", branch="qemu-arm/stable")
    s.commit("1.0", branch="qemu-arm64/unsigned", sign=False)
    s.commit("2.0", branch="testboard/stable", sign=False)
    boards = os.path.join(tmp, "boards")
    os.makedirs(boards)
    with open(os.path.join(boards, "testboard.conf"), "w") as f:
        f.write(BOARD_CONF)
    with open(os.path.join(boards, "testboard.env"), "w") as f:
        f.write("bootcmd=run distro_bootcmd\nbootdelay=2\nbaudrate=115200\n")
    s.board = os.path.join(boards, "testboard.conf")
    return s


@pytest.fixture(scope="module")
def image(src, tmp_path_factory):
    """qemu-arm64 at its [disk] size (2G), with per-unit values."""
    out = str(tmp_path_factory.mktemp("provimg") / "disk.img")
    rec = provision.provision_image("qemu-arm64", src.path, "qemu-arm64/stable", out, key_pub=[src.pub],
                                    unit_values={"serial#": "A0001", "ethaddr": "02:00:00:00:00:01"},
                                    remote="http://updates.example/repo")
    return rec


def test_image_has_the_boards_partition_table(image):
    table = sfdisk_json(image["image"])
    assert table["label"] == "gpt"
    assert image["image_size"] == 2 << 30 == os.path.getsize(image["image"])
    [part] = table["partitions"]
    assert part["start"] == 2048 and part["name"] == "sysroot" and part["attrs"] == "LegacyBIOSBootable"
    assert part["start"] + part["size"] <= table["lastlba"] + 1
    assert part["uuid"].lower() == image["partitions"][0]["uuid"]


def test_sysroot_file_system_passes_e2fsck_and_has_the_layout(image):
    dev = part_device(image["image"], 2048)
    res = subprocess.run(["e2fsck", "-fn", dev], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    assert ls(dev, "/") == ["boot", "boot.scr", "lost+found", "updater"]
    assert ls(dev, "/boot") == ["boot.scr", "updater-env.txt"]
    assert ls(dev, "/updater") == ["config", "deploy", "keys", "repo", "state", "tmp", "var"]
    assert ls(dev, "/updater/deploy") == [image["deployment"]]
    assert ls(dev, "/updater/keys") == ["build.key.pub"]
    config = cat(dev, "/updater/config").decode()
    for line in ("board = qemu-arm64", "bootloader = uboot", "url = http://updates.example/repo",
                 "branch = qemu-arm64/stable", "keys = build.key.pub"):
        assert line in config
    assert cat(dev, "/updater/repo/refs/heads/qemu-arm64/stable").decode().strip() == image["commit"]
    scr = cat(dev, "/boot/boot.scr")
    assert scr[:4] == b"\x27\x05\x19\x56" and b"updater: boot script" in scr
    assert cat(dev, "/boot.scr") == scr  # the second copy distro_bootcmd finds first
    assert "upd_current=%s" % image["deployment"] in cat(dev, "/boot/updater-env.txt").decode()


def test_deployment_files_are_hard_links_to_repository_objects(image, src):
    dev = part_device(image["image"], 2048)
    dep = "/updater/deploy/" + image["deployment"]
    tree = src.repo.load_tree(src.repo.load_commit(bytes.fromhex(image["commit"])).tree)
    usr = [d for d in tree.dirs if d[0] == "usr"][0]
    bin_tree = src.repo.load_tree([d for d in src.repo.load_tree(usr[1]).dirs if d[0] == "bin"][0][1])
    oid = dict((e[0], e[1]) for e in bin_tree.files)["hello"]
    h = to_hex(oid)
    obj = inode_of(dev, "/updater/repo/objects/%s/%s.file" % (h[:2], h[2:]))
    assert inode_of(dev, dep + "/usr/bin/hello") == obj == inode_of(dev, dep + "/usr/bin/hello2")
    assert "Links: 3" in debugfs(dev, "stat <%d>" % obj)  # the object and two deployment names
    kernel_obj = debugfs(dev, "stat %s/boot/vmlinuz" % dep)
    assert "Links: 2" in kernel_obj
    # /etc is copied (the device merges it), empty files are fresh inodes
    assert "Links: 1" in debugfs(dev, "stat %s/etc/app.conf" % dep)
    assert cat(dev, dep + "/etc/app.conf") == b"version=1.0\n"
    assert "Links: 1" in debugfs(dev, "stat %s/usr/share/doc/empty" % dep)
    assert "Type: symlink" in debugfs(dev, "stat %s/usr/bin/hl" % dep)
    # a file with zero blocks reads back whole
    assert cat(dev, dep + "/usr/share/doc/zeros") == bytes(3 * 4096) + b"tail"


def test_flash_env_image_holds_defaults_unit_values_and_the_contract(image):
    board = board_mod.load("qemu-arm64")
    env_path = image["image"] + ".env"
    assert image["env"]["file"] == env_path and image["env"]["written_to"] == "file"
    assert os.path.getsize(env_path) == 64 << 20 == board.env.medium_size
    env = env_at(env_path, 0, 0x40000)
    assert env.valid()
    v = env.variables
    assert v["bootcmd"] == "run distro_bootcmd"  # U-Boot's defaults are kept
    assert v["serial#"] == "A0001" and v["ethaddr"] == "02:00:00:00:00:01"
    assert v["upd_current"] == image["deployment"] and "upd_trial" not in v
    assert v["upd_count"] == "0" and v["upd_limit"] == "3"
    assert v["upd_kernel"] == "boot/vmlinuz" and v["upd_initrd"] == "boot/initrd.img"
    with open(env_path, "rb") as f:
        f.seek(0x40000)
        assert f.read(1 << 20) == b"\xff" * (1 << 20)  # the rest of the bank is erased flash
    # the contract read back through the updater's own backend, and what U-Boot would boot
    bl = bootloader.UBootBootloader(board, env_file=env_path)
    contract = bl.read()
    assert contract["env_ok"] and contract["current"] == image["deployment"] and not contract["trial"]
    assert bootloader.simulate_boot(contract)[0] == image["deployment"]


def test_record_says_what_was_made(image, src):
    rec = image
    assert set(provision.RECORD_KEYS) <= set(rec)
    assert rec["board"] == "qemu-arm64" and rec["version"] == "1.0" and rec["signed_by"] == "build.key.pub"
    assert rec["commit"] == to_hex(src.commits[("qemu-arm64/stable", "1.0")])
    assert rec["image_sha256"] == sha256(rec["image"])
    parsed = bmap.parse_bmap(open(rec["bmap"], "rb").read())
    assert parsed["mapped_blocks"] * 4096 == rec["mapped_size"] < rec["image_size"] // 20
    assert rec["unit_values"] == {"serial#": "A0001", "ethaddr": "02:00:00:00:00:01"}
    assert rec["source_date_epoch"] == EPOCH  # default: the commit's time
    assert rec["env"]["contract"]["current"] == rec["deployment"]


def test_bmaptool_copy_reproduces_the_image(image, tmp_path):
    dest = str(tmp_path / "copy.img")
    run(["bmaptool", "-q", "copy", image["image"], dest])  # finds IMAGE.bmap beside the image
    assert sha256(dest) == image["image_sha256"]


def test_same_inputs_give_identical_bytes_and_the_epoch_matters(src, tmp_path):
    outs = []
    for name, epoch in (("a", 1234567890), ("b", 1234567890), ("c", 1234567891)):
        os.makedirs(str(tmp_path / name))
        out = str(tmp_path / name / "disk.img")
        rec = provision.provision_image("qemu-arm64", src.path, "qemu-arm64/stable", out, size="96M",
                                        key_pub=[src.pub], unit_values={"serial#": "A1"}, source_date_epoch=epoch)
        outs.append((rec, [sha256(p) for p in (out, out + ".bmap", out + ".env")]))
    assert outs[0][1] == outs[1][1]
    assert outs[0][0]["image_sha256"] == outs[1][0]["image_sha256"]
    assert outs[2][1][0] != outs[0][1][0]  # another SOURCE_DATE_EPOCH, other time stamps
    assert not [n for n in os.listdir(str(tmp_path / "a")) if n.startswith(".")]  # no scratch left


def test_env_inside_an_mbr_image_with_a_fat_boot_partition(src, tmp_path):
    """A block env on the disk itself: both redundant copies land in the image, mapped by the bmap
    even where they are zero, so flashing over old data still gives a valid env and table."""
    fw = tmp_path / "MLO"
    fw.write_bytes(b"\x00" * 8192 + b"first stage loader" + b"\x00" * 5000)
    out = str(tmp_path / "unit.img")
    rec = provision.provision_image(src.board, src.path, "testboard/stable", out, size="64M",
                                    unit_values={"serial#": "B7"}, boot_files={"MLO": str(fw)})
    assert rec["signed_by"] is None and rec["env"]["written_to"] == "image"
    assert not os.path.exists(out + ".env")
    table = sfdisk_json(out)
    assert table["label"] == "dos"
    fat, root = table["partitions"]
    assert fat["start"] == 8192 and fat["type"] == "c" and root["bootable"] and root["type"] == "83"
    assert subprocess.run(["e2fsck", "-fn", part_device(out, root["start"])], stdout=subprocess.PIPE).returncode == 0
    env = env_at(out, 0x260000, 0x20000, offset2=0x280000)
    assert env.valid() and env.variables["upd_current"] == rec["deployment"] and env.variables["serial#"] == "B7"
    c1, c2 = env.copies  # both copies carry the provisioned env, with equal flags (copy 1 in force)
    assert c1.ok and c2.ok and c1.data == c2.data and c1.flags == c2.flags and env.active == 0
    board = board_mod.load(src.board)
    assert bootloader.UBootBootloader(board, env_file=out).read()["current"] == rec["deployment"]
    # flash onto a medium full of old data: only mapped blocks are written
    dest = str(tmp_path / "old-emmc.img")
    with open(dest, "wb") as f:
        f.write(b"\xa5" * os.path.getsize(out))
    flash_over(out, dest)
    with open(dest, "rb") as f:
        f.seek(2 << 20)
        assert f.read(4096) == b"\xa5" * 4096  # unmapped: the medium's old bytes are still there
    strip = lambda parts: [dict((k, v) for k, v in p.items() if k != "node") for p in parts]  # noqa: E731
    assert strip(sfdisk_json(dest)["partitions"]) == strip(table["partitions"])
    env = env_at(dest, 0x260000, 0x20000, offset2=0x280000)
    assert env.valid() and env.copies[0].ok and env.copies[1].ok
    res = subprocess.run(["e2fsck", "-fn", part_device(dest, root["start"])], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert res.returncode == 0, res.stdout.decode()
    # the journal was zeroed (mke2fs's intent), not left with the medium's old bytes
    for off, length in ext4_journal_ranges(dest, root["start"] * 512):
        with open(dest, "rb") as f:
            f.seek(off + 4096)
            assert f.read(min(length - 4096, 1 << 20)) == bytes(min(length - 4096, 1 << 20))
    fat_img = "%s@@%d" % (dest, fat["start"] * 512)
    got = subprocess.run(["mtype", "-i", fat_img, "::/MLO"], stdout=subprocess.PIPE, env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
    assert got.stdout == fw.read_bytes()


def test_cli_prints_one_json_record(cli, src, tmp_path):
    out = str(tmp_path / "cli.img")
    r = cli("provision", "--board", "qemu-arm64", "--repo", src.path, "--ref", "qemu-arm64/stable",
            "--output", out, "--size", "64M", "--key-pub", src.pub, "--set", "serial#=C3", "--set",
            "bootdelay=0", "--json")
    assert r.rc == 0, r
    rec = json.loads(r.out)
    assert rec["image"] == out and rec["unit_values"] == {"serial#": "C3", "bootdelay": "0"}
    assert rec["image_size"] == 64 << 20 and rec["image_sha256"] == sha256(out)
    assert env_at(out + ".env", 0, 0x40000).variables["bootdelay"] == "0"
    r = cli("provision", "--board", "qemu-arm64", "--repo", src.path, "--ref", "qemu-arm64/stable",
            "--output", str(tmp_path / "h.img"), "--size", "64M", "--key-pub", src.pub, "-q")
    assert r.rc == 0 and "provisioned" in r.out and "mapped" in r.out


def test_target_mode_fills_a_mounted_root(src, tmp_path):
    target = tmp_path / "mnt"
    (target / "lost+found").mkdir(parents=True)
    env_out = str(tmp_path / "flash1.img")
    rec = provision.provision_target("qemu-arm64", src.path, "qemu-arm64/stable", str(target),
                                     key_pub=[src.pub], env_output=env_out, unit_values={"serial#": "T1"})
    dep = target / "updater" / "deploy" / rec["deployment"]
    h = rec["commit"]
    assert (target / "boot" / "boot.scr").read_bytes()[:4] == b"\x27\x05\x19\x56"
    assert (target / "updater" / "repo" / "refs" / "heads" / "qemu-arm64" / "stable").read_text().strip() == h
    st = os.stat(str(dep / "usr" / "bin" / "hello"))
    assert st.st_nlink == 3 and os.stat(str(dep / "boot" / "vmlinuz")).st_nlink == 2
    assert os.stat(str(dep / "etc" / "app.conf")).st_nlink == 1
    assert os.stat(str(target / "updater" / "config")).st_mtime == EPOCH
    env = env_at(env_out, 0, 0x40000)
    assert env.variables["upd_current"] == rec["deployment"] and env.variables["serial#"] == "T1"
    assert rec["env"]["written_to"] == "file" and rec["target"] == str(target)
    # without --env-output: no env, the fallback file names the deployment
    other = tmp_path / "mnt2"
    other.mkdir()
    rec2 = provision.provision_target("qemu-arm64", src.path, "qemu-arm64/stable", str(other), key_pub=[src.pub])
    assert rec2["env"]["written_to"] is None
    assert "upd_current=%s" % rec2["deployment"] in (other / "boot" / "updater-env.txt").read_text()


def test_target_mode_refuses_a_non_empty_directory_and_cleans_up_on_failure(src, tmp_path, cli):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "etc").mkdir()
    r = cli("provision", "--board", "qemu-arm64", "--repo", src.path, "--ref", "qemu-arm64/stable",
            "--target", str(busy), "--key-pub", src.pub)
    assert r.rc == 2 and "not empty" in r.err
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("provision", "--board", "qemu-arm64", "--repo", src.path, "--ref", "qemu-arm64/stable",
            "--target", str(empty), "--key-pub", src.pub, "--boot-cmd", str(tmp_path / "missing.cmd"))
    assert r.rc == 2 and "missing.cmd is missing" in r.err
    assert os.listdir(str(empty)) == []


def test_no_root_needed_under_fakeroot(src, tmp_path):
    """As an unprivileged user under fakeroot (owners faked for the repository and for mkfs.ext4 -d,
    which runs inside the same session) the image is byte-identical to one built as root."""
    import shutil
    import tempfile

    if shutil.which("fakeroot") is None or not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs fakeroot and Debian's /usr/bin/python3 (run .ci/setup)")
    probe = subprocess.run(["su", "-s", "/bin/sh", "nobody", "-c", "test -r %s/updater/__init__.py" % ROOT])
    if probe.returncode != 0:
        pytest.skip("the user nobody cannot read the checkout %s" % ROOT)
    work = tempfile.mkdtemp(prefix="prov-nobody-", dir="/tmp")
    try:
        shutil.copytree(src.path, os.path.join(work, "repo"), symlinks=True)
        shutil.copy(src.pub, os.path.join(work, "build.pub"))
        run(["chown", "-R", "nobody", work])
        cmd = ("cd %s && PYTHONPATH=%s fakeroot /usr/bin/python3 -m updater -q provision --board qemu-arm64 "
               "--repo repo --ref qemu-arm64/stable --output %s/nobody.img --size 64M --key-pub build.pub --json"
               % (work, ROOT, work))
        res = subprocess.run(["su", "-s", "/bin/sh", "nobody", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert res.returncode == 0, res.stderr.decode()
        rec = json.loads(res.stdout)
        assert os.stat(os.path.join(work, "nobody.img")).st_uid != 0
        mine = provision.provision_image("qemu-arm64", src.path, "qemu-arm64/stable", str(tmp_path / "root.img"),
                                         size="64M", key_pub=[os.path.join(work, "build.pub")])
        assert rec["image_sha256"] == mine["image_sha256"] == sha256(os.path.join(work, "nobody.img"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_example_factory_script(src, tmp_path):
    """docs/examples/factory.py: a batch of units from one build, through the library."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("factory", os.path.join(ROOT, "docs", "examples", "factory.py"))
    factory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(factory)
    out = str(tmp_path / "out")
    rc = factory.main(["--board", "qemu-arm64", "--repo", src.path, "--ref", "qemu-arm64/stable", "--key-pub", src.pub,
                       "--out-dir", out, "--first", "7", "--count", "3", "--mac-base", "02:00:00:00:10:fe",
                       "--size", "64M", "--prefix", "QA"])
    assert rc == 0
    recs = [json.loads(line) for line in open(os.path.join(out, "audit.jsonl"))]
    assert [r["serial"] for r in recs] == ["QA-00007", "QA-00008", "QA-00009"]
    assert sorted(os.listdir(out)) == ["QA-00007.env", "QA-00008.env", "QA-00009.env", "audit.jsonl",
                                       "shared.img", "shared.img.bmap"]
    assert len(set(r["image_sha256"] for r in recs)) == 1
    macs = [env_at(os.path.join(out, "QA-%05d.env" % n), 0, 0x40000).variables["ethaddr"] for n in (7, 8, 9)]
    assert macs == ["02:00:00:00:10:fe", "02:00:00:00:10:ff", "02:00:00:00:11:00"]
    # a unit's env image is exactly what provisioning that unit on its own writes
    direct = provision.provision_image("qemu-arm64", src.path, "qemu-arm64/stable", str(tmp_path / "one.img"),
                                       size="64M", key_pub=[src.pub],
                                       unit_values={"serial#": "QA-00009", "ethaddr": "02:00:00:00:11:00"})
    assert direct["env"]["file_sha256"] == recs[2]["env"]["file_sha256"] == sha256(os.path.join(out, "QA-00009.env"))
    assert direct["image_sha256"] == recs[0]["image_sha256"]
    # a board with its env on the disk: one image per unit
    rc = factory.main(["--board", src.board, "--repo", src.path, "--ref", "testboard/stable", "--out-dir",
                       str(tmp_path / "bb"), "--count", "2", "--size", "64M"])
    assert rc == 0
    assert sorted(n for n in os.listdir(str(tmp_path / "bb")) if n.endswith(".img")) == ["UNIT-00001.img", "UNIT-00002.img"]
    # a bad build fails before the first unit, with the library's message and exit code
    rc = factory.main(["--board", "qemu-arm64", "--repo", src.path, "--ref", "qemu-arm64/unsigned", "--key-pub",
                       src.pub, "--out-dir", str(tmp_path / "bad")])
    assert rc == 1 and not os.path.exists(str(tmp_path / "bad" / "UNIT-00001.env"))
