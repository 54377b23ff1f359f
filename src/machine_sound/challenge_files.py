"""The files a DCASE 2021-2025 Task 2 submission holds, which the official evaluators read.

One pair per machine type and section, with no header and one row per test file (its name, no folder):

- 2022-2025 (`dcase2023_task2_evaluator`): `anomaly_score_<machine>_section_XX_test.csv` (file name, anomaly score)
  and `decision_result_<machine>_section_XX_test.csv` (file name, 1 anomalous / 0 normal);
- 2021 (`dcase2021_task2_evaluator`): one pair per domain, `anomaly_score_<machine>_section_XX_<source|target>_test.csv`
  and `decision_result_..._<source|target>_test.csv`; a file's domain is its folder's (`source_test/`,
  `target_test/`), as in the 2021 layout.

`machine_sound.predict output=<folder>` checks the inputs before scoring (`check_inputs`) and writes the files
from its rows (`write_result_files`), each file replaced in one step; other files in the folder are left as they
are, so a submission can be built one machine type at a time.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from machine_sound.data.readers.dcase import DOMAIN_FOLDERS, ClipName, label_machine, parse_name, section_label
from machine_sound.errors import DataError
from machine_sound.writing import write_atomic

log = logging.getLogger(__name__)


TEST_FOLDERS = ("test", *DOMAIN_FOLDERS)


def folder_machine(path: Path) -> str | None:
    """The machine type a DCASE file's folders name (`<machine>/test/<file>`), or None outside that layout."""
    return path.parent.parent.name if path.parent.name in TEST_FOLDERS + ("train",) else None


def dcase_name(path: Path) -> ClipName:
    """The parsed name of a file bound for the challenge's files; DataError when it is not a DCASE one."""
    name = parse_name(path.name)
    if name is None:
        raise DataError(f"{path}: not a DCASE 2021-2025 file name (section_XX_...wav), so it has no place in the "
                        "challenge's result files; leave it out, or write a .csv (output=<file>.csv)")
    return name


def check_inputs(files: list[Path], machine: str | None, labels: list[str], folder: Path) -> None:
    """Before scoring into the challenge's files in `folder`: every name is a DCASE one, no two test files of one
    result file share a name (the files name a clip by its name alone), a model of one machine type is not given
    another type's folder, and no result file's path is taken by something that is not a file. DataError naming
    the first file that breaks a rule."""
    seen: dict[tuple, Path] = {}
    every = any(label_machine(label) for label in labels)
    for path in files:
        name = dcase_name(path)
        if name.split == "train":
            continue
        other = folder_machine(path)
        if not every and machine and other and other != machine:
            raise DataError(f"{path} is in a {other}/ folder, but the model learned {machine}; score each machine "
                            "type with its own model")
        key = result_key(path, section_label(other, name.section, bool(every and other)), machine)
        if (key, path.name) in seen:
            raise DataError(f"{path} and {seen[(key, path.name)]} have the same name, which the challenge's files "
                            "cannot tell apart; score one folder of test clips at a time")
        seen[(key, path.name)] = path
        for target in file_names(*key):
            if (folder / target).exists() and not (folder / target).is_file():
                raise DataError(f"cannot write {folder / target}: something that is not a file is there; move it "
                                "away or give output= another folder")


def result_key(path: Path, label: str, machine: str | None) -> tuple[str, str, str]:
    """(machine type, section, domain or '') of a scored file: the machine from the label (`fan_section_00`, a
    model of every type) or the run's machine; the domain where 2021's test folders give it. DataError when the
    name is not a DCASE one."""
    name = dcase_name(path)
    domain = path.parent.name.split("_")[0] if path.parent.name in DOMAIN_FOLDERS else ""
    return str(label_machine(label) or machine), name.section, domain


def file_names(machine: str, section: str, domain: str) -> tuple[str, str]:
    """The score file's and the decision file's names."""
    tail = f"{machine}_{section}_{domain}_test.csv" if domain else f"{machine}_{section}_test.csv"
    return f"anomaly_score_{tail}", f"decision_result_{tail}"


def write_result_files(folder: Path, rows: list[dict], machine: str | None) -> list[Path]:
    """Write the challenge's files for predict's rows (those with an anomaly score; a row without one is left out
    and named by predict's CSV) into `folder`; returns the files written, sorted. DataError when no row has a
    decision (a checkpoint without a fitted threshold) or a file name is not DCASE's."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    training = 0
    for row in rows:
        if "anomaly_score" not in row:
            continue
        name = parse_name(Path(row["path"]).name)
        if name is not None and name.split == "train":
            training += 1  # a training clip is not a test file: it has no row in the evaluator's files
            continue
        if "decision" not in row:
            raise DataError(f"{row['path']}: no decision (the checkpoint has no fitted threshold), so no "
                            "decision_result file can be written; use a checkpoint of a run that validated")
        path = Path(row["path"])
        groups.setdefault(result_key(path, row["machine_id"], machine), []).append(row)
    if training:
        log.info("%d training clip(s) among the inputs are left out of the DCASE result files", training)
    written = []
    for key, members in sorted(groups.items()):
        score_name, decision_name = file_names(*key)
        members = sorted(members, key=lambda r: Path(r["path"]).name)
        for name, value in ((score_name, lambda r: f"{float(r['anomaly_score']):.7g}"),
                            (decision_name, lambda r: str(int(r["decision"] == "anomalous")))):
            def write(staging: Path, value=value) -> None:
                with open(staging, "w", newline="") as f:
                    writer = csv.writer(f, lineterminator="\n")
                    writer.writerows([Path(r["path"]).name, value(r)] for r in members)

            try:
                write_atomic(folder / name, write)
            except OSError as err:
                raise DataError(f"cannot write {folder / name}: {err.strerror or err}; give output= a writable "
                                "folder") from None
            written.append(folder / name)
    return sorted(written)
