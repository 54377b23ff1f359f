"""User-facing errors: raised for bad input and printed as one line by the entry points (no traceback)."""

from __future__ import annotations

import errno


class MachineSoundError(Exception):
    """Something the user can fix: a setting, a path or a file. The message says what and how."""


class ConfigError(MachineSoundError):
    """A setting is invalid (unknown machine, bad split fractions, ...)."""


class DataError(MachineSoundError):
    """The data on disk cannot be used (missing folder, unreadable file, wrong sample rate, ...)."""


def require_positive(setting: str, value, integer: bool = False):
    """`value` when it is a positive finite number (a whole one with `integer`); ConfigError naming `setting`
    otherwise."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not 0 < value < float("inf"):
        raise ConfigError(f"{setting}={value!r}: a positive {'whole ' if integer else ''}number")
    return value


# A write that failed for a reason the user can fix: a full disk or quota, a folder that is not writable.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def write_error(err: BaseException) -> DataError | None:
    """A DataError naming the file and the cause for an OSError of `WRITE_ERRNOS`; None for anything else."""
    if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
        where = err.filename or "the output folder"
        return DataError(f"cannot write {where}: {err.strerror or err}; free some space or choose a writable "
                         "output folder")
    return None


def user_error(err: BaseException) -> MachineSoundError | None:
    """The MachineSoundError behind `err`, also when Hydra's instantiate or an OmegaConf resolver wrapped it, or
    the one a failed write (`write_error`) stands for."""
    seen = set()
    while err is not None and id(err) not in seen:
        mine = err if isinstance(err, MachineSoundError) else write_error(err)
        if mine is not None:
            return mine
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def one_line(err: BaseException) -> str:
    """The user-facing line of an error, also when a DataLoader worker wrapped it with a traceback."""
    text = str(user_error(err) or err).strip()
    if "Original Traceback" in text:  # re-raised from a worker: the original message is the last line
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return text.splitlines()[0] if text else type(err).__name__
