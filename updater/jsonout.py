"""Stable JSON for ``--json`` output: sorted keys, two-space indent, same bytes on every interpreter.

MicroPython's json.dumps has no sort_keys or indent, and its dict order is not insertion order.
"""

import binascii

_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _string(text):
    out = ['"']
    for ch in text:
        esc = _ESC.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _hexbytes(data):
    return binascii.hexlify(data).decode()


def dumps(value, indent=2, level=0):
    """JSON text for dicts, lists, str, int, bool, None; bytes become lower-case hex strings."""
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (bytes, bytearray)):
        return _string(_hexbytes(value))
    if isinstance(value, dict):
        if not value:
            return "{}"
        keys = sorted(value)
        items = [pad + _string(str(k)) + ": " + dumps(value[k], indent, level + 1) for k in keys]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        items = [pad + dumps(v, indent, level + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + end + "]"
    raise TypeError("cannot write %r as JSON" % (value,))
