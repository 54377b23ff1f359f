"""machine-sound-download: the real datasets in one command, verified and unpacked where their readers look.

    machine-sound-download dataset=mimii snr=-6_dB machine=pump          (lists: machine=fan,pump)
    machine-sound-download dataset=dcase2023 [machine=fan] [dest=/data/dcase2023/dev]
    (or python -m machine_sound.download ..., or make download ARGS="...")

For each archive chosen: a folder already unpacked from it (recorded in the destination's
`.machine-sound-download.json`) is left alone; an archive already in the destination (kept, or put there by hand)
is verified; otherwise it is downloaded (resumed where a broken run stopped), verified, unpacked and, unless
`keep_archives=true`, deleted. Then the layout's reader reads what is there and the training command is printed.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from machine_sound.console import parse_arguments, print_result
from machine_sound.download import catalog as catalogs
from machine_sound.download.check import read_back
from machine_sound.download.fetch import (
    UNPACKED_PER_BYTE,
    ChecksumMismatch,
    NoNetwork,
    ResumingDownloader,
    gigabytes,
    md5_of,
    only_writer,
    require_space,
)
from machine_sound.download.unpack import STATE, BadArchive, State, tree_size, unpack
from machine_sound.errors import WRITE_ERRNOS, ConfigError, DataError, one_line, user_error

log = logging.getLogger("machine_sound.download")
USAGE = ("usage: machine-sound-download dataset=<" + "|".join(catalogs.known()) + "|file.yaml> [machine=a,b] "
         "[snr=-6_dB,0_dB] [dest=<folder>] [keep_archives=false] [mirror=<base URL>] [retries=5] [dry_run=false]")
OPTIONAL = ("machine", "snr", "dest", "keep_archives", "mirror", "retries", "dry_run")


class CurrentStderr(logging.StreamHandler):
    """A log handler writing to whatever `sys.stderr` is when a line is written (not when it was made)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


@dataclass
class Outcome:
    """What a run did: the destination, and the archives fetched, found already there, or left as found."""

    dest: Path
    downloaded: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)  # already downloaded and verified, or put there by hand
    skipped: list[str] = field(default_factory=list)  # their folder was already unpacked by this command
    left: list[str] = field(default_factory=list)  # a folder of theirs is there, not (or no longer) as unpacked


def as_list(setting: str, value: str | None) -> list[str] | None:
    """'fan,pump' or '[fan,pump]' -> ['fan', 'pump']; None stays None."""
    if value is None:
        return None
    items = [v.strip() for v in value.strip().removeprefix("[").removesuffix("]").split(",")]
    if not all(items):
        raise ConfigError(f"{setting}={value}: a name or a list of names, such as {setting}=a,b")
    return items


def as_bool(setting: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ConfigError(f"{setting}={value}: true or false")
    return value.lower() == "true"


def check_mirror(mirror: str | None) -> str | None:
    """`mirror=` when it is an http(s) address with a host (and a valid port); ConfigError otherwise."""
    if mirror is None:
        return None
    if catalogs.urlparse_or_none(mirror) is None:
        raise ConfigError(f"mirror={mirror}: an http:// or https:// address of a server holding the files, such "
                          "as https://mirror.example.org/mimii")
    return mirror


def by_hand(archives, record: str, dest: Path) -> str:
    names = ", ".join(a.file for a in archives)
    return f"fetch {names} by hand from {record} into {dest.resolve()}/ and run this command again to verify and unpack"


def download(catalog: catalogs.Catalog, wanted: dict, dest: Path, keep_archives: bool = False,
             mirror: str | None = None, retries: int = 5, progressbar: bool | None = None) -> Outcome:
    """Download, verify and unpack the archives of `catalog` that `wanted` chooses into `dest` (see the module
    docstring); `mirror` replaces the record's address by `<mirror>/<file>`. One run at a time per destination.
    DataError/ConfigError in one line for whatever stops it; NoNetwork's line says what to fetch by hand and where."""
    archives = catalog.select(wanted)
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise DataError(f"dest={dest} is a file; give a folder")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"dest={dest}: cannot make the folder ({err.strerror or err})") from None
    if not os.access(dest, os.W_OK | os.X_OK):
        state = State(dest)
        if all(state.complete(a.file, dest / a.unpack / a.holds) is None for a in archives):
            return Outcome(dest, skipped=[a.file for a in archives])  # nothing to write: read it back
        raise DataError(f"dest={dest} is not writable; give a folder you can write to")
    try:
        with only_writer(dest):
            return _download(catalog, archives, dest, keep_archives, mirror, retries, progressbar)
    except OSError as err:
        if err.errno not in WRITE_ERRNOS:
            raise
        raise DataError(f"cannot write in {dest}: {err.strerror}; free some space or give dest=<another "
                        "folder>") from None


