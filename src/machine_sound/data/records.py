"""What a layout's reader returns: an index of recordings (`Record`s) with the names of its labels.

A reader only lists (like timm's `timm/data/readers`); `AudioDataModule` checks, splits, caches and loads any index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from machine_sound.errors import DataError

AUDIO_SUFFIXES = (".wav", ".flac")
NOT_ANOMALY_SCORED = -1  # `Record.anomalous` of a recording that is neither normal nor anomalous (class folders)


@dataclass(frozen=True)
class Record:
    """One recording.

    - `label`: an index into the index's `class_names` (normal/abnormal, a class folder, or a machine ID).
    - `split`: `train`, `val` or `test` when the dataset says so; None when the data module is to split it.
    - `anomalous`: 1 abnormal, 0 normal, -1 neither (classes that are not faults).
    - `machine`, `machine_id`, `snr`: what names the recording, where the layout has them ('' otherwise).
    - `test_path`: the file to read instead when the recording lands in the test split (cross-SNR testing: the
      same recording at another noise level).
    """

    path: Path
    label: int
    split: str | None = None
    anomalous: int = NOT_ANOMALY_SCORED
    machine: str = ""
    machine_id: str = ""
    snr: str = ""
    test_path: Path | None = None


@dataclass(frozen=True)
class Index:
    """Every recording a run can use, in a reproducible order.

    - `class_names`: the label names, in label order; with two classes the second is the positive one.
    - `identity`: what names the run in metrics.json and TensorBoard's HPARAMS row (machine, id, snr for MIMII;
      machine for DCASE; nothing for class folders, which are named by their root and classes).
    - `note`: shown after the run's name, e.g. `test at 6_dB`.
    """

    records: list[Record]
    class_names: tuple[str, ...]
    identity: dict[str, str] = field(default_factory=dict)
    note: str = ""


def find_audio(folder: Path, suffixes: Sequence[str] = AUDIO_SUFFIXES) -> list[Path]:
    """Every file under `folder` (recursively) whose suffix is one of `suffixes` (any case), sorted by path."""
    suffixes = tuple(s.lower() if s.startswith(".") else f".{s.lower()}" for s in suffixes)
    return sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in suffixes and f.is_file())


def distinct_names(value) -> bool:
    """Whether a setting is a list of distinct names (not a string, whose letters would be read as names)."""
    return (isinstance(value, Sequence) and not isinstance(value, str) and all(isinstance(v, str) for v in value)
            and len(set(value)) == len(value))


def require_folder(folder: Path, hint: str) -> Path:
    """`folder` if it is one; DataError `no folder <folder>; <hint>` otherwise."""
    if not Path(folder).is_dir():
        raise DataError(f"no folder {folder}; {hint}")
    return Path(folder)
