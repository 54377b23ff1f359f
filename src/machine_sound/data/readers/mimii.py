"""MIMII as released: `<root>/<snr>_<machine>/<machine>/<id>/{normal,abnormal}/*.wav`, one machine/ID per run.

Two protocols (`data.reader.protocol`), each with its task:
- `stratified` (default, task `binary`): every recording of the ID, labelled normal (0) or abnormal (1); the data
  module splits them at random, keeping the class ratio.
- `baseline` (task `id_anomaly`): the MIMII paper's (Purohit et al., 2019, arXiv 1909.09347). The test set is the
  ID's first N normal files (N = its number of abnormal files) and all its abnormal files. Nothing abnormal is
  left to learn from: a detector (`machine_sound.models.detector`) learns the other normal files of this ID
  (`train_ids=own`, the paper's autoencoder) or of every ID of the machine type (`train_ids=all`, for a detector
  that tells IDs apart), split by the data module at train:val; the labels are machine IDs and the test files
  are labelled with their own ID and flagged normal or anomalous. `id=all` (`EVERY_ID`) tests every ID of the
  machine type with one detector learned from all their normal files, as DCASE trains one model per machine type.
`test_snr` tests across noise levels: a test recording is read from another SNR folder (MIMII's SNR folders hold
the same machine sounds mixed with the background at other levels).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

from machine_sound.data.records import Index, Record, distinct_names, find_audio
from machine_sound.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CLASS_NAMES = ("normal", "abnormal")  # label 0 and 1: abnormal is the positive class
PROTOCOL_TASKS = {"stratified": "binary", "baseline": "id_anomaly"}
TRAIN_IDS = ("own", "all")
EVERY_ID = "all"  # machine_id for the baseline protocol: test every ID of the machine type in one run
SNRS = ("-6_dB", "0_dB", "6_dB")  # the noise levels MIMII was released at
HINT = ("download MIMII (Zenodo record 3384388), unzip e.g. -6_dB_pump.zip into one folder and set data.root to "
        "it, or use the built-in data=synthetic")


def parse_snr(snr: str) -> float:
    """'-6_dB' -> -6.0, with a clear error for anything else."""
    try:
        if not snr.endswith("_dB"):
            raise ValueError
        return float(snr[: -len("_dB")])
    except ValueError:
        raise ConfigError(f"snr '{snr}' is not of the form '<number>_dB' (MIMII has -6_dB, 0_dB, 6_dB)") from None


def id_folder(root: str | Path, snr: str, machine: str, machine_id: str) -> Path:
    """Where MIMII keeps one machine/ID at one SNR."""
    return Path(root) / f"{snr}_{machine}" / machine / machine_id


def list_id(root: str | Path | None, snr: str, machine: str, machine_id: str) -> dict[str, list[Path]]:
    """The normal and abnormal files of one snr/machine/id (`.wav` in any case, directly in normal/ and abnormal/;
    `records.find_audio`), each sorted by name, with DataErrors that say what is missing."""
    if root is None:
        raise DataError(f"data.root is not set: {HINT}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist: {HINT}")
    snr_dir = root / f"{snr}_{machine}"
    if not snr_dir.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and "_dB_" in p.name)
        raise DataError(f"no folder {snr_dir.name} in {root} (found: {', '.join(found) or 'none'}); "
                        f"unzip {snr}_{machine}.zip there or choose another snr/machine")
    folder = id_folder(root, snr, machine, machine_id)
    if not folder.is_dir():
        found = sorted(p.name for p in (snr_dir / machine).glob("id_*"))
        raise DataError(f"no folder {folder} (IDs found: {', '.join(found) or 'none'})")
    files = {}
    for name in CLASS_NAMES:
        files[name] = find_audio(folder / name, (".wav",), recursive=False)  # flat by MIMII's layout
        if not files[name]:
            raise DataError(f"no .wav files in {folder / name}; a MIMII ID folder holds normal/ and abnormal/ "
                            "folders of .wav files")
    log.info("found %d recordings in %s: %s", sum(map(len, files.values())), folder,
             ", ".join(f"{len(found)} {name}" for name, found in files.items()))
    return files


class MimiiReader:
    """The recordings of one MIMII machine/ID (`machine_id`) at one SNR, as an `Index`."""

    layout = "mimii"

    def __init__(self, root: str | None, snr: str, machine: str, machine_id: str,
                 machines: Mapping[str, Sequence[str]], protocol: str = "stratified", test_snr: str | None = None,
                 snrs: Sequence[str] = SNRS, train_ids: str = "all"):
        for name, ids in machines.items():
            if not distinct_names(ids):
                raise ConfigError(f"data.reader.machines.{name}={ids!r}: a list of distinct IDs, such as "
                                  "[id_00,id_02]")
        if train_ids not in TRAIN_IDS:
            raise ConfigError(f"data.reader.train_ids={train_ids}: own (this ID's normal files) or all (every ID "
                              "of the machine type)")
        if protocol not in PROTOCOL_TASKS:
            raise ConfigError(f"data.reader.protocol={protocol}: choose {' or '.join(PROTOCOL_TASKS)}")
        if machine not in machines:
            raise ConfigError(f"unknown machine '{machine}'; valid: {', '.join(machines)}")
        if machine_id == EVERY_ID and train_ids == "own":
            raise ConfigError(f"id={EVERY_ID} learns one model from the normal files of every ID: "
                              "data.reader.train_ids=own cannot apply; choose an ID to learn one ID's files")
        if machine_id == EVERY_ID and protocol != "baseline":
            raise ConfigError(f"id={EVERY_ID} tests every ID of the machine type: it needs "
                              "data.reader.protocol=baseline (normal vs abnormal is learned per ID)")
        if machine_id not in machines[machine] and machine_id != EVERY_ID:
            raise ConfigError(f"unknown id '{machine_id}' for {machine}; valid: {', '.join(machines[machine])} "
                              f"(to use another, add it to data.reader.machines.{machine})")
        if not distinct_names(snrs):
            raise ConfigError(f"data.reader.snrs={snrs!r}: a list of distinct noise levels, such as [-6_dB,0_dB,6_dB]")
        for setting, value in (("snr", snr), ("data.reader.test_snr", test_snr)):
            if value is not None:
                parse_snr(value)
                if value not in snrs:
                    raise ConfigError(f"{setting}={value}: MIMII's noise levels are {', '.join(snrs)} (to use "
                                      "another, add it to data.reader.snrs)")
        self.root, self.snr, self.machine, self.machine_id = root, snr, machine, machine_id
        self.protocol, self.test_snr = protocol, test_snr if test_snr != snr else None
        every = train_ids == "all" or machine_id == EVERY_ID
        self.ids = tuple(machines[machine]) if every else (machine_id,)
        self.task, self.train_ids = PROTOCOL_TASKS[protocol], train_ids

    def folders(self) -> list[tuple[str, str, str]]:
        """Every (snr, machine, id) folder this reader reads: what a generator must write first."""
        ids = self.ids if self.protocol == "baseline" else (self.machine_id,)
        snrs = [self.snr] + ([self.test_snr] if self.test_snr else [])
        return [(snr, self.machine, machine_id) for snr in snrs for machine_id in ids]

    def read(self) -> Index:
        records = self._baseline() if self.protocol == "baseline" else self._stratified()
        identity = {"machine": self.machine, "id": self.machine_id, "snr": self.snr}
        classes = self.ids if self.protocol == "baseline" else CLASS_NAMES
        return Index(records, classes, identity, note=f"test at {self.test_snr}" if self.test_snr else "")

    def _record(self, path: Path, label: int, anomalous: int, split: str | None = None) -> Record:
        snr = path.parents[2].name.removesuffix(f"_{self.machine}")  # <snr>_<machine>/<machine>/<id>/<label>/
        return Record(path, label, split, anomalous, self.machine, path.parent.parent.name, snr,
                      self._at_test_snr(path) if self.test_snr and split is None else None)

    def _stratified(self) -> list[Record]:
        files = list_id(self.root, self.snr, self.machine, self.machine_id)
        if self.test_snr:
            list_id(self.root, self.test_snr, self.machine, self.machine_id)  # that folder's own errors first
        return [self._record(path, label, label) for label, name in enumerate(CLASS_NAMES) for path in files[name]]

    def _baseline(self) -> list[Record]:
        records = []
        for label, machine_id in enumerate(self.ids):
            files = list_id(self.root, self.snr, self.machine, machine_id)
            normal, abnormal = files["normal"], files["abnormal"]
            if len(normal) <= len(abnormal):
                raise DataError(f"{self.snr}_{self.machine}/{machine_id} has {len(normal)} normal and "
                                f"{len(abnormal)} abnormal files: the baseline protocol tests on as many normal "
                                "files as abnormal ones and needs more normal files left to train on")
            records += [self._record(path, label, 0) for path in normal[len(abnormal):]]
            if self.machine_id in (machine_id, EVERY_ID):  # a tested ID: its test set, labelled by ID and flagged
                if self.test_snr:
                    list_id(self.root, self.test_snr, self.machine, machine_id)
                test = [(path, 0) for path in normal[:len(abnormal)]] + [(path, 1) for path in abnormal]
                tested = [(self._at_test_snr(path) if self.test_snr else path, flag) for path, flag in test]
                records += [self._record(path, label, flag, "test") for path, flag in tested]
        return records

    def _at_test_snr(self, path: Path) -> Path:
        """The same recording in the `test_snr` folder, with a clear error when it is missing."""
        snr_dir = path.parents[3]  # <snr>_<machine>/<machine>/<id>/<label>/<file>
        other = snr_dir.with_name(f"{self.test_snr}_{self.machine}") / path.relative_to(snr_dir)
        if not other.is_file():
            raise DataError(f"data.reader.test_snr={self.test_snr}: {other} is missing; cross-SNR testing needs "
                            f"the same file names in {snr_dir.name} and {self.test_snr}_{self.machine}")
        return other
