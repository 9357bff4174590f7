"""The U-Boot env codec: layout, strict validation, and U-Boot's choice between two copies."""

import struct
import zlib

import pytest

from updater import ubootenv as u
from updater.errors import EnvError, FormatError

SIZE = 0x1000
V1 = {"bootcmd": "run distro_bootcmd", "upd_current": "aaa.0", "spaced": " a b ", "eq": "x=y=z"}
V2 = dict(V1, upd_current="bbb.0", upd_trial="")


def copies(v_a, v_b, flags_a, flags_b, size=SIZE):
    return [u.encode(v_a, size, True, flags_a), u.encode(v_b, size, True, flags_b)]


def flip(image, offset, bit=0):
    b = bytearray(image)
    b[offset] ^= 1 << bit
    return bytes(b)


# --- layout ------------------------------------------------------------------------------------
def test_single_layout_matches_the_documented_fields():
    img = u.encode({"b": "2", "a": "1"}, 64)
    assert len(img) == 64
    assert img[4:13] == b"a=1\0b=2\0\0"  # sorted by name, then the empty entry
    assert img[13:] == b"\0" * (64 - 13)  # U-Boot pads with zeros
    assert struct.unpack("<I", img[:4])[0] == zlib.crc32(img[4:]) & 0xFFFFFFFF  # CRC covers padding


def test_redundant_layout_has_flags_outside_the_crc():
    img = u.encode({"a": "1"}, 64, redundant=True, flags=7, pad=0xFF)
    assert img[4] == 7
    assert img[5:10] == b"a=1\0\0" and img[10:] == b"\xff" * 54
    assert struct.unpack("<I", img[:4])[0] == zlib.crc32(img[5:]) & 0xFFFFFFFF


def test_empty_env_is_a_single_terminator():
    img = u.encode({}, 32, pad=0xFF)
    assert img[4:6] == b"\0\xff"
    assert u.parse(img).variables == {}


def test_roundtrip_values_with_spaces_equals_and_empty_value():
    v = {"a": "", "b": " lead and trail ", "c": "k=v=w", "d": "${x}; run y", "u": "gr\u00fc\u00df"}
    env = u.parse(u.encode(v, 256))
    assert env.valid() and env.variables == v


def test_full_env_fits_exactly_and_one_more_byte_does_not():
    data_size = 64 - 4
    value = "x" * (data_size - len("a=") - 2)  # entry NUL + terminator
    img = u.encode({"a": value}, 64)
    assert u.parse(img).variables == {"a": value}
    with pytest.raises(EnvError, match="the area holds 60"):
        u.encode({"a": value + "x"}, 64)


@pytest.mark.parametrize("name", ["a=b", "", "with space", "new\nline", "nul\0"])
def test_bad_names_are_rejected(name):
    with pytest.raises(EnvError):
        u.encode({name: "v"}, 64)


@pytest.mark.parametrize("value", ["new\nline", "cr\rx", "nul\0x"])
def test_bad_values_are_rejected(value):
    with pytest.raises(EnvError, match="cannot contain"):
        u.encode({"a": value}, 64)


def test_size_must_exceed_header():
    with pytest.raises(EnvError):
        u.encode({}, 4)
    with pytest.raises(EnvError):
        u.encode({}, 5, redundant=True)
    assert len(u.encode({}, 6, redundant=True)) == 6


def test_flags_out_of_range_rejected_not_truncated():
    with pytest.raises(EnvError):
        u.encode({}, 64, True, 256)


# --- strict decoding ---------------------------------------------------------------------------
def with_data(data, size=64):
    data = data + b"\0" * (size - 4 - len(data))
    return struct.pack("<I", zlib.crc32(data) & 0xFFFFFFFF) + data


def test_missing_terminator_with_valid_crc_is_reported_not_used():
    img = with_data(b"a=" + b"x" * 57 + b"\0")  # the last entry ends the area: no empty entry
    env = u.parse(img)
    assert not env.valid() and "no terminator" in env.problem()


def test_entry_without_nul_before_the_end():
    env = u.parse(with_data(b"a=1\0" + b"b" * 56))
    assert not env.valid() and "no NUL" in env.problem()


@pytest.mark.parametrize("data", [b"novalue\0\0", b"=v\0\0", b"a=1\0a=2\0\0", b"a=\xff\xfe\0\0"])
def test_malformed_entries(data):
    env = u.parse(with_data(data))
    assert not env.valid() and "passes its CRC but" in env.problem()


def test_copy_sizes_must_match():
    with pytest.raises(FormatError):
        u.parse([u.encode({}, 64, True), u.encode({}, 128, True)])


