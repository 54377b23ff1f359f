"""User-facing errors: raised for bad input and printed as one line by the entry points (no traceback)."""


class MachineSoundError(Exception):
    """Something the user can fix: a setting, a path or a file. The message says what and how."""


class ConfigError(MachineSoundError):
    """A setting is invalid (unknown machine, bad split fractions, ...)."""


class DataError(MachineSoundError):
    """The data on disk cannot be used (missing folder, unreadable file, wrong sample rate, ...)."""
