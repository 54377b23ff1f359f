"""Which of a detector's machine IDs (DCASE: sections) a recording is scored as, read from its name and folders.

A model of one machine ID scores every file as that ID; a model of several, or of DCASE sections, scores a file
as the ID its name (or a folder) names, and gives a file that names none no score (predict's row says so).
"""

from __future__ import annotations

import logging
from pathlib import Path

from machine_sound.errors import DataError

log = logging.getLogger(__name__)


def check_ids(dataset, model, source: str | Path) -> None:
    """For a detector of several machine IDs: DataError when no readable file names one of its IDs (so none could
    get an anomaly score), one warning counting those that do not when some do."""
    if model.task.score != "anomaly" or (len(model.class_names) < 2 and not dcase_sections(model.class_names)):
        return
    readable = [path for i, path in enumerate(dataset.files) if i not in dataset.errors]
    missing = sum(file_id(path, model.class_names) is None for path in readable)
    ids = ", ".join(model.class_names)
    if missing == len(readable):
        unreadable = f" ({len(dataset.errors)} of them unreadable)" if dataset.errors else ""
        how = (f"name files like normal_{model.class_names[0]}_00000000.wav or put them under an "
               f"{model.class_names[0]}/ folder")
        if dcase_sections(model.class_names):
            how = ("DCASE files name their section (section_XX_...wav) and, for a model of every machine type, lie "
                   "in <machine>/test/ folders of the types it learned")
        raise DataError(f"no anomaly score for any of the {len(dataset.files)} file(s) under {source}{unreadable}: "
                        f"none names one of the model's machine IDs ({ids}); {how}")
    if missing:
        log.warning("%d of %d readable file(s) under %s name none of the model's machine IDs (%s): their rows get "
                    "no anomaly score, only an error", missing, len(readable), source, ids)


def dcase_sections(ids: list[str]) -> bool:
    """Whether a model's IDs are DCASE 2021-2025 sections (`section_00`, `fan_section_00`)."""
    return any(i.startswith("section_") or "_section_" in i for i in ids)


def file_id(path: Path, ids: list[str]) -> str | None:
    """The ID a file is scored as: a model's only machine ID, or the one the file names (`own_id`; always so for
    DCASE sections, so a clip of a section the model did not learn is not scored as another one)."""
    if len(ids) == 1 and not dcase_sections(ids):
        return ids[0]
    return own_id(path, ids)


def own_id(path: Path, ids: list[str]) -> str | None:
    """A recording's machine ID: the one its name holds as a part between '_' (DCASE: `normal_id_00_0001.wav`,
    also `id_00_0001.wav`), else the nearest folder named by one (MIMII: `.../id_00/normal/...`)."""
    name = f"_{path.stem}_"
    for machine_id in ids:
        if f"_{machine_id}_" in name:
            return machine_id
    for machine_id in ids:  # DCASE with machine=all: `<machine>_section_XX`, the machine type's folder above
        machine, _, section = machine_id.rpartition("_section_")  # readers.dcase.section_label's form
        if machine and f"_section_{section}_" in name and machine in path.parent.parts:
            return machine_id
    return next((part for part in reversed(path.parent.parts) if part in ids), None)
