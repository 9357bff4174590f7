"""A strict INI dialect for updater's small text configuration files.

Used by the repository config, the device configuration and the board configs: readable by host
and device (MicroPython has no configparser). Format (see docs/config-format.md):

    # comment (a line whose first non-blank character is '#' or ';')
    [section]
    key = value

Section and key names are lower-case ``[a-z0-9_.-]``; values are the text after '=' with blanks
trimmed. Duplicate sections or keys, text outside a section and unknown keys (checked by the
consumer through ``Section.done()``) are errors naming the file and line.
"""

from .errors import ConfigError

INI_FORMAT = 1

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_.-"
_REQUIRED = object()


def _valid_name(name):
    if not name:
        return False
    for ch in name:
        if ch not in _NAME_CHARS:
            return False
    return True


class Section:
    """The keys of one section, with typed getters that name the file and line on error."""

    def __init__(self, source, name, line):
        self.source = source
        self.name = name
        self.line = line
        self.values = {}
        self.lines = {}
        self.used = {}

    def _where(self, key):
        line = self.lines.get(key, self.line)
        return "%s:%d: [%s] %s" % (self.source, line, self.name, key)

    def has(self, key):
        return key in self.values

    def keys(self):
        return sorted(self.values)

    def get(self, key, default=_REQUIRED):
        self.used[key] = True
        if key in self.values:
            return self.values[key]
        if default is _REQUIRED:
            raise ConfigError(
                "reading %s: section [%s] lacks the required key '%s'" % (self.source, self.name, key),
                "add '%s = ...' under [%s]" % (key, self.name),
            )
        return default

    def get_int(self, key, default=_REQUIRED, minimum=None, maximum=None):
        raw = self.get(key, None if default is not _REQUIRED else _REQUIRED)
        if raw is None:
            return default
        value = parse_int(raw, self._where(key))
        if minimum is not None and value < minimum:
            raise ConfigError("%s: expected at least %d, got %d" % (self._where(key), minimum, value))
        if maximum is not None and value > maximum:
            raise ConfigError("%s: expected at most %d, got %d" % (self._where(key), maximum, value))
        return value

    def get_bool(self, key, default=_REQUIRED):
        raw = self.get(key, None if default is not _REQUIRED else _REQUIRED)
        if raw is None:
            return default
        low = raw.lower()
        if low in ("yes", "true", "1", "on"):
            return True
        if low in ("no", "false", "0", "off"):
            return False
        raise ConfigError("%s: expected yes or no, got '%s'" % (self._where(key), raw))

    def get_list(self, key, default=_REQUIRED):
        raw = self.get(key, None if default is not _REQUIRED else _REQUIRED)
        if raw is None:
            return default
        return raw.split()

    def done(self):
        """Raise ConfigError for any key no getter asked for (unknown keys are errors)."""
        for key in sorted(self.values):
            if key not in self.used:
                raise ConfigError(
                    "%s: unknown key '%s'" % (self._where(key), key),
                    "check the spelling against docs/config-format.md",
                )


class Ini:
    """A parsed file: sections by name."""

    def __init__(self, source):
        self.source = source
        self.sections = {}

    def has(self, name):
        return name in self.sections

    def section(self, name, required=True):
        if name in self.sections:
            return self.sections[name]
        if required:
            raise ConfigError(
                "reading %s: the section [%s] is missing" % (self.source, name),
                "add a [%s] section" % name,
            )
        return Section(self.source, name, 0)

    def names(self):
        return sorted(self.sections)

    def only(self, allowed):
        """Raise ConfigError for a section not in ``allowed``."""
        for name in sorted(self.sections):
            if name not in allowed:
                sec = self.sections[name]
                raise ConfigError(
                    "%s:%d: unknown section [%s] (expected one of: %s)"
                    % (self.source, sec.line, name, ", ".join(allowed))
                )


def parse_int(text, where="value"):
    """Decimal or 0x-hex integer, with an optional leading '-'."""
    raw = text.strip()
    neg = raw.startswith("-")
    body = raw[1:] if neg else raw
    try:
        if body.lower().startswith("0x"):
            value = int(body[2:], 16)
        else:
            if not body.isdigit():
                raise ValueError(body)
            value = int(body, 10)
    except ValueError:
        raise ConfigError("%s: expected an integer (decimal or 0x hex), got '%s'" % (where, text))
    return -value if neg else value


def parse(text, source="<config>"):
    """Parse INI text into an Ini; raise ConfigError naming source:line on any fault."""
    ini = Ini(source)
    current = None
    lineno = 0
    for raw in text.split("\n"):
        lineno += 1
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]"):
                raise ConfigError("%s:%d: a section header must end with ']': %s" % (source, lineno, line))
            name = line[1:-1].strip()
            if not _valid_name(name):
                raise ConfigError("%s:%d: bad section name '%s'" % (source, lineno, name))
            if name in ini.sections:
                raise ConfigError("%s:%d: section [%s] appears twice" % (source, lineno, name))
            current = Section(source, name, lineno)
            ini.sections[name] = current
            continue
        eq = line.find("=")
        if eq <= 0:
            raise ConfigError("%s:%d: expected 'key = value', got '%s'" % (source, lineno, line))
        key = line[:eq].strip()
        value = line[eq + 1 :].strip()
        if current is None:
            raise ConfigError("%s:%d: '%s' comes before any [section]" % (source, lineno, key))
        if not _valid_name(key):
            raise ConfigError("%s:%d: bad key name '%s'" % (source, lineno, key))
        if key in current.values:
            raise ConfigError("%s:%d: key '%s' appears twice in [%s]" % (source, lineno, key, current.name))
        current.values[key] = value
        current.lines[key] = lineno
    return ini


def dump(sections, header=None):
    """Text for ``sections``: a list of (name, [(key, value), ...]) in the order to write."""
    out = []
    if header:
        for line in header.split("\n"):
            out.append(("# " + line).rstrip())
        out.append("")
    for name, pairs in sections:
        if not _valid_name(name):
            raise ConfigError("writing config: bad section name '%s'" % name)
        out.append("[%s]" % name)
        for key, value in pairs:
            value = str(value)
            if not _valid_name(key) or "\n" in value:
                raise ConfigError("writing config: bad key or value in [%s]: %s" % (name, key))
            out.append("%s = %s" % (key, value))
        out.append("")
    return "\n".join(out)
