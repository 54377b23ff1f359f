"""DCASE 2020 Task 2: `<root>/<machine>/{train,test}/{normal,anomaly}_id_XX_NNNNNNNN.wav`, its own train/test split.

The training folder holds normal clips only, so there is nothing abnormal to learn from (task `id_anomaly`): a
detector (`machine_sound.models.detector`) learns them, one or more machine IDs, and the labels are the IDs found
in train/. The test metrics are DCASE's, AUROC and pAUC (max FPR 0.1) for each ID and their mean. The data module
holds a stratified share of train/ out for validation (`data.split`), on which the decision threshold is fitted.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from machine_sound.data.records import Index, Record, find_audio, require_folder
from machine_sound.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# DCASE 2020 development data: MIMII channel 0 (fan, pump, slider, valve) and ToyADMOS (ToyCar, ToyConveyor).
MACHINES = ("fan", "pump", "slider", "valve", "ToyCar", "ToyConveyor")
NAME = re.compile(r"^(normal|anomaly)_(id_\d+)_\d+\.(?i:wav)$")  # the suffix in any case, as `find_audio` finds it
HINT = ("data=dcase2020 expects <root>/<machine>/train/normal_id_XX_NNNNNNNN.wav and "
        "<root>/<machine>/test/{normal,anomaly}_id_XX_NNNNNNNN.wav, as in the DCASE 2020 Task 2 development set")


def parse_folder(folder: Path) -> list[tuple[Path, str, bool]]:
    """(path, machine ID, anomalous) for every recording in a train/ or test/ folder (`.wav` in any case, not in
    sub-folders: `records.find_audio`), sorted by name. DataError for a missing folder, no recordings, or a
    name that is not DCASE's."""
    found = []
    for path in find_audio(require_folder(folder, HINT), (".wav",), recursive=False):
        match = NAME.match(path.name)
        if match is None:
            raise DataError(f"{path}: the name is not {{normal,anomaly}}_id_XX_NNNNNNNN.wav; {HINT}")
        found.append((path, match.group(2), match.group(1) == "anomaly"))
    if not found:
        raise DataError(f"no .wav files in {folder}; {HINT}")
    anomalies = sum(anomalous for _, _, anomalous in found)
    log.info("found %d recordings in %s: %d normal, %d anomaly", len(found), folder, len(found) - anomalies,
             anomalies)
    return found


class Dcase2020Reader:
    """One machine type of the DCASE 2020 Task 2 development (or additional training) data, as an `Index`."""

    layout = "dcase2020"
    task = "id_anomaly"

    def __init__(self, root: str | None, machine: str):
        if root is None:
            raise DataError(f"data.root is not set: point it at the unpacked DCASE 2020 Task 2 data; {HINT}")
        if machine not in MACHINES:
            raise ConfigError(f"unknown DCASE 2020 machine '{machine}'; valid: {', '.join(MACHINES)}")
        self.root, self.machine = Path(root), machine

    def read(self) -> Index:
        folder = self.root / self.machine
        train, test = parse_folder(folder / "train"), parse_folder(folder / "test")
        if any(anomalous for _, _, anomalous in train):
            raise DataError(f"{folder / 'train'} holds anomaly_* clips; DCASE's train folder holds normal clips only")
        ids = tuple(sorted({machine_id for _, machine_id, _ in train}))
        unknown = sorted({machine_id for _, machine_id, _ in test} - set(ids))
        if unknown:
            raise DataError(f"{folder / 'test'} has IDs with no training clips: {', '.join(unknown)}")
        kinds = {machine_id: {anomalous for _, i, anomalous in test if i == machine_id} for machine_id in ids}
        if not any(len(found) == 2 for found in kinds.values()):  # found before training, not after it
            raise DataError(f"{folder / 'test'} has no machine ID with both normal_* and anomaly_* clips, so no AUROC "
                            "can be computed; DCASE's test folder holds both for every ID")
        records = [Record(path, ids.index(machine_id), None, 0, self.machine, machine_id)
                   for path, machine_id, _ in train]
        records += [Record(path, ids.index(machine_id), "test", int(anomalous), self.machine, machine_id)
                    for path, machine_id, anomalous in test]
        return Index(records, ids, {"machine": self.machine})