def _download(catalog, archives, dest: Path, keep_archives: bool, mirror: str | None, retries: int,
              progressbar: bool | None) -> Outcome:
    import pooch

    pooch.get_logger().setLevel(logging.WARNING)  # its "Downloading ..." line says what ours says
    for leftover in dest.glob("tmp????????"):  # pooch's empty temporary file of a killed run (we hold the lock)
        if leftover.is_file() and leftover.stat().st_size == 0:
            leftover.unlink()
    state, outcome = State(dest), Outcome(dest)
    pending = [a for a in archives if not (dest / a.unpack / a.holds).exists()]
    downloads = [a.bytes - part_size(dest, a) for a in pending if a.bytes and not (dest / a.file).exists()]
    unpacked = [int(a.bytes * UNPACKED_PER_BYTE) for a in pending if a.bytes]
    if pending and (downloads or unpacked):  # the whole selection first; each archive again before it starts
        peak = sum(downloads) if keep_archives else max(downloads, default=0)
        require_space(dest, f"the {len(pending)} archive(s) to get", peak, sum(unpacked))
    for i, archive in enumerate(archives):
        place = dest / archive.unpack
        target = place / archive.holds
        why = state.complete(archive.file, target)
        if why is None:
            log.info("%s: already unpacked in %s", archive.file, target)
            outcome.skipped.append(archive.file)
            continue
        if target.exists():
            log.warning("%s; it is left as it is and %s is not downloaded (move the folder away to get it afresh)",
                        why or f"{target} exists and was not unpacked by this command", archive.file)
            outcome.left.append(archive.file)
            continue
        recorded = archive.md5 is None and state.md5(archive.file)
        expected = archive.md5 or state.md5(archive.file)
        origin = (f"was recorded on the first download into {dest} (in {STATE}; if the record's file has changed, "
                  "delete its entry there to take the new one)") if recorded else "was expected"
        zip_path = dest / archive.file
        url = f"{mirror.rstrip('/')}/{archive.file}" if mirror else archive.url
        ours = not zip_path.exists() or bool((state.entries.get(archive.file) or {}).get("downloaded_zip"))
        if zip_path.exists():
            log.info("%s is already in %s: checking its md5", archive.file, dest)
            got = md5_of(zip_path)
            if expected and got != expected:
                raise ChecksumMismatch(f"{zip_path}: md5 {got} where {expected} {origin}; delete it and run the "
                                       "command again to download it afresh")
            outcome.verified.append(archive.file)
        else:
            got = fetch(archive, zip_path, url, expected, retries, progressbar, catalog.record, archives[i:], origin)
            outcome.downloaded.append(archive.file)
            state.save(archive.file, downloaded_zip=True)  # an interrupted unpack leaves it ours to delete
        try:
            folder = unpack(zip_path, place, archive.holds, progressbar)
        except BadArchive as err:
            if ours and not expected:  # never checked, and useless: the next run gets it afresh
                zip_path.unlink()
                state.save(archive.file, downloaded_zip=False)
                raise DataError(f"{err}; it is deleted: run the command again to download it afresh") from None
            raise DataError(f"{err}; delete it and run the command again to download it afresh") from None
        files, size = tree_size(folder)
        if not expected:  # recorded only once the archive proved whole by unpacking
            log.warning("%s: no published checksum; recorded md5 %s in %s and later downloads are verified against it",
                        archive.file, got, state.path)
        state.save(archive.file, md5=got, md5_source="published" if archive.md5 else "recorded on first download",
                   url=url, folder=str(Path(archive.unpack, archive.holds)), files=files, bytes=size,
                   downloaded_zip=ours and keep_archives)
        log.info("%s: %d files (%s) in %s", archive.file, files, gigabytes(size), folder)
        if ours and not keep_archives:
            zip_path.unlink()
        elif not ours:
            log.info("%s was there before this command downloaded anything and is kept", zip_path)
    return outcome


