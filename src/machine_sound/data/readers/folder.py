"""Any sounds sorted into one folder per class: `<root>/<class>/**/*.wav` (or .flac), any number of classes.

The class folders, sorted by name, are the labels 0, 1, 2, ... unless `classes` lists them (which also picks a
subset and sets the order). Task `multiclass` (default) learns any number of classes; task `binary` needs exactly
two, and the second is the positive one (abnormal). With two classes and no `classes`, for either task, a folder
whose name holds a fault word (abnormal, anomaly, faulty, ... as a word: `abnormal_pump`, `anomaly_id_00`) or a
health word (normal, ok, good, healthy) is put on its side whatever the sort order: normal is 0, abnormal 1. For
the binary task a warning says which is positive when neither does. Recordings are found by the project's one
rule (`records.find_audio`: any case of the suffixes, linked folders followed, hidden files ignored).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

from machine_sound.data.records import AUDIO_SUFFIXES, NOT_ANOMALY_SCORED, Index, Record, distinct_names, find_audio
from machine_sound.errors import ConfigError, DataError

log = logging.getLogger(__name__)

TASKS = ("multiclass", "binary")
HEALTHY = {"normal", "ok", "good", "healthy"}
FAULTY = {"abnormal", "anomaly", "anomalous", "fault", "faulty", "broken", "defect", "defective"}


def _says(name: str, words: set[str]) -> bool:
    """Whether a folder name holds one of `words` as a word of its own (`abnormal_pump` holds abnormal, not normal)."""
    return bool(words & set(re.split(r"[^a-z]+", name.lower())))


def binary_order(classes: list[str], given: bool, quiet: bool = False) -> list[str]:
    """Two class names as [negative, positive]: a fault-named folder is positive, a health-named one negative. An
    order the user gave is kept, with a warning when it makes a health-named folder the positive class; names that
    say neither (or both ways) keep their order, with a warning naming the positive one. `quiet` (the multiclass
    task, whose classes need not be faults) orders the same way without the warnings."""
    first, second = classes
    right = _says(first, HEALTHY) or _says(second, FAULTY)
    wrong = _says(first, FAULTY) or _says(second, HEALTHY)
    if given:
        if wrong and not right and not quiet:
            log.warning("data.reader.classes=[%s] makes '%s' the positive (abnormal) class", ", ".join(classes),
                        second)
        return classes
    if wrong != right:
        return classes[::-1] if wrong else classes
    if not quiet:
        log.warning("the names %s and %s do not say which is the fault: %s is taken as abnormal (positive); "
                    "set data.reader.classes=[<normal>,<abnormal>] to choose", first, second, second)
    return classes


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
        if classes is not None and not distinct_names(classes):
            raise ConfigError(f"data.reader.classes={classes!r}: a list of distinct folder names, such as "
                              "[normal,abnormal]")
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
                              f"({', '.join(classes)}); pick two with data.reader.classes=[normal,abnormal], or "
                              "train with data.task=multiclass")
        if len(classes) == 2:  # normal before abnormal wherever the names say so, for multiclass too
            classes = binary_order(list(classes), given=self.classes is not None, quiet=self.task != "binary")
        if self.task == "binary":
            log.info("binary task on class folders: %s is normal (0), %s abnormal (1), the positive class", *classes)
        records, counts = [], []
        for label, name in enumerate(classes):
            files = find_audio(self.root / name, self.extensions)
            if not files:
                raise DataError(f"no {'/'.join(self.extensions)} files in {self.root / name}")
            flag = label if self.task == "binary" else NOT_ANOMALY_SCORED
            records += [Record(path, label, None, flag) for path in files]
            counts.append(f"{len(files)} {name}")
        log.info("found %d recordings in %s: %s", len(records), self.root, ", ".join(counts))
        return Index(records, tuple(classes))
