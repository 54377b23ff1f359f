"""Any sounds sorted into one folder per class: `<root>/<class>/**/*.wav`, any number of classes.

The class folders, sorted by name, are the labels 0, 1, 2, ... unless `classes` lists them (which also picks a
subset and sets the order). With two classes the second is the positive class of precision, recall and F1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from machine_sound.data.datamodule import AudioDataModule, Item
from machine_sound.errors import ConfigError, DataError


class FolderDataModule(AudioDataModule):
    layout = "folder"

    def __init__(self, root: str | None, classes: Sequence[str] | None = None,
                 extensions: Sequence[str] = (".wav", ".flac"), **kwargs):
        super().__init__(**kwargs)
        if root is None:
            raise DataError("data.root is not set: point it at a folder holding one sub-folder of recordings per "
                            "class (<root>/<class>/*.wav)")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data root {self.root} does not exist (data=folder expects <root>/<class>/*.wav)")
        self.extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if classes is None:
            classes = found
        missing = [c for c in classes if c not in found]
        if missing:
            raise DataError(f"data.classes names {', '.join(missing)} but {self.root} has no such folder "
                            f"(class folders: {', '.join(found) or 'none'})")
        if len(classes) < 2:
            raise ConfigError(f"{self.root} has {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
                              "a classifier needs at least 2: <root>/<class>/*.wav")
        self.class_names = tuple(classes)

    def find_recordings(self) -> list[Item]:
        items: list[Item] = []
        for label, name in enumerate(self.class_names):
            files = sorted(f for f in (self.root / name).rglob("*")
                           if f.suffix.lower() in self.extensions and f.is_file())
            if not files:
                raise DataError(f"no {'/'.join(self.extensions)} files in {self.root / name}")
            items += [(f, label) for f in files]
        return items
