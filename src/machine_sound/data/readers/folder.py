"""Any sounds sorted into one folder per class: `<root>/<class>/**/*.wav` (or .flac), any number of classes.

The class folders, sorted by name, are the labels 0, 1, 2, ... unless `classes` lists them (which also picks a
subset and sets the order). Task `multiclass` (default) learns any number of classes; task `binary` needs exactly
two, and the second is the positive one (abnormal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from machine_sound.data.records import AUDIO_SUFFIXES, NOT_ANOMALY_SCORED, Index, Record, find_audio
from machine_sound.errors import ConfigError, DataError

TASKS = ("multiclass", "binary")


class FolderReader:
    """Class folders under `root`, as an `Index` whose identity is the root and the classes (no machine)."""

    layout = "folder"

    def __init__(self, root: str | None, task: str = "multiclass", classes: Sequence[str] | None = None,
                 extensions: Sequence[str] = AUDIO_SUFFIXES):
        if root is None:
            raise DataError("data.root is not set: point it at a folder holding one sub-folder of recordings per "
                            "class (<root>/<class>/*.wav)")
        if task not in TASKS:
            raise ConfigError(f"data.task={task}: class folders are learned as multiclass or binary")
        self.root, self.task = Path(root), task
        self.classes = list(classes) if classes is not None else None
        self.extensions = tuple(extensions)

    def read(self) -> Index:
        if not self.root.is_dir():
            raise DataError(f"data root {self.root} does not exist (data=folder expects <root>/<class>/*.wav)")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        classes = found if self.classes is None else self.classes
        missing = [c for c in classes if c not in found]
        if missing:
            raise DataError(f"data.reader.classes names {', '.join(missing)} but {self.root} has no such folder "
                            f"(class folders: {', '.join(found) or 'none'})")
        if len(classes) < 2:
            raise ConfigError(f"{self.root} has {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
                              "a classifier needs at least 2: <root>/<class>/*.wav")
        if self.task == "binary" and len(classes) != 2:
            raise ConfigError(f"data.task=binary needs exactly 2 classes but {self.root} has {len(classes)} "
                              f"({', '.join(classes)}); pick two with data.reader.classes=[normal,abnormal] or "
                              "set data.task=multiclass")
        records = []
        for label, name in enumerate(classes):
            files = find_audio(self.root / name, self.extensions)
            if not files:
                raise DataError(f"no {'/'.join(self.extensions)} files in {self.root / name}")
            flag = label if self.task == "binary" else NOT_ANOMALY_SCORED
            records += [Record(path, label, None, flag) for path in files]
        return Index(records, tuple(classes), self.task, self.layout)
