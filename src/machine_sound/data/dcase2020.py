"""DCASE 2020 Task 2: `<root>/<machine>/{train,test}/{normal,anomaly}_id_XX_NNNNNNNN.wav`, its own train/test split.

The training folder holds normal clips only, so there is nothing abnormal to learn from. As the challenge's best
systems did, the model learns to tell the machine type's IDs apart (the labels are the IDs found in train/), and
a test clip's anomaly score is how little the model believes the clip is its own ID: 1 - p(own ID). The test
metrics are DCASE's, AUROC and pAUC (max FPR 0.1) for each ID and their mean. Validation clips are a stratified
share of train/ (normal clips of every ID), on which the ID classification is scored.
"""

from __future__ import annotations

import re
from pathlib import Path

from machine_sound.data.datamodule import AudioDataModule, Item
from machine_sound.errors import ConfigError, DataError

# DCASE 2020 development data: MIMII channel 0 (fan, pump, slider, valve) and ToyADMOS (ToyCar, ToyConveyor).
MACHINES = ("fan", "pump", "slider", "valve", "ToyCar", "ToyConveyor")
NAME = re.compile(r"^(normal|anomaly)_(id_\d+)_\d+\.wav$")
HINT = ("data=dcase2020 expects <root>/<machine>/train/normal_id_XX_NNNNNNNN.wav and "
        "<root>/<machine>/test/{normal,anomaly}_id_XX_NNNNNNNN.wav, as in the DCASE 2020 Task 2 development set")


def parse_folder(folder: Path) -> list[tuple[Path, str, bool]]:
    """(path, machine ID, anomalous) for every recording in a train/ or test/ folder, sorted by name."""
    if not folder.is_dir():
        raise DataError(f"no folder {folder}; {HINT}")
    found = []
    for path in sorted(folder.glob("*.wav")):
        match = NAME.match(path.name)
        if match is None:
            raise DataError(f"{path}: the name is not {{normal,anomaly}}_id_XX_NNNNNNNN.wav; {HINT}")
        found.append((path, match.group(2), match.group(1) == "anomaly"))
    if not found:
        raise DataError(f"no .wav files in {folder}; {HINT}")
    return found


class Dcase2020DataModule(AudioDataModule):
    layout = "dcase2020"
    scored_by_id = True

    def __init__(self, root: str | None, machine: str, **kwargs):
        super().__init__(**kwargs)
        if root is None:
            raise DataError(f"data.root is not set: point it at the unpacked DCASE 2020 Task 2 data; {HINT}")
        if machine not in MACHINES:
            raise ConfigError(f"unknown DCASE 2020 machine '{machine}'; valid: {', '.join(MACHINES)}")
        if self.fractions.get("test", 0) != 0:
            raise ConfigError("data=dcase2020 keeps the dataset's own test/ folder: set data.split.test=0 "
                              f"(data.split is {self.fractions})")
        self.root, self.machine = Path(root), machine
        self.train_files = parse_folder(self.root / machine / "train")
        self.test_files = parse_folder(self.root / machine / "test")
        if any(anomalous for _, _, anomalous in self.train_files):
            raise DataError(f"{self.root / machine / 'train'} holds anomaly_* clips; DCASE's train folder holds "
                            "normal clips only")
        self.class_names = tuple(sorted({machine_id for _, machine_id, _ in self.train_files}))
        if len(self.class_names) < 2:
            raise DataError(f"{self.root / machine / 'train'} holds one machine ID ({self.class_names[0]}); "
                            "learning to tell IDs apart needs at least 2")
        unknown = sorted({i for _, i, _ in self.test_files} - set(self.class_names))
        if unknown:
            raise DataError(f"{self.root / machine / 'test'} has IDs with no training clips: {', '.join(unknown)}")

    def find_recordings(self) -> list[Item]:
        return [(path, self.class_names.index(machine_id)) for path, machine_id, _ in self.train_files]

    def make_splits(self, items: list[Item]) -> dict[str, list[Item]]:
        splits = self.stratified(items, **self.fractions)  # train/val from train/; data.split.test is 0
        flags = {path: int(anomalous) for path, _, anomalous in self.test_files}
        splits["test"] = self.check([(path, self.class_names.index(machine_id))
                                     for path, machine_id, _ in self.test_files])
        self.anomalous["test"] = [flags[path] for path, _ in splits["test"]]
        return splits
