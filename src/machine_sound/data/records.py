"""What a layout's reader returns: an index of recordings (`Record`s) with the names of its labels.

A reader only lists (like timm's `timm/data/readers`); `AudioDataModule` checks, splits, caches and loads any index.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from machine_sound.errors import ConfigError, DataError

log = logging.getLogger(__name__)

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
    - `domain`: `source` or `target` (DCASE 2021-2025), '' where the layout has no domains.
    - `aux`: the auxiliary class an ID classifier learns, an index into the index's `aux_names` (DCASE 2022-2025:
      section x attribute); -1 where the label is that class.
    """

    path: Path
    label: int
    split: str | None = None
    anomalous: int = NOT_ANOMALY_SCORED
    machine: str = ""
    machine_id: str = ""
    snr: str = ""
    test_path: Path | None = None
    domain: str = ""
    aux: int = -1


@dataclass(frozen=True)
class Index:
    """Every recording a run can use, in a reproducible order.

    - `class_names`: the label names, in label order; with two classes the second is the positive one.
    - `identity`: what names the run in metrics.json and TensorBoard's HPARAMS row (machine, id, snr for MIMII;
      machine for DCASE; nothing for class folders, which are named by their root and classes).
    - `note`: shown after the run's name, e.g. `test at 6_dB`.
    - `aux_names`: the auxiliary classes (`Record.aux`), and `aux_labels` the label each belongs to; empty where
      the labels are the classes learned.
    - `evaluator`: whose rules score the test where the layout has a challenge's (DCASE 2021-2025: `dcase2021` or
      `dcase2022`, see `machine_sound.challenge`); '' otherwise.
    - `untested`: why the index has no test records though that is fine (an evaluation set's anonymised test clips,
      scored with predict); '' otherwise, when a run without test records is an error.
    - `clip_seconds`: the length of the layout's clips where it reads it from its files (DCASE 2021-2025), used
      when `data.clip_seconds` is null.
    """

    records: list[Record]
    class_names: tuple[str, ...]
    identity: dict[str, str] = field(default_factory=dict)
    note: str = ""
    aux_names: tuple[str, ...] = ()
    aux_labels: tuple[int, ...] = ()
    clip_seconds: float | None = None
    untested: str = ""
    evaluator: str = ""


def find_audio(folder: str | Path, suffixes: Sequence[str] = AUDIO_SUFFIXES, recursive: bool = True) -> list[Path]:
    """The recordings in `folder`: the one rule every reader and predict find files by.

    A recording is a file whose suffix is one of `suffixes` in any case (`.wav` finds `a.WAV`). With `recursive`
    the folders below are searched too, following symbolically linked folders; a folder reached again (a link
    loop, or two links to one folder) is searched once, under the first path the sorted walk reaches. Names starting
    with '.' (macOS `._a.wav` AppleDouble files, `.Trash/`) are hidden and ignored, with a log line that counts
    them. A link to a missing file is kept, so that reading it names it. Returns paths under `folder`, sorted;
    an empty list when `folder` is not a folder.
    """
    suffixes = tuple(s.lower() if s.startswith(".") else f".{s.lower()}" for s in suffixes)
    root = Path(folder)
    if not root.is_dir():
        return []
    found, hidden, seen = [], 0, set()
    for top, dirs, files in os.walk(root, followlinks=True, onerror=_unsearchable):
        real = os.path.realpath(top)
        if real in seen:  # a link loop, or a second link to a folder already searched
            dirs[:] = []
            continue
        seen.add(real)
        audio = [name for name in files if os.path.splitext(name)[1].lower() in suffixes]
        hidden += sum(name.startswith(".") for name in audio)
        if recursive:
            hidden += sum(name.startswith(".") for name in dirs)
        dirs[:] = sorted(name for name in dirs if not name.startswith(".")) if recursive else []
        found += [Path(top) / name for name in audio if not name.startswith(".")]
    if hidden:
        log.info("ignored %d hidden recording(s) or folder(s) in %s (names starting with '.', such as the ._*.wav "
                 "files macOS leaves)", hidden, root)
    return sorted(found)


def _unsearchable(err: OSError) -> None:
    log.warning("cannot search %s: %s; its recordings are left out", err.filename, err.strerror)


def distinct_names(value) -> bool:
    """Whether a setting is a list of distinct names (not a string, whose letters would be read as names)."""
    return (isinstance(value, Sequence) and not isinstance(value, str) and all(isinstance(v, str) for v in value)
            and len(set(value)) == len(value))


def require_folder(folder: Path, hint: str) -> Path:
    """`folder` if it is one; DataError `no folder <folder>; <hint>` otherwise."""
    if not Path(folder).is_dir():
        raise DataError(f"no folder {folder}; {hint}")
    return Path(folder)


def relabel(index: Index, class_names: Sequence[str], flag_is_label: bool = False) -> Index:
    """`index` with its labels mapped by name onto `class_names` (the same names, in another order), e.g. a
    checkpoint's classes. With `flag_is_label` (a binary task: the anomaly flag is 1 for the second class) each
    record's flag becomes its new label. The records keep their order. Raises ConfigError, naming both lists,
    when the names differ."""
    if sorted(index.class_names) != sorted(class_names) or len(set(class_names)) != len(class_names):
        learned = f"tells {', '.join(class_names)} apart" if len(class_names) > 1 else f"learned {class_names[0]}"
        raise ConfigError(f"the checkpoint's model {learned}, but this data has "
                          f"{', '.join(index.class_names)}; evaluate it on data with the same class names")
    new = [list(class_names).index(name) for name in index.class_names]
    records = [replace(r, label=new[r.label], anomalous=new[r.label] if flag_is_label else r.anomalous)
               for r in index.records]
    return replace(index, records=records, class_names=tuple(class_names))
