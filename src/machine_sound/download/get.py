"""The download itself, archive by archive, under the destination's lock: skip what is unpacked, verify what is
there, fetch the rest (`fetch`), unpack (`unpack`) and record it (`unpack.State`)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from machine_sound.download.fetch import (
    UNPACKED_PER_BYTE,
    ChecksumMismatch,
    NoNetwork,
    ResumingDownloader,
    gigabytes,
    hard_links,
    md5_of,
    only_writer,
    require_space,
)
from machine_sound.download.unpack import STATE, BadArchive, State, tree_size, unpack
from machine_sound.errors import WRITE_ERRNOS, DataError

log = logging.getLogger("machine_sound.download")


@dataclass
class Outcome:
    """What a run did: the destination, and the archives fetched, found already there, or left as found."""

    dest: Path
    downloaded: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)  # already in the destination (kept, or put there by hand)
    skipped: list[str] = field(default_factory=list)  # their folder was already unpacked by this command
    left: list[str] = field(default_factory=list)  # a folder of theirs is there, not (or no longer) as unpacked


def by_hand(archives, record: str, dest: Path) -> str:
    names = ", ".join(a.file for a in archives)
    return f"fetch {names} by hand from {record} into {dest.resolve()}/ and run this command again to verify and unpack"


def part_size(dest: Path, archive) -> int:
    part = dest / f"{archive.file}.part"
    return part.stat().st_size if part.exists() else 0


def download(catalog, wanted: dict, dest: Path, keep_archives: bool = False, mirror: str | None = None,
             retries: int = 5, progressbar: bool | None = None) -> Outcome:
    """Download, verify and unpack the archives of `catalog` (a `catalog.Catalog`) that `wanted` chooses into
    `dest` (see `cli`); `mirror` replaces the record's address by `<mirror>/<file>`. One run at a time per
    destination. DataError/ConfigError in one line for whatever stops it; NoNetwork's line says what to fetch by
    hand and where."""
    archives = catalog.select(wanted)
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise DataError(f"dest={dest} is a file; give a folder")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"dest={dest}: cannot make the folder ({err.strerror or err})") from None
    state = State(dest)
    same_record(catalog, state, dest)
    if not os.access(dest, os.W_OK | os.X_OK):
        if all((dest / a.unpack / a.holds).exists() for a in archives):  # nothing to write: read it back
            return _look(catalog, archives, dest, state, Outcome(dest))
        raise DataError(f"dest={dest} is not writable; give a folder you can write to")
    try:
        with only_writer(dest):
            return _download(catalog, archives, dest, State(dest), keep_archives, mirror, retries, progressbar)
    except OSError as err:
        if err.errno not in WRITE_ERRNOS:
            raise
        raise DataError(f"cannot write in {dest}: {err.strerror}; free some space or give dest=<another "
                        "folder>") from None


def _look(catalog, archives, dest: Path, state: State, outcome: Outcome) -> Outcome:
    """The archives whose folder is there: recorded as unpacked (skipped) or not (left as found, with a warning)."""
    for archive in archives:
        target = dest / archive.unpack / archive.holds
        why = state.complete(archive.file, target, catalog.record)
        if why is None:
            log.info("%s: already unpacked in %s", archive.file, target)
            outcome.skipped.append(archive.file)
        elif target.exists():
            log.warning("%s; it is left as it is and %s is not downloaded (move the folder away to get it afresh)",
                        why or f"{target} exists and was not unpacked by this command", archive.file)
            outcome.left.append(archive.file)
    return outcome


def same_record(catalog, state: State, dest: Path) -> None:
    """DataError when `dest` holds files of another record than `catalog`'s (two years' dev_fan.zip, or one
    year's fan beside another's pump: a sweep over the folder would mix them)."""
    others = sorted({e.get("record") for e in state.entries.values()} - {None, catalog.record})
    if others:
        raise DataError(f"{dest} holds files of {others[0]}, not of {catalog.record} ({catalog.title}); give each "
                        "record its own dest=")


def _clean(dest: Path) -> None:
    """Remove what a killed run can leave (we hold the lock, so no run is using it): pooch's temporary files that
    are empty or a second name of a part file (`fetch.hand_over`), and a part that is a second name of its zip
    (killed after pooch moved the file into place, before the part was removed)."""
    parts = [p for p in dest.glob("*.part") if p.is_file()]
    for part in parts:
        whole = part.with_name(part.name.removesuffix(".part"))
        if whole.is_file() and os.path.samefile(part, whole):
            part.unlink()
    parts = [p for p in parts if p.exists()]
    for leftover in dest.glob("tmp????????"):
        if leftover.is_file() and (leftover.stat().st_size == 0 or any(os.path.samefile(leftover, p) for p in parts)):
            leftover.unlink()


def _download(catalog, archives, dest: Path, state: State, keep_archives: bool, mirror: str | None, retries: int,
              progressbar: bool | None) -> Outcome:
    """`download` once the destination is locked; `state` is its record, read under the lock."""
    _clean(dest)
    pending = [a for a in archives if not (dest / a.unpack / a.holds).exists()]
    downloads = [a.bytes - part_size(dest, a) for a in pending if a.bytes and not (dest / a.file).exists()]
    unpacked = [int(a.bytes * UNPACKED_PER_BYTE) for a in pending if a.bytes]
    if pending and (downloads or unpacked):  # the whole selection first; each archive again before it starts
        peak = sum(downloads) if keep_archives else max(downloads, default=0)
        require_space(dest, f"the {len(pending)} archive(s) to get", peak, sum(unpacked))
    outcome = Outcome(dest)
    for i, archive in enumerate(archives):
        target = dest / archive.unpack / archive.holds
        entry = state.entries.get(archive.file) or {}
        moved = target.exists() and entry.get("unpacking") and (dest / archive.file).exists()
        if target.exists() and not moved:  # moved: killed after the folder was moved into place, before the record
            _look(catalog, [archive], dest, state, outcome)
            continue
        _get(catalog, archive, archives[i:], dest, state, outcome, keep_archives, mirror, retries, progressbar,
             moved)
    return outcome


def _get(catalog, archive, rest, dest: Path, state: State, outcome: Outcome, keep_archives: bool, mirror, retries,
         progressbar, moved: bool) -> None:
    """One archive whose folder is not there (or was moved into place by a killed run): verify or fetch the zip,
    unpack it, record it, delete the zip if this command downloaded it."""
    place, entry = dest / archive.unpack, state.entries.get(archive.file) or {}
    recorded = archive.md5 is None and state.md5(archive.file)
    expected = archive.md5 or state.md5(archive.file)
    origin, advice = "was expected", "run the command again to download it afresh"
    if recorded:
        origin = f"was recorded on the first download into {dest} (in {STATE})"
        advice = (f"if the record's file has changed, delete its entry in {dest / STATE} and run the command again "
                  "to take the new one")
    zip_path = dest / archive.file
    url = f"{mirror.rstrip('/')}/{archive.file}" if mirror else archive.url
    ours = not zip_path.exists() or bool(entry.get("downloaded_zip"))
    if zip_path.exists():
        log.info("%s is already in %s: checking its md5", archive.file, dest)
        got = md5_of(zip_path)
        if expected and got != expected:
            raise ChecksumMismatch(f"{zip_path}: md5 {got} where {expected} {origin}; delete it and run the command "
                                   "again to download it afresh")
        if expected:
            outcome.verified.append(archive.file)
        else:
            log.info("%s: no checksum to verify it against; it is taken as it is", zip_path)
    else:
        state.save(archive.file, downloaded_zip=True, record=catalog.record)  # a kill from here on: still ours
        try:
            got = fetch(archive, zip_path, url, expected, retries, progressbar, catalog.record, rest, origin, advice)
        except BaseException:
            if not zip_path.exists():
                state.save(archive.file, downloaded_zip=False)
                state.forget(archive.file)
            raise
        outcome.downloaded.append(archive.file)
    if moved:
        folder = place / archive.holds
        log.info("%s: found in place from a run that was stopped before recording it", folder)
    else:
        state.save(archive.file, unpacking=True, record=catalog.record)
        try:
            folder = unpack(zip_path, place, archive.holds, progressbar)
        except BadArchive as err:
            if ours and not expected:  # never checked, and useless: the next run gets it afresh
                zip_path.unlink()
                state.save(archive.file, downloaded_zip=False, unpacking=False)
                raise DataError(f"{err}; it is deleted: run the command again to download it afresh") from None
            raise DataError(f"{err}; delete it and run the command again to download it afresh") from None
    files, size = tree_size(folder)
    if not expected:  # recorded only once the archive proved whole by unpacking
        log.warning("%s: no published checksum; recorded md5 %s in %s and later downloads are verified against it",
                    archive.file, got, state.path)
    state.save(archive.file, md5=got, md5_source="published" if archive.md5 else "recorded on first download",
               record=catalog.record, url=url, folder=str(Path(archive.unpack, archive.holds)), files=files,
               bytes=size, downloaded_zip=ours and keep_archives, unpacking=False)
    log.info("%s: %d files (%s) in %s", archive.file, files, gigabytes(size), folder)
    if ours and not keep_archives:
        zip_path.unlink()
    elif not ours:
        log.info("%s was there before this command downloaded anything and is kept", zip_path)


def fetch(archive, zip_path: Path, url: str, expected: str | None, retries: int, progressbar, record: str,
          rest, origin: str = "was expected", advice: str = "run the command again to download it afresh") -> str:
    """Download one archive through pooch with the resuming downloader; its md5. NoNetwork names `rest` (this
    archive and those after it) to fetch by hand from `record`."""
    import pooch

    dest = zip_path.parent
    if archive.bytes:  # again with the server's length once it answers
        require_space(dest, archive.file, max(archive.bytes - part_size(dest, archive), 0),
                      int(archive.bytes * UNPACKED_PER_BYTE))
    log.info("downloading %s (%s) from %s", archive.file,
             gigabytes(archive.bytes) if archive.bytes else "size not in the catalog", urlparse(url).netloc)
    part = dest / f"{archive.file}.part"
    checked = bool(expected) and hard_links(dest)  # pooch checks it again, and an interruption keeps the part
    downloader = ResumingDownloader(part, expected, archive.bytes, retries, progressbar=progressbar,
                                    md5_origin=origin, advice=advice, link=checked)
    try:
        if checked:
            pooch.get_logger().setLevel(logging.WARNING)  # its "Downloading ..." line says what ours says
            pooch.retrieve(url, known_hash=f"md5:{expected}", fname=archive.file, path=dest, downloader=downloader)
        else:  # no checksum for pooch to check (it would only read the file again for a SHA256), or no hard links
            downloader(url, str(zip_path))  # the md5 computed on the way is the check; the part is renamed
    except NoNetwork as err:
        kept = " (the part already downloaded is kept and resumed)" if part_size(dest, archive) else ""
        raise NoNetwork(f"cannot reach {urlparse(url).netloc} ({err}){kept}: {by_hand(rest, record, dest)}") from None
    part.unlink(missing_ok=True)  # the second name pooch's file had while it checked it
    return downloader.md5
