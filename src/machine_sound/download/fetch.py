"""Getting one archive onto disk, whole and verified, with pooch (`pooch.retrieve`: the temporary file, the final
checksum check, the move into place) and a downloader of its protocol that resumes: pooch restarts a broken
download from zero, which for MIMII's zips of about 10 GB matters, so `ResumingDownloader` keeps what arrived in
`<file>.part` and asks the server for the rest with an HTTP Range request (RFC 9110, section 14), on a retry and
on the next run. A file that is not complete and verified never has the archive's name."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from machine_sound.errors import DataError, MachineSoundError

log = logging.getLogger(__name__)
CONNECT_SECONDS = 8  # no answer within this: no network (the command ends within seconds)
READ_SECONDS = 60  # silence in the middle of a transfer for this long: the connection is taken as broken
BUSY = {429, 500, 502, 503, 504}  # answers that are retried like a broken connection (Zenodo rate-limits)
CHUNK = 1 << 16  # bytes read at a time: a broken connection loses at most the chunk it was reading
UNPACKED_PER_BYTE = 1.4  # WAV files deflate little: the unpacked tree is ~1.3x the zip (MIMII, DCASE 2020)


class NoNetwork(MachineSoundError):
    """The server could not be reached at all; main names what to fetch by hand."""


class ChecksumMismatch(DataError):
    """A complete file whose md5 differs from the published or recorded one."""


class NoSpace(DataError):
    """Too little free disk space for what comes next."""


def gigabytes(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def free_bytes(folder: Path) -> int:
    """Free bytes on the disk that holds `folder` (or its nearest existing parent)."""
    folder = Path(folder).resolve()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def require_space(folder: Path, what: str, download: int, unpacked: int) -> None:
    """DataError in one line when the disk of `folder` has less than `download + unpacked` bytes free."""
    free = free_bytes(folder)
    if download + unpacked > free:
        parts = ([f"{gigabytes(download)} to download"] if download else []) + (
            [f"about {gigabytes(unpacked)} unpacked"] if unpacked else [])
        raise NoSpace(f"not enough free disk space in {folder} for {what}: it needs {gigabytes(download + unpacked)}"
                        f" ({', '.join(parts)}) and {gigabytes(free)} is free; free some space or give "
                        "dest=<a folder on another disk>")


def md5_of(path: Path) -> str:
    """The md5 of a file, by pooch (read in chunks)."""
    import pooch

    return pooch.file_hash(str(path), alg="md5")


@contextmanager
def only_writer(folder: Path):
    """An exclusive lock on `folder` (POSIX `flock` on `folder/.machine-sound-download.lock`) for as long as the
    block runs, so two downloads never write into one destination. DataError when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    path = Path(folder) / ".machine-sound-download.lock"
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DataError(f"another machine-sound-download is working in {folder}; wait for it to end (or give "
                            "another dest=)") from None
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            fcntl.flock(lock, fcntl.LOCK_UN)


