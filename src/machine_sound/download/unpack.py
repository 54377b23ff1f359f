"""Placing a verified archive's folder where its reader looks, whole or not at all, and remembering what was
placed: `<destination>/.machine-sound-download.json` records, per archive, its md5 (and whether it was published
or recorded from the first complete download), the folder it became and that folder's file count and bytes, so a
later run knows the folder is there and complete without the archive."""

from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from machine_sound.download.fetch import require_space
from machine_sound.errors import DataError
from machine_sound.writing import write_atomic

log = logging.getLogger(__name__)
STATE = ".machine-sound-download.json"


class BadArchive(DataError):
    """An archive that cannot be unpacked as the catalog describes it (the message gives no advice: the caller
    knows whether the file is its own download)."""


def tree_size(folder: Path) -> tuple[int, int]:
    """(number of files, their bytes) under `folder`, following links (a subfolder moved to another disk and
    linked back counts as it was)."""
    files = size = 0
    for parent, _, names in os.walk(folder, followlinks=True):
        for name in names:
            path = os.path.join(parent, name)
            files += 1
            size += os.stat(path).st_size if os.path.exists(path) else 0
    return files, size


def well_formed(entry) -> bool:
    """An entry of the record: a mapping whose md5 is a string and whose folder, if any, has its counts."""
    if not isinstance(entry, dict) or not isinstance(entry.get("md5", ""), str):
        return False
    if "folder" not in entry:
        return True
    return isinstance(entry["folder"], str) and all(
        isinstance(entry.get(k), int) and not isinstance(entry.get(k), bool) for k in ("files", "bytes"))


class State:
    """The destination's record of what this command downloaded and unpacked there (`STATE`)."""

    def __init__(self, dest: Path):
        self.path = Path(dest) / STATE
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            try:
                self.entries = json.loads(self.path.read_text())
            except (OSError, ValueError) as err:
                raise DataError(f"{self.path} is not readable JSON ({err}); it records what this command unpacked "
                                "there: delete it, and the folders there are left as found") from None
            if not isinstance(self.entries, dict) or not all(map(well_formed, self.entries.values())):
                raise DataError(f"{self.path} is not this command's record (an entry is not "
                                "{md5, folder, files, bytes, ...}); delete it, and the folders there are left as "
                                "found")

    def md5(self, file: str) -> str | None:
        """The md5 recorded for `file` on its first complete download, if any."""
        return (self.entries.get(file) or {}).get("md5")

    def complete(self, file: str, folder: Path, record: str | None = None) -> str | None:
        """None when `folder` holds what `file` (of `record`) unpacked to; otherwise why not ('' for a folder this
        command did not unpack)."""
        entry = self.entries.get(file) or {}
        if not entry.get("folder") or Path(self.path.parent, entry["folder"]) != folder:
            return ""
        if record and entry.get("record", record) != record:
            return f"{folder} was unpacked from {file} of {entry['record']}"
        files, size = tree_size(folder)
        if (files, size) != (entry["files"], entry["bytes"]):
            return (f"{folder} holds {files} files ({size} bytes) where {entry['files']} ({entry['bytes']} bytes) "
                    f"were unpacked from {file}")
        return None

    def forget(self, file: str) -> None:
        """Drop `file`'s entry when it says nothing but that a download was under way (and the record with it,
        when nothing else is left in it)."""
        if set(self.entries.get(file, {})) <= {"downloaded_zip", "record", "date", "unpacking"}:
            self.entries.pop(file, None)
            if not self.entries:
                self.path.unlink(missing_ok=True)
                return
            self._write()

    def save(self, file: str, **entry) -> None:
        """Record `entry` for `file` (merged with what is there) and write the record atomically."""
        self.entries[file] = {**self.entries.get(file, {}), **entry,
                              "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._write()

    def _write(self) -> None:
        text = json.dumps(self.entries, indent=1, sort_keys=True) + "\n"
        write_atomic(self.path, lambda staging: staging.write_text(text))


def unpack(archive: Path, place: Path, holds: str, progressbar: bool | None = None) -> Path:
    """Unzip `archive` into a temporary folder beside `place` and move the folder `holds` it has at its top (or
    under one wrapping folder) to `place/holds`, which must not exist. Returns that folder. An interrupted unpack
    leaves only the temporary folder, which the next call removes. DataError for an unreadable zip, one without
    `holds`, or too little disk space (the zip's own sizes)."""
    target = Path(place) / holds
    if target.exists():
        raise DataError(f"{target} exists; move it away to unpack {archive.name} there")
    work = archive.parent / f".unpacking-{archive.name}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as z:
            members = [m for m in z.infolist() if not m.is_dir()]
            require_space(archive.parent, f"unpacking {archive.name}", 0, sum(m.file_size for m in members))
            from tqdm.auto import tqdm

            with tqdm(total=sum(m.file_size for m in members), unit="B", unit_scale=True, unit_divisor=1024,
                      desc=f"unpacking {archive.name}", disable=progressbar is False or None) as bar:
                for member in members:
                    z.extract(member, work)
                    bar.update(member.file_size)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        shutil.rmtree(work, ignore_errors=True)
        raise BadArchive(f"{archive} is not a readable zip archive ({err})") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    found = [work / holds] if (work / holds).is_dir() else sorted(work.glob(f"*/{holds}"))
    if len(found) != 1:
        tops = sorted(p.name for p in work.iterdir()) if work.exists() else []
        shutil.rmtree(work, ignore_errors=True)
        raise BadArchive(f"{archive.name} holds {', '.join(tops) or 'nothing'} at its top, not one folder {holds}")
    left = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file() and found[0] not in p.parents)
    if left:
        log.info("%s: left out what lies outside %s/: %s", archive.name, holds, ", ".join(left[:5]) +
                 (f" and {len(left) - 5} more" if len(left) > 5 else ""))
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(found[0], target)
    shutil.rmtree(work, ignore_errors=True)
    return target