def part_size(dest: Path, archive) -> int:
    part = dest / f"{archive.file}.part"
    return part.stat().st_size if part.exists() else 0


def fetch(archive, zip_path: Path, url: str, expected: str | None, retries: int, progressbar, record: str,
          rest, origin: str = "was expected") -> str:
    """Download one archive through pooch with the resuming downloader; its md5. NoNetwork names `rest` (this
    archive and those after it) to fetch by hand from `record`."""
    import pooch

    dest = zip_path.parent
    if archive.bytes:  # again with the server's length once it answers
        require_space(dest, archive.file, max(archive.bytes - part_size(dest, archive), 0),
                      int(archive.bytes * UNPACKED_PER_BYTE))
    log.info("downloading %s (%s) from %s", archive.file,
             gigabytes(archive.bytes) if archive.bytes else "size not in the catalog", urlparse(url).netloc)
    downloader = ResumingDownloader(dest / f"{archive.file}.part", expected, archive.bytes, retries,
                                    progressbar=progressbar, md5_origin=origin)
    try:
        pooch.retrieve(url, known_hash=f"md5:{expected}" if expected else None, fname=archive.file, path=dest,
                       downloader=downloader)
    except NoNetwork as err:
        kept = " (the part already downloaded is kept and resumed)" if part_size(dest, archive) else ""
        raise NoNetwork(f"cannot reach {urlparse(url).netloc} ({err}){kept}: {by_hand(rest, record, dest)}") from None
    return downloader.md5


def plan_lines(catalog: catalogs.Catalog, archives, dest: Path, mirror: str | None) -> list[str]:
    known = sum(a.bytes or 0 for a in archives)
    unknown = sum(a.bytes is None for a in archives)
    size = gigabytes(known) + (f" + {unknown} of unknown size" if unknown else "") if known else "size unknown"
    lines = [f"{catalog.title}: {len(archives)} archive(s), {size}, into {dest}",
             f"record: {catalog.record}" + (f" (licence {catalog.license})" if catalog.license else
                                             " (its terms of use are on that page)")]
    for a in archives:
        url = f"{mirror.rstrip('/')}/{a.file}" if mirror else a.url
        lines.append(f"  {a.file}  {gigabytes(a.bytes) if a.bytes else '?'}  md5 {a.md5 or 'unpublished'}  {url}")
    return lines


def main(argv: list[str] | None = None) -> None:
    own, rest = parse_arguments(sys.argv[1:] if argv is None else argv, ["dataset"], OPTIONAL, usage=USAGE)
    handler = CurrentStderr()
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        if rest:
            raise ConfigError(f"unknown setting {rest[0]}; the settings are dataset= and "
                              f"{', '.join(k + '=' for k in OPTIONAL)}")
        catalog = catalogs.load(own["dataset"])
        wanted = {k: as_list(k, own[k]) for k in ("machine", "snr") if k in own}
        retries = own.get("retries", "5")
        if not retries.isdigit():
            raise ConfigError(f"retries={retries}: a whole number of tries after the first (5)")
        if "dest" in own and not own["dest"].strip():
            raise ConfigError("dest= is empty; give a folder (or leave dest= out for data/<dataset>)")
        dest = Path(own.get("dest") or Path("data", catalog.folder)).expanduser()
        keep, dry = (as_bool(k, own.get(k, "false")) for k in ("keep_archives", "dry_run"))
        mirror = check_mirror(own.get("mirror"))
        archives = catalog.select(wanted)
        print("\n".join(plan_lines(catalog, archives, dest, mirror)), flush=True)
        if dry:
            return
        outcome = download(catalog, wanted, dest, keep, mirror, int(retries))
        found, commands = read_back(catalog, archives, dest)
    except KeyboardInterrupt:
        print("error: interrupted; a download in progress is kept in its .part file and an unpack in progress is "
              "undone (its zip kept): the next run goes on from there", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        if user_error(err) is None:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    done = (f"downloaded {len(outcome.downloaded)}, verified {len(outcome.verified)} already there, "
            f"{len(outcome.skipped)} already unpacked" + (f", {len(outcome.left)} left as found" if outcome.left
                                                          else ""))
    print_result("\n".join([f"{catalog.title} in {dest}: {done}", *found, "train on it:",
                            *(f"  {c}" for c in commands)]))


if __name__ == "__main__":
    main()
