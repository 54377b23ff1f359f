"""One machine of your own, learned from its normal recordings only:

    <root>/train/**/*.wav            normal recordings (the only ones learned from)
    <root>/test/normal/**/*.wav      normal test recordings
    <root>/test/anomaly/**/*.wav     anomalous test recordings (the folder may also be called abnormal/)

(.flac too; any case of the suffix; linked folders followed, hidden files ignored: `records.find_audio`.) The
run's one machine ID is `machine_id`, by default the root folder's name. Task `id_anomaly`: a detector
(`machine_sound.models.detector`) learns train/, the data module holds a share of it out for validation (on which
the decision threshold is fitted, `data.split`), and the test metrics are AUROC and pAUC of test/.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from machine_sound.data.records import AUDIO_SUFFIXES, Index, Record, find_audio
from machine_sound.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ANOMALY_FOLDERS = ("anomaly", "abnormal")
HINT = ("data=machine_folder expects <root>/train/*.wav (normal recordings), <root>/test/normal/*.wav and "
        "<root>/test/anomaly/*.wav")


class MachineFolderReader:
    """The normal training recordings and the labelled test recordings of one machine, as an `Index`."""

    layout = "machine_folder"
    task = "id_anomaly"

    def __init__(self, root: str | None, machine_id: str | None = None, extensions: Sequence[str] = AUDIO_SUFFIXES):
        if root is None:
            raise DataError(f"data.root is not set; {HINT}")
        if machine_id is not None and (not isinstance(machine_id, str) or not machine_id.strip()):
            raise ConfigError(f"data.reader.machine_id={machine_id!r}: a name for the machine, or null for the root "
                              "folder's name")
        self.root, self.extensions = Path(root), tuple(extensions)
        self.machine_id = machine_id or self.root.resolve().name

    def _files(self, folder: Path, what: str) -> list[Path]:
        if not folder.is_dir():
            raise DataError(f"no folder {folder} ({what}); {HINT}")
        files = find_audio(folder, self.extensions)
        if not files:
            raise DataError(f"no {'/'.join(self.extensions)} files in {folder} ({what}); {HINT}")
        return files

    def read(self) -> Index:
        if not self.root.is_dir():
            raise DataError(f"data root {self.root} does not exist; {HINT}")
        train = self._files(self.root / "train", "normal training recordings")
        found = [self.root / "test" / name for name in ANOMALY_FOLDERS if (self.root / "test" / name).is_dir()]
        if len(found) > 1:
            raise DataError(f"{self.root / 'test'} holds both anomaly/ and abnormal/: put the anomalous test "
                            "recordings in one of them")
        anomalous_folder = found[0] if found else self.root / "test" / ANOMALY_FOLDERS[0]
        normal = self._files(self.root / "test" / "normal", "normal test recordings")
        anomalous = self._files(anomalous_folder, "anomalous test recordings")
        name = self.machine_id
        records = [Record(path, 0, None, 0, name, name) for path in train]
        records += [Record(path, 0, "test", 0, name, name) for path in normal]
        records += [Record(path, 0, "test", 1, name, name) for path in anomalous]
        log.info("found %d recordings of %s in %s: %d normal for training; %d normal and %d anomalous for testing",
                 len(records), name, self.root, len(train), len(normal), len(anomalous))
        return Index(records, (name,), {"machine": name})