def test_text_format_roundtrip_and_errors():
    v = {"b": "2", "a": "x=y"}
    assert u.format_text(v) == "a=x=y\nb=2\n"
    assert u.parse_text("# comment\n\n" + u.format_text(v)) == v
    for bad in ("novalue\n", "=x\n", "a=1\na=2\n"):
        with pytest.raises(FormatError):
            u.parse_text(bad)


def test_apply_changes_deletes_on_empty_or_none():
    assert u.apply_changes({"a": "1", "b": "2"}, {"a": "", "b": None, "c": "3"}) == {"c": "3"}
    with pytest.raises(EnvError):
        u.apply_changes({}, {"x=y": "1"})


# --- choosing a copy, as U-Boot does -----------------------------------------------------------
@pytest.mark.parametrize("fa,fb,want", [
    (1, 2, 1), (2, 1, 0), (5, 200, 1), (255, 0, 1), (0, 255, 0), (254, 255, 1), (7, 7, 0), (0, 0, 0),
])
def test_counter_flags(fa, fb, want):
    env = u.parse(copies(V1, V2, fa, fb), u.FLAGS_COUNTER)
    assert env.active == want
    assert env.variables == (V1 if want == 0 else V2)


@pytest.mark.parametrize("fa,fb,want", [
    (1, 0, 0), (0, 1, 1), (1, 1, 0), (0, 0, 0), (0xFF, 1, 0), (1, 0xFF, 1), (0xFF, 0, 0), (2, 3, None),
])
def test_boolean_flags(fa, fb, want):
    env = u.parse(copies(V1, V2, fa, fb), u.FLAGS_BOOLEAN)
    assert env.active == want
    if want is None:
        assert not env.valid() and "default environment" in env.problem()


@pytest.mark.parametrize("copy", [0, 1])
@pytest.mark.parametrize("where", ["crc", "data", "padding"])
def test_bit_flip_in_either_copy_makes_the_other_win(copy, where):
    imgs = copies(V1, V2, 4, 3)  # copy 1 (V1) is newer
    offset = {"crc": 1, "data": 9, "padding": SIZE - 1}[where]
    imgs[copy] = flip(imgs[copy], offset, 3)
    env = u.parse(imgs)
    assert env.active == 1 - copy
    assert env.variables == (V2 if copy == 0 else V1)
    assert not env.copies[copy].ok


@pytest.mark.parametrize("copy", [0, 1])
def test_bit_flip_in_flags_changes_the_choice_but_not_the_crc(copy):
    imgs = copies(V1, V2, 4, 3)
    imgs[copy] = flip(imgs[copy], 4, 4)  # 4 -> 20 or 3 -> 19: flags are outside the CRC
    env = u.parse(imgs)
    assert env.copies[copy].ok
    assert env.active == copy


def test_both_copies_bad():
    imgs = copies(V1, V2, 4, 3)
    imgs = [flip(imgs[0], 20), flip(imgs[1], 20)]
    env = u.parse(imgs)
    assert env.active is None and env.variables is None
    assert "both copies fail their CRC" in env.problem()


def test_erased_area_is_named_as_such():
    env = u.parse([b"\xff" * SIZE, b"\xff" * SIZE])
    assert not env.valid() and "erased" in env.problem()


def test_single_copy():
    img = u.encode(V1, SIZE)
    assert u.parse(img).variables == V1
    env = u.parse(flip(img, 100))
    assert not env.valid() and "only copy" in env.problem()


# --- where the next save goes ------------------------------------------------------------------
@pytest.mark.parametrize("fa,fb,index,flags", [(4, 3, 1, 5), (3, 4, 0, 5), (255, 254, 1, 0), (255, 0, 0, 1)])
def test_target_is_the_other_copy_with_flags_advanced(fa, fb, index, flags):
    env = u.parse(copies(V1, V2, fa, fb))
    assert env.target() == (index, flags)
    imgs = copies(V1, V2, fa, fb)
    imgs[index] = u.encode({"new": "1"}, SIZE, True, flags)
    assert u.parse(imgs).variables == {"new": "1"}  # the write takes over


def test_target_boolean_and_nothing_valid():
    env = u.parse(copies(V1, V2, 0, 1), u.FLAGS_BOOLEAN)
    assert env.target() == (0, u.FLAG_ACTIVE)
    assert u.parse([b"\0" * SIZE, b"\0" * SIZE]).target() == (0, u.FLAG_ACTIVE)
    assert u.parse(u.encode(V1, SIZE)).target() == (0, None)
