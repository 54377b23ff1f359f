"""What the data module serves: `ClipDataset`, the clips of one split as tensors, and the settings it checks.

Each item is `(wave, label, anomalous, domain, aux)`: wave (channels, frames) float32, label the class or machine
ID (DCASE: section) index, anomalous 1/0/-1, domain (`DOMAINS`: 0 source, 1 target, -1 none) and aux, the
auxiliary class an ID classifier learns (the label where the layout has none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch.utils.data import Dataset

from machine_sound.data.audio import Decoding, decode, fit_length
from machine_sound.data.cache import DecodedCache
from machine_sound.data.records import Record
from machine_sound.data.split import SPLITS, check_fractions
from machine_sound.errors import ConfigError

DOMAINS = ("source", "target")  # Record.domain -> its index in a batch; -1 for none


def domain_index(domain: str) -> int:
    return DOMAINS.index(domain) if domain in DOMAINS else -1


def resolve_workers(num_workers: int | str) -> int:
    """`data.num_workers: auto`: on a GPU machine, loader processes for this job's share of the CPU threads (at
    most 8); on a CPU-only machine none, since the model's own threads already use every core."""
    if num_workers == "auto":
        return min(8, torch.get_num_threads()) if torch.cuda.is_available() else 0
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"data.num_workers={num_workers!r}: give a number >= 0 or 'auto'")
    return num_workers


def split_fractions(split) -> dict[str, float]:
    """`data.split` as {train, val, test: fraction}; ConfigError naming the setting for anything else."""
    if split is None:
        return {"train": 0.6, "val": 0.2, "test": 0.2}
    if not isinstance(split, Mapping) or set(split) != set(SPLITS) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in split.values()):
        raise ConfigError(f"data.split={split!r}: give fractions of train, val and test, such as "
                          "data.split={train:0.6,val:0.2,test:0.2} or data.split.val=0.1")
    fractions = {name: float(split[name]) for name in SPLITS}
    check_fractions(*fractions.values())  # before any file is read
    return fractions


class ClipDataset(Dataset):
    """`(wave (channels, frames) float32, label, anomalous, domain, aux)` per record, read from the cache or
    decoded (see the module's docstring)."""

    def __init__(self, records: Sequence[Record], sources: Mapping[Path, Path] | None, decoding: Decoding,
                 num_frames: int):
        self.records = list(records)
        self.sources = sources  # recording -> cache entry; None reads the recordings themselves
        self.decoding, self.num_frames = decoding, num_frames

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        record = self.records[index]
        if self.sources is not None:
            wave = DecodedCache.load(self.sources[record.path], self.num_frames)
        else:
            wave = decode(record.path, self.decoding)[0]
        aux = record.aux if record.aux >= 0 else record.label
        return (torch.from_numpy(fit_length(wave, self.num_frames)), record.label, record.anomalous,
                domain_index(record.domain), aux)
