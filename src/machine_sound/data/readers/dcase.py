"""DCASE Task 2, 2021-2025 (MIMII DUE, MIMII DG, ToyADMOS2 and the first-shot sets): sections, domains, attributes.

    <root>/<machine>/train/section_XX_<source|target>_train_normal_NNNN[_<attributes>].wav
    <root>/<machine>/test/section_XX_<source|target>_test_<normal|anomaly>_NNNN[_<attributes>].wav   (2022-2025)
    <root>/<machine>/{source_test,target_test}/section_XX_<domain>_test_<normal|anomaly>_NNNN[...].wav  (2021)
    <root>/<machine>/attributes_XX.csv      (2022-2025: file_name, d1p, d1v, d2p, d2v, ...)

Evaluation-set test clips are anonymised (`section_XX_NNNN.wav`: no label, no domain; in 2021 the folder still
gives the domain); they are scored by predict, not tested. Any machine type found under the root can be read
(`machine=<type>`, or `machine=all` for one model of every type found). The labels a detector scores by are the
sections (`section_00`; `<machine>_section_00` with `machine=all`); the auxiliary classes an ID classifier learns
are section x attribute combinations where the data has attributes (the 2022-2025 standard), sections otherwise
(`aux_labels`). Which test metrics apply (`evaluator`) follows the layout, as the official evaluators compute
them: `dcase2021` (per section and domain, each domain's own clips) or `dcase2022` (2022-2025: per section, a
domain's AUROC from its normal clips and all anomalous ones, pAUC over both domains); see `machine_sound.challenge`.
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import soundfile as sf

from machine_sound.data.records import Index, Record, find_audio, require_folder
from machine_sound.errors import ConfigError, DataError, one_line

log = logging.getLogger(__name__)

LABELLED = re.compile(r"^section_(\d+)_(source|target)_(train|test)_(normal|anomaly)_(\d+)(?:_(.+))?\.(?i:wav)$")
ANONYMISED = re.compile(r"^section_(\d+)_(\d+)\.(?i:wav)$")
HIDDEN = "noAttribute"  # DCASE 2024-2025: a machine type whose attributes are withheld
EVERY_MACHINE = "all"
AUX_LABELS = ("section_attribute", "section")
DOMAIN_FOLDERS = ("source_test", "target_test")  # DCASE 2021's test folders
HINT = ("data=dcase expects <root>/<machine>/train/section_XX_<source|target>_train_normal_NNNN[_<attributes>].wav "
        "and <root>/<machine>/test/ (2022-2025) or source_test/ and target_test/ (2021), as the DCASE 2021-2025 "
        "Task 2 development and evaluation sets are unpacked")


@dataclass(frozen=True)
class ClipName:
    """What a DCASE 2021-2025 file name says. `domain` and `condition` ('normal'/'anomaly') are '' for an
    anonymised evaluation clip; `attributes` is the name's tail (`car_C2_spd_34V_mic_1`), '' when there is none or
    the year hides it (`noAttribute`)."""

    section: str
    domain: str
    split: str
    condition: str
    number: str
    attributes: str

    @property
    def attribute_values(self) -> dict[str, str]:
        """The attributes as {name: value}, from `name_value` pairs (`{'car': 'C2', 'spd': '34V', 'mic': '1'}`);
        {'attributes': tail} when the tail is not such pairs."""
        parts = self.attributes.split("_") if self.attributes else []
        if len(parts) % 2:
            return {"attributes": self.attributes}
        return dict(zip(parts[::2], parts[1::2]))


def section_label(machine: str, section: str, every: bool) -> str:
    """The label of a section: `section_00`, or `fan_section_00` in a model of every machine type."""
    return f"{machine}_{section}" if every else section


def label_machine(label: str) -> str:
    """The machine type a section label names (`fan_section_00` -> `fan`); '' for a plain `section_00`."""
    return label.rpartition("_section_")[0]


def parse_name(name: str) -> ClipName | None:
    """A DCASE 2021-2025 file name parsed (`section_00_source_train_normal_0835_car_D2_spd_34V_mic_1.wav`, or the
    anonymised `section_03_0012.wav`), or None for any other name."""
    match = LABELLED.match(name)
    if match:
        section, domain, split, condition, number, tail = match.groups()
        return ClipName(f"section_{section}", domain, split, condition, number, "" if tail == HIDDEN else tail or "")
    match = ANONYMISED.match(name)
    if match:
        return ClipName(f"section_{match.group(1)}", "", "test", "", match.group(2), "")
    return None


def machine_types(root: Path) -> list[str]:
    """The machine types under a DCASE root: its folders that hold a train/ folder, sorted."""
    return sorted(p.name for p in root.iterdir() if (p / "train").is_dir()) if root.is_dir() else []


def read_attribute_files(folder: Path) -> dict[str, str]:
    """{file name: attributes as `name_value_...`} from a machine type's `attributes_XX.csv` files (columns
    file_name, d1p, d1v, d2p, d2v, ...; UTF-8, with or without a byte-order mark; a pair left empty is skipped,
    and a row with no pair gives nothing, so the name's attributes stand). DataError naming a file that cannot
    be read as such a table."""
    found: dict[str, str] = {}
    for path in sorted(folder.glob("attributes_*.csv")):
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                rows = list(csv.DictReader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise DataError(f"{path}: cannot be read as DCASE's attributes table ({one_line(err)}); save it as UTF-8 "
                            "CSV with the columns file_name, d1p, d1v, ... or move it away") from None
        if rows and "file_name" not in rows[0]:
            raise DataError(f"{path}: no file_name column; DCASE's attributes_XX.csv starts with file_name, d1p, "
                            "d1v, ...")
        for row in rows:
            pairs = [(row[k], row.get(k[:-1] + "v", "")) for k in row if re.fullmatch(r"d\d+p", k or "")]
            attributes = "_".join(f"{p}_{v}" for p, v in pairs if p and v not in ("", None))
            if attributes and row.get("file_name"):
                found[Path(row["file_name"]).name] = attributes
    return found


class _Clip(NamedTuple):
    path: Path
    machine: str
    label: str  # section_label(...)
    name: ClipName
    split: str  # train or test
    evaluator: str  # dcase2021 or dcase2022 for a test clip, '' for a training clip


class DcaseReader:
    """One machine type (or every type found, `machine=all`) of a DCASE 2021-2025 Task 2 set, as an `Index`.

    Records carry the section as their label, the domain ('source'/'target') and the auxiliary class. Anonymised
    test clips have no label: they are left out of the index (scored with predict), and when no test clip is
    labelled the index has no test records (`Index.untested` says why). Raises ConfigError for an unknown
    machine type or setting, DataError for files that do not fit."""

    layout = "dcase"
    task = "id_anomaly"

    def __init__(self, root: str | None, machine: str, aux_labels: str = "section_attribute"):
        if root is None:
            raise DataError(f"data.root is not set: point it at the unpacked DCASE data; {HINT}")
        if aux_labels not in AUX_LABELS:
            raise ConfigError(f"data.reader.aux_labels={aux_labels}: choose {' or '.join(AUX_LABELS)}")
        self.root, self.machine, self.aux_labels = Path(root), str(machine), aux_labels
        self._attributes: dict[str, dict[str, str]] = {}  # machine -> file name -> attributes (attributes_XX.csv)

    def machines(self) -> list[str]:
        found = machine_types(require_folder(self.root, HINT))
        if self.machine != EVERY_MACHINE and (self.root / self.machine).is_dir() and self.machine not in found:
            raise DataError(f"machine={self.machine}: {self.root / self.machine} has no train/ folder; {HINT}")
        if not found:
            raise DataError(f"no machine type in {self.root} (no <machine>/train/ folder); {HINT}")
        if self.machine == EVERY_MACHINE:
            skipped = sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name not in found
                             and not p.name.startswith("."))
            if skipped:
                log.warning("machine=all: %s under %s have no train/ folder and are left out", ", ".join(skipped),
                            self.root)
            return found
        if self.machine not in found:
            raise ConfigError(f"machine={self.machine}: no such machine type in {self.root}; found "
                              f"{', '.join(found)} (or machine={EVERY_MACHINE})")
        return [self.machine]

    def read(self) -> Index:
        machines = self.machines()
        self._attributes = {}
        clips = [clip for machine in machines for clip in self._machine_clips(machine)]
        labelled_test = [c for c in clips if c.split == "test" and c.name.condition]
        evaluator = "dcase2021" if "dcase2021" in {c.evaluator for c in clips} else "dcase2022"
        unlabelled = sum(1 for c in clips if c.split == "test" and not c.name.condition)
        label_names = sorted({c.label for c in clips})
        aux = sorted({self._aux(c) for c in clips if c.split == "train"})
        records = []
        for clip in clips:
            if clip.split == "test" and not clip.name.condition:
                continue  # an anonymised evaluation clip: predict scores it
            aux_name = self._aux(clip)
            records.append(Record(clip.path, label_names.index(clip.label), "test" if clip.split == "test" else None,
                                  int(clip.name.condition == "anomaly"), machine=clip.machine, machine_id=clip.label,
                                  domain=clip.name.domain, aux=aux.index(aux_name) if aux_name in aux else -1))
        if labelled_test and not self._testable(labelled_test):
            beside = "" if self.machine == EVERY_MACHINE else " (or machine=all, to learn them beside others)"
            raise DataError(f"{self.root}: no section of machine={self.machine} has both normal and anomalous test "
                            f"clips, so no test metric can be computed; DCASE's test folders hold both{beside}")
        untested = ""
        if not labelled_test:
            untested = (f"the {unlabelled} test clip(s) are anonymised evaluation clips without labels; score "
                        "them with machine_sound.predict (output=<folder> writes the challenge's files)")
        sections = {a: label_names.index(a.split("@", 1)[0]) for a in aux}
        return Index(records, tuple(label_names), {"machine": self.machine}, untested=untested, evaluator=evaluator,
                     aux_names=tuple(a.replace("@", "_") for a in aux), aux_labels=tuple(sections[a] for a in aux),
                     clip_seconds=self._clip_seconds(records))

    def _aux(self, clip: _Clip) -> str:
        """The auxiliary class of a clip: `<label>@<attributes>` (the '@' is replaced by '_' in the names), or
        the label alone without attributes or with `aux_labels=section`. The attributes are its machine type's
        attributes_XX.csv's for this file where it has them, the name's otherwise."""
        attributes = self._attributes.get(clip.machine, {}).get(clip.path.name) or clip.name.attributes
        return f"{clip.label}@{attributes}" if attributes and self.aux_labels == "section_attribute" else clip.label

    def _machine_clips(self, machine: str) -> list[_Clip]:
        """Every clip of one machine type."""
        folder = self.root / machine
        self._attributes[machine] = read_attribute_files(folder)
        every = self.machine == EVERY_MACHINE

        def clip(path: Path, name: ClipName, split: str, evaluator: str = "") -> _Clip:
            return _Clip(path, machine, section_label(machine, name.section, every), name, split, evaluator)

        clips = [clip(path, name, "train") for path, name in self._parse(folder / "train")]
        anomalous = [c.path for c in clips if c.name.condition != "normal"]
        if anomalous:
            raise DataError(f"{anomalous[0]}: not a normal training clip; DCASE's train/ holds normal clips only")
        old = [folder / d for d in DOMAIN_FOLDERS if (folder / d).is_dir()]
        if old and (folder / "test").is_dir():
            raise DataError(f"{folder} holds both test/ (DCASE 2022-2025) and {old[0].name}/ (2021): keep one "
                            "year's layout per machine type")
        if old:  # DCASE 2021: the test folder says the domain, also for anonymised clips
            for test in old:
                domain = test.name.split("_")[0]
                parsed = self._parse(test)
                wrong = [path for path, name in parsed if name.domain not in ("", domain)]
                if wrong:
                    raise DataError(f"{wrong[0]}: a clip of the other domain in {test.name}/; DCASE 2021's "
                                    f"{test.name}/ holds {domain}-domain clips only")
                clips += [clip(path, replace(name, domain=domain), "test", "dcase2021") for path, name in parsed]
        elif (folder / "test").is_dir():
            clips += [clip(path, name, "test", "dcase2022") for path, name in self._parse(folder / "test")]
        else:
            raise DataError(f"no folder {folder / 'test'} (nor source_test/ and target_test/); {HINT}")
        trained = {c.label for c in clips if c.split == "train"}
        untrained = sorted({c.label for c in clips if c.split == "test"} - trained)
        if untrained:
            raise DataError(f"{folder}: test clips of {', '.join(untrained)} but no training clips of it")
        counts = Counter((c.name.domain or "?", c.name.condition or "unlabelled") for c in clips if c.split == "test")
        log.info("%s: %d training clips (%d target domain), test %s", folder,
                 sum(c.split == "train" for c in clips),
                 sum(c.split == "train" and c.name.domain == "target" for c in clips),
                 ", ".join(f"{d}/{k} {n}" for (d, k), n in sorted(counts.items())))
        return clips

    @staticmethod
    def _parse(folder: Path) -> list[tuple[Path, ClipName]]:
        found = []
        for path in find_audio(require_folder(folder, HINT), (".wav",), recursive=False):
            name = parse_name(path.name)
            if name is None:
                raise DataError(f"{path}: the name is not section_XX_<source|target>_<train|test>_<normal|anomaly>_"
                                f"NNNN[_<attributes>].wav nor an evaluation clip's section_XX_NNNN.wav; {HINT}")
            if name.split != folder.name.split("_")[-1]:
                what = "an anonymised test clip (section_XX_NNNN.wav)" if not name.domain else f"a {name.split} clip"
                raise DataError(f"{path}: {what} in {folder.name}/; move it to the {name.split} folder or away")
            found.append((path, name))
        if not found:
            raise DataError(f"no .wav files in {folder}; {HINT}")
        return found

    @staticmethod
    def _testable(labelled_test: list[_Clip]) -> bool:
        """Whether some section has both normal and anomalous labelled test clips (found before training)."""
        kinds: dict[str, set[str]] = {}
        for c in labelled_test:
            kinds.setdefault(c.label, set()).add(c.name.condition)
        return any(len(found) == 2 for found in kinds.values())

    @staticmethod
    def _clip_seconds(records: list[Record]) -> float:
        """The clip length of the data: the longest training file (from the headers; ToyCar and ToyTrain are 12 s
        in DCASE 2023, the others 10 s), so with several machine types the shorter clips are zero-padded."""
        lengths: dict[str, float] = {}
        for record in records:
            if record.split is None:
                try:
                    info = sf.info(str(record.path))
                except (RuntimeError, sf.LibsndfileError):
                    continue  # reported, naming the file, when the data module checks it
                lengths[record.machine] = max(lengths.get(record.machine, 0.0), info.frames / info.samplerate)
        if not lengths:
            raise DataError("no readable training clip to take the clip length from; set data.clip_seconds")
        log.debug("longest training clip per machine type: %s", lengths)
        return round(max(lengths.values()), 3)