class ResumingDownloader:
    """A pooch downloader (`pooch.retrieve(..., downloader=...)`, or called alone) that downloads `url` into
    `part`, resuming from the bytes already there, computes the md5 on the way and, once the file is complete and
    its md5 is `md5` (when given), hands it to `output_file`: a second name (`hand_over`, `link=True`) or a move.
    A broken or reset connection and a busy answer (`BUSY`) are tried again, from where it stopped, up to
    `retries` times in a row without progress, with waits of 2, 4, 8 ... s (at most 30). Raises NoNetwork when no
    connection could be made at all, ChecksumMismatch (deleting the part) for a complete file with another md5,
    and a DataError saying how far it got when the tries are spent (the part is kept: the next run resumes it).
    After a call, `md5` holds the file's md5."""

    def __init__(self, part: Path, md5: str | None = None, size: int | None = None, retries: int = 5,
                 unpacked_per_byte: float = UNPACKED_PER_BYTE, progressbar: bool | None = None,
                 md5_origin: str = "was expected", advice: str = "run the command again to download it afresh",
                 link: bool = True):
        self.part, self.md5, self.size, self.retries = Path(part), md5, size, retries
        self.md5_origin, self.advice = md5_origin, advice  # what a mismatch says of `md5`, and what to do
        self.link = link  # hand the part over as a second name (`hand_over`), or move it
        self.unpacked_per_byte, self.progressbar = unpacked_per_byte, progressbar

    @staticmethod
    def wait(attempt: int) -> float:
        """Seconds to wait before try `attempt + 1`."""
        return min(2 ** attempt, 30)

    def __call__(self, url: str, output_file: str, pooch=None, check_only: bool = False):
        import requests

        if check_only:
            return requests.head(url, timeout=(CONNECT_SECONDS, READ_SECONDS), allow_redirects=True).ok
        hasher, received = self._hash_part()
        before, attempt = received, 0
        while True:
            try:
                hasher, received = self._transfer(requests, url, hasher, received)
                break
            except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                    requests.exceptions.MissingSchema) as err:
                raise DataError(f"{url} is not an address to download from ({reason(err)}); check mirror= or "
                                "the catalog's url") from None
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    IncompleteTransfer) as err:
                got = self.part.stat().st_size if self.part.exists() else 0
                if got == 0:
                    self.part.unlink(missing_ok=True)  # an empty part is nothing to resume
                if got == before == received and attempt == 0 and could_not_connect(err):
                    raise NoNetwork(f"{type(err).__name__}: {reason(err)}") from None
                if got > received:  # it moved on: the tries count failures in a row
                    attempt = 0
                name = self.part.name.removesuffix(".part")
                where = f"broke off at {gigabytes(got)}{self._of()}" if got else "could not be downloaded"
                if attempt >= self.retries:
                    kept = f"{self.part} is kept: run the command again to resume it" if got else (
                        "run the command again later")
                    tries = f"{self.retries + 1} tries in a row" if self.retries else "1 try"
                    raise DataError(f"{name} {where} ({reason(err)}) after {tries}; {kept}") from None
                attempt += 1
                log.warning("%s %s (%s); trying again in %d s (try %d of %d)", name, where, reason(err),
                            self.wait(attempt), attempt + 1, self.retries + 1)
                time.sleep(self.wait(attempt))
                hasher, received = self._hash_part()
        got = hasher.hexdigest()
        name = self.part.name.removesuffix(".part")
        if self.md5 and got != self.md5:
            self.part.unlink()
            raise ChecksumMismatch(f"{name}: md5 {got} where {self.md5} {self.md5_origin}; the download is deleted: "
                                   f"{self.advice}")
        self.md5 = got
        if self.link:
            hand_over(self.part, Path(output_file))
        else:
            os.replace(self.part, output_file)
        return None

    def _of(self) -> str:
        return f" of {gigabytes(self.size)}" if self.size else ""

    def _hash_part(self):
        """An md5 of the bytes already in the part file, and their count."""
        hasher, count = hashlib.md5(), 0
        if self.part.exists():
            with open(self.part, "rb") as f:
                while chunk := f.read(1 << 20):
                    hasher.update(chunk)
                    count += len(chunk)
        return hasher, count

    def _transfer(self, requests, url: str, hasher, have: int):
        """Get the bytes from `have` on into the part file; (md5 so far, bytes in the part)."""
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(url, headers=headers, stream=True, timeout=(CONNECT_SECONDS, READ_SECONDS)) as response:
            if response.status_code == 416 and have:  # nothing after `have`: whole, or longer than the file
                whole = response.headers.get("Content-Range", "").rpartition("/")[2]
                if have == (self.size or (int(whole) if whole.isdigit() else None)):
                    return hasher, have
                log.warning("%s is longer than the file on the server; downloading it from the start", self.part)
                self.part.unlink()
                return self._transfer(requests, url, hashlib.md5(), 0)
            if response.status_code in BUSY:
                raise IncompleteTransfer(f"the server answered {response.status_code} {response.reason}")
            if response.status_code >= 400:
                raise DataError(f"{url} answered {response.status_code} {response.reason}; the record may have "
                                "moved: check its page (or give mirror=<a server holding the files>)")
            if have and response.status_code != 206:
                log.warning("the server ignored the request to resume %s at %s; downloading it from the start",
                            self.part.name.removesuffix(".part"), gigabytes(have))
                hasher, have = hashlib.md5(), 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else self.size
            if self.size and total and total != self.size:
                raise DataError(f"{url} offers {total} bytes where the catalog says {self.size}; the record may "
                                "have changed: check its page")
            self.size = self.size or total
            require_space(self.part.parent, self.part.name.removesuffix(".part"), (total or 0) - have,
                          int((total or 0) * self.unpacked_per_byte))
            from tqdm.auto import tqdm

            with open(self.part, "ab" if have else "wb") as out, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, miniters=1,
                    desc=self.part.name.removesuffix(".part"), disable=self.progressbar is False or None) as bar:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
                    hasher.update(chunk)
                    have += len(chunk)
                    bar.update(len(chunk))
        if total is not None and have != total:
            raise IncompleteTransfer(f"{have} of {total} bytes arrived")
        return hasher, have


class IncompleteTransfer(Exception):
    """The server closed the connection before the announced length arrived, or answered that it is busy."""


def hand_over(part: Path, output_file: Path) -> None:
    """Give pooch the finished part as its temporary file: a second name (hard link) for the same bytes, so an
    interruption while pooch checks it still leaves the part for the next run (the command removes the part once
    pooch has moved the file into place). Only where `hard_links` says the disk has them."""
    output_file.unlink(missing_ok=True)
    os.link(part, output_file)


def hard_links(folder: Path) -> bool:
    """Whether files in `folder` can have a second name (not on FAT/exFAT and some network disks)."""
    probe = Path(folder) / ".machine-sound-download.link-probe"
    try:
        probe.touch()
        os.link(probe, probe.with_name(probe.name + "2"))
        return True
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)
        probe.with_name(probe.name + "2").unlink(missing_ok=True)


def could_not_connect(err: BaseException) -> bool:
    """Whether `err` (requests) failed before any connection was made: no route, refused, no name, connect
    timeout. A connection reset or a silence after connecting means the server is there."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError  # NameResolutionError is one

    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, (NewConnectionError, ConnectTimeoutError)):
            return True
        inner = getattr(err, "reason", None)
        err = inner if isinstance(inner, BaseException) else (
            err.args[0] if err.args and isinstance(err.args[0], BaseException) else None)
    return False


def reason(err: BaseException) -> str:
    """The innermost message of a requests/urllib3 error chain (`MaxRetryError.reason`, an exception's first
    argument), without object addresses: 'Connection refused', 'Connection broken: IncompleteRead(...)'."""
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        inner = getattr(err, "reason", None)
        if isinstance(inner, BaseException):
            err = inner
        elif err.args and isinstance(err.args[0], BaseException):
            err = err.args[0]
        else:
            break
    text = err.args[0] if err.args and isinstance(err.args[0], str) else str(err) or type(err).__name__
    text = re.sub(r"<[^>]* at 0x[0-9a-f]+>: |^HTTPS?Connection(Pool)?\([^)]*\): ", "",
                  text.splitlines()[-1] if text else type(err).__name__)
    return re.sub(r"^\[Errno -?\d+\] ", "", text)
