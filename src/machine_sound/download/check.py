"""After unpacking: the layout's own reader reads what is in the destination, so a tree the training command
cannot read is found now, and the training command to run next is built from what was read."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from collections import Counter
from pathlib import Path

from machine_sound.data.readers.dcase import DcaseReader
from machine_sound.data.readers.dcase2020 import MACHINES as DCASE2020_MACHINES
from machine_sound.data.readers.dcase2020 import Dcase2020Reader
from machine_sound.data.readers.mimii import MimiiReader
from machine_sound.errors import DataError, one_line

MIMII_MACHINES = ("fan", "pump", "slider", "valve")


def _ids(dest: Path, snr: str, machine: str) -> list[str]:
    return sorted(p.name for p in (dest / f"{snr}_{machine}" / machine).glob("id_*") if p.is_dir())


def _read(archive, layout: str, dest: Path):
    """The Index the layout's reader makes of one archive's folder (MIMII: one per ID, as a list)."""
    if layout == "mimii":
        snr, machine = archive.choices["snr"], archive.choices["machine"]
        ids = _ids(dest, snr, machine)
        if not ids:
            raise DataError(f"no id_* folder in {dest / f'{snr}_{machine}' / machine}")
        return [MimiiReader(str(dest), snr, machine, i, machines={machine: ids}).read() for i in ids]
    if layout == "dcase2020":
        return [Dcase2020Reader(str(dest), archive.choices["machine"]).read()]
    return [DcaseReader(str(dest), archive.choices["machine"]).read()]


def read_back(catalog, archives, dest: Path) -> tuple[list[str], list[str]]:
    """What `data=<layout>` reads of each archive's folder in `dest` (a line each), and the training commands to
    run next: the first archive's, and the sweep over all when every type it needs is there. DataError naming the
    archive and the reader's complaint when it cannot read one."""
    lines, classes = [], {}
    for archive in archives:
        try:
            indexes = _read(archive, catalog.layout, Path(dest))
        except Exception as err:
            raise DataError(f"{archive.file} is unpacked in {dest}, but data={catalog.layout} cannot read it: "
                            f"{one_line(err)}") from None
        what = ", ".join(f"{k}={v}" for k, v in archive.choices.items())
        if catalog.layout == "mimii":
            parts = []
            for index in indexes:
                kinds = Counter(r.anomalous for r in index.records)
                parts.append(f"{index.identity['id']} {kinds[0]} normal / {kinds[1]} abnormal")
            lines.append(f"  {what}: {'; '.join(parts)}")
        else:
            (index,) = indexes
            classes[archive.choices["machine"]] = len(index.aux_names)
            splits = Counter("test" if r.split == "test" else "train" for r in index.records)
            named = "sections" if catalog.layout == "dcase" else "IDs"
            lines.append(f"  {what}: {splits['train']} training clips, {splits['test']} test clips, "
                         f"{named} {', '.join(index.class_names)}")
    return lines, _commands(catalog, archives, Path(dest), classes)


def train_program() -> str:
    """How to call machine-sound-train from here: its bare name when PATH finds this environment's, otherwise
    its path beside this Python (`.venv/bin/machine-sound-train` in a checkout whose venv is not activated)."""
    beside = Path(sys.executable).parent / "machine-sound-train"
    if not beside.exists() or shutil.which("machine-sound-train") == str(beside):
        return "machine-sound-train"
    try:
        return shlex.quote(str(beside.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(beside))


def hydra_value(value: str) -> str:
    """`value` as a Hydra override's value that Hydra reads back as this very string: bare for a plain ASCII path
    with a slash, otherwise in Hydra's quotes (with the quote, the backslashes before a quote or at the end, and
    `${` escaped, so nothing is read as a number, a null, a boolean or an interpolation)."""
    if re.fullmatch(r"[A-Za-z0-9_.+-]*/[A-Za-z0-9_./+-]*", value):
        return value
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    escaped = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", escaped)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f"'{escaped}'"


def shell_word(text: str) -> str:
    """`text` as one word of a POSIX shell: bare when it can be, in double quotes when nothing in it expands
    there, in single quotes otherwise."""
    quoted = shlex.quote(text)
    if quoted == text or re.search(r'["$`\\!]', text):
        return quoted
    return f'"{text}"'


def _commands(catalog, archives, dest: Path, classes: dict[str, int]) -> list[str]:
    root, train = shell_word(f"data.root={hydra_value(str(dest))}"), train_program()
    first = archives[0].choices
    if catalog.layout == "mimii":
        snr, machine = first["snr"], first["machine"]
        commands = [f"{train} data=mimii {root} snr={snr} machine={machine} "
                    f"id={_ids(dest, snr, machine)[0]}"]
        if all(_ids(dest, snr, m) for m in MIMII_MACHINES):
            commands.append(f"{train} -m sweep=mimii {root} snr={snr}")
        return commands
    machine = first["machine"]
    if catalog.layout == "dcase2020":
        commands = [f"{train} data=dcase2020 {root} machine={machine} model=autoencoder"]
        if all((dest / m / "train").is_dir() for m in DCASE2020_MACHINES):
            commands.append(f"{train} -m sweep=dcase2020 {root}")
        return commands
    model = "id_classifier" if classes[machine] > 1 else "autoencoder"  # one class: nothing to tell apart
    every = "" if all(n > 1 for n in classes.values()) else " model=autoencoder"  # the sweep's default needs classes
    return [f"{train} data=dcase {root} machine={machine} model={model}",
            f"{train} -m sweep=dcase {root}{every}"]
