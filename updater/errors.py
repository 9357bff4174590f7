"""The one exception tree of updater.

Every error raised on purpose derives from UpdaterError. Classes are split by who is at fault:
the caller (usage or configuration: exit code 2), the data (malformed, corrupt or untrusted input),
or the environment (storage, network, locks, missing platform features). A message says what was
being done, to what, and why, with expected vs got; ``hint`` says what to try (field-facing).
"""


class UpdaterError(Exception):
    """Base class. ``exit_code`` is what the command line returns for it."""

    exit_code = 1

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self):
        return self.message


# --- the caller is at fault (exit 2) -------------------------------------------------------
class UsageError(UpdaterError):
    """Bad command-line usage: unknown option, missing argument, bad value."""

    exit_code = 2


class ConfigError(UpdaterError):
    """A configuration file (repo, device, board) is missing, malformed or inconsistent."""

    exit_code = 2


# --- the data is at fault (exit 1) -----------------------------------------------------------
class FormatError(UpdaterError):
    """Bytes that do not follow their documented format (CBOR, env image, delta, ...)."""


class IntegrityError(UpdaterError):
    """Content does not match its checksum, size or declared structure (corruption)."""


class TrustError(UpdaterError):
    """Authentication failed: bad or missing signature, unknown key, expired, downgrade."""


class NotFoundError(UpdaterError):
    """A named thing does not exist: object, ref, revision, deployment, board."""


class AmbiguousError(UpdaterError):
    """A revision prefix or name matches more than one thing."""


class UnsafePathError(UpdaterError):
    """A file name or path that could escape its directory, or a forbidden file type."""


# --- the environment is at fault (exit 1) ----------------------------------------------------
class StorageError(UpdaterError):
    """Reading or writing the file system or a device failed."""


class SpaceError(StorageError):
    """Not enough free space (after the configured reserve) for the operation."""


class LockedError(UpdaterError):
    """Another updater process holds the lock."""


class FetchError(UpdaterError):
    """Fetching from a remote (HTTP, serial, file) failed."""


class EnvError(UpdaterError):
    """The U-Boot environment cannot be read or written safely."""


class BootError(UpdaterError):
    """Boot selection or deployment state is inconsistent."""


class UnsupportedError(UpdaterError):
    """This platform (e.g. MicroPython) lacks a feature the operation needs."""


def describe(err):
    """One line for a terminal: the message, then the hint if any."""
    text = str(err) or err.__class__.__name__
    hint = getattr(err, "hint", None)
    if hint:
        text = text + "\n  try: " + hint
    return text
