"""The data path shared by every layout: a reader's index in, batches of waveforms out.

`AudioDataModule` takes any reader (`data/readers/`), and in `setup` checks every file once (decoding it into the
cache), skips or refuses bad files, splits what the dataset leaves unsplit, and serves
`(wave, label, anomalous, domain, aux)` batches: wave (batch, channels, samples) float32 at `sample_rate`, label
(batch,) int64, anomalous (batch,) int64 (1 abnormal, 0 normal, -1 not a fault class), domain (batch,) int64
(`DOMAINS`: 0 source, 1 target, -1 none) and aux (batch,) int64, the auxiliary class an ID classifier learns (the
label where the layout has none). The log-mel front end belongs to the model, not here.
"""

from __future__ import annotations

import csv
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Mapping, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from machine_sound.data.audio import BadFileError, Decoding, verify
from machine_sound.data.cache import DecodedCache
from machine_sound.data.dataset import ClipDataset, resolve_workers, split_fractions
from machine_sound.data.records import Index, Record
from machine_sound.data.sampler import EpochSampler, domain_share_weights
from machine_sound.data.split import SPLITS, stratified_split
from machine_sound.distributed import evaluation_sampler
from machine_sound.errors import ConfigError, require_positive

log = logging.getLogger(__name__)

BAD_FILES = "bad_files.csv"
ON_BAD_FILE = ("raise", "skip")
class AudioDataModule(L.LightningDataModule):
    """Everything between a reader's index and waveform batches; the same for every layout.

    `generator`, when given, writes the recordings before they are read (`prepare(reader)`, e.g. the synthetic
    data). `task` must be the task the reader's records are labelled for (both come from the layout's config).
    Raises ConfigError for bad settings, DataError or BadFileError for unusable data, naming the file.
    """

    def __init__(self, reader, task: str, name: str = "data", root: str | None = None, generator=None,
                 sample_rate: int = 16000, channel: int | str | Sequence[int] = 0, resample: bool = False,
                 clip_seconds: float | None = 10.0, split: Mapping[str, float] | None = None, split_seed: int = 0,
                 batch_size: int = 16, num_workers: int | str = "auto", balanced_sampling: bool = True,
                 cache_dir: str | None = None, on_bad_file: str = "raise", run_dir: str | None = None,
                 target_share: float | None = None):
        super().__init__()
        if on_bad_file not in ON_BAD_FILE:
            raise ConfigError(f"data.on_bad_file={on_bad_file}: choose raise or skip")
        if clip_seconds is not None:
            require_positive("data.clip_seconds", clip_seconds)
        if target_share is not None and (isinstance(target_share, bool) or not isinstance(target_share, (int, float))
                                         or not 0 < target_share < 1):
            raise ConfigError(f"data.target_share={target_share!r}: the share of target-domain clips in training "
                              "batches, strictly between 0 and 1, or null for their share of the data")
        require_positive("data.batch_size", batch_size, integer=True)
        if generator is not None and getattr(generator, "sample_rate", sample_rate) != sample_rate:
            raise ConfigError(f"data.generator.sample_rate={generator.sample_rate} differs from "
                              f"data.sample_rate={sample_rate}")
        if reader.task != task:
            raise ConfigError(f"data.task={task}, but the {reader.layout} reader's recordings are labelled for "
                              f"task {reader.task} (see data.reader)")
        self.reader, self.name, self.root, self.generator = reader, name, root, generator
        self.layout = reader.layout
        self.decoding = Decoding(sample_rate, channel, resample)
        self._clip_seconds = clip_seconds
        self.target_share = target_share
        self.fractions = split_fractions(split)
        self.split_seed = split_seed
        self.batch_size, self.num_workers = batch_size, resolve_workers(num_workers)
        self.balanced_sampling = balanced_sampling
        self.cache = DecodedCache(cache_dir) if cache_dir else None
        self.on_bad_file = on_bad_file
        self.run_dir = Path(run_dir) if run_dir else None
        self.splits: dict[str, list[Record]] = {}
        self.sources: dict[Path, Path] | None = {} if self.cache else None
        self.bad_files: list[BadFileError] = []
        self.last_fetch = 0.0  # when the last training batch left the DataLoader (read by DataWaitMonitor)
        self._resumed_epoch: int | None = None

    # -- what the reader says ---------------------------------------------------------------------------------

    @cached_property
    def index(self) -> Index:
        """The reader's index, read once (after `prepare_data` where a generator writes the recordings)."""
        return self.reader.read()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.index.class_names

    @property
    def in_chans(self) -> int:
        """Image channels of a log-mel batch: one per selected microphone."""
        return self.decoding.out_channels

    @property
    def clip_seconds(self) -> float:
        """`data.clip_seconds`, or where it is null the length the layout reads from its files (DCASE 2021-2025)."""
        if self._clip_seconds is not None:
            return float(self._clip_seconds)
        if self.index.clip_seconds is None:
            raise ConfigError(f"data.clip_seconds=null, but the {self.layout} layout does not know its clip length; "
                              "give it in seconds")
        if "_told_length" not in self.__dict__:  # once
            self._told_length = True
            log.info("data.clip_seconds=null: clips of %.3g s, the longest training file (shorter ones are "
                     "zero-padded)", self.index.clip_seconds)
        return float(self.index.clip_seconds)

    @property
    def num_frames(self) -> int:
        return int(round(self.clip_seconds * self.decoding.sample_rate))

    @property
    def aux_names(self) -> tuple[str, ...]:
        """The auxiliary classes an ID classifier learns (DCASE: section x attribute); the labels where none."""
        return self.index.aux_names or self.class_names

    @property
    def aux_labels(self) -> tuple[int, ...]:  # the label of each auxiliary class
        return self.index.aux_labels or tuple(range(len(self.class_names)))

    @property
    def evaluator(self) -> str | None:
        """How the test is scored where the layout has a challenge's rules (DCASE 2021-2025:
        `machine_sound.challenge`), else None."""
        return self.index.evaluator or None

    def identity(self) -> dict:
        """What names this data in metrics.json and the HPARAMS row: the layout's own keys (machine, id, snr)
        where it has them, and always its root and classes."""
        return {**self.index.identity, "root": None if self.root is None else str(Path(self.root).resolve()),
                "classes": list(self.class_names)}

    def describe(self) -> str:
        """The run's name for log lines and the summary, with the index's note (e.g. `test at 6_dB`)."""
        return f"{self.name} ({self.index.note})" if self.index.note else self.name

    # -- setup --------------------------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        if self.generator is not None:
            self.generator.prepare(self.reader)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.splits = self.split(self.check(self.index.records))
        if any(r.test_path for r in self.splits["test"]):  # cross-SNR: test the same recordings' other files
            self.splits["test"] = self.check([replace(r, path=r.test_path, test_path=None) if r.test_path else r
                                              for r in self.splits["test"]])
        counts = {name: self.class_counts(name).tolist() for name in SPLITS}
        log.info("split of %s %s: %s", self.describe(), self.class_names, counts)
        if self.run_dir is not None:
            self.write_split(self.run_dir / "split.csv")

    def split(self, records: list[Record]) -> dict[str, list[Record]]:
        """Records the dataset assigns keep their split; the rest are split at `data.split`, stratified by label
        and seeded by `split_seed`. When the dataset brings its own test records, the rest go to train and val at
        the ratio of `data.split`'s train and val."""
        fixed = [r for r in records if r.split is not None]
        free = [r for r in records if r.split is None]
        train, val, test = (self.fractions[name] for name in SPLITS)
        if any(r.split == "test" for r in fixed):
            train, val, test = train / (train + val), val / (train + val), 0.0
        assignment = stratified_split([r.label for r in free], train, val, test, seed=self.split_seed,
                                      class_names=self.class_names)
        splits = {name: [r for r, s in zip(free, assignment) if s == name] for name in SPLITS}
        for record in fixed:
            splits[record.split].append(record)
        return splits

    def check(self, records: list[Record]) -> list[Record]:
        """Read every file once, in parallel: with the cache, decode it into its entry (a no-op when the entry is
        there); without, `verify` it (its header; a full decode of float WAVs, the only ones that can hold NaN).
        Bad files raise, naming the first, or with `on_bad_file=skip` are logged, listed and left out."""
        def visit(record: Record) -> Path | BadFileError:
            try:
                if self.cache is not None:
                    return self.cache.ensure(record.path, self.decoding)
                verify(record.path, self.decoding)
                return record.path
            except BadFileError as err:
                return err

        start = time.perf_counter()
        with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
            results = list(tqdm(pool.map(visit, records), total=len(records), desc="checking files", unit="file",
                                disable=len(records) < 200, leave=False))
        bad = [r for r in results if isinstance(r, BadFileError)]
        log.info("checked %d files in %.1f s%s", len(records), time.perf_counter() - start,
                 f" (decoded-audio cache: {self.cache.directory})" if self.cache else "")
        if bad and self.on_bad_file == "raise":
            more = f" ({len(bad) - 1} more bad file(s) in this dataset)" if len(bad) > 1 else ""
            raise BadFileError(bad[0].path, f"{bad[0]}{more}; or set data.on_bad_file=skip to train without "
                                            "bad files") from None
        for err in bad:
            log.warning("skipping bad file: %s", err)
        self.bad_files += bad
        if bad and self.run_dir is not None:
            self.write_bad_files(self.run_dir / BAD_FILES)
        good = []
        for record, result in zip(records, results):
            if not isinstance(result, BadFileError):
                good.append(record)
                if self.sources is not None:
                    self.sources[record.path] = result
        return good

    def write_bad_files(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "reason"])
            writer.writerows([str(err.path), str(err)] for err in self.bad_files)

    def write_split(self, path: Path) -> None:
        """`split.csv`: every file used, with its label, class, split and anomaly flag (empty when it has none)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label", "class", "split", "anomalous"])
            for name, part in self.splits.items():
                for r in part:
                    flag = r.anomalous if r.anomalous >= 0 else ""
                    writer.writerow([str(r.path), r.label, self.class_names[r.label], name, flag])

    # -- datasets and loaders -------------------------------------------------------------------------------------

    def dataset(self, name: str) -> ClipDataset:
        return ClipDataset(self.splits[name], self.sources, self.decoding, self.num_frames)

    def clips(self, name: str, count: int) -> torch.Tensor:
        """Up to `count` clips of a split, (clips, channels, frames), drawn at random with the split seed: the
        same clips every time (e.g. to fit the front end's normalisation on training clips only)."""
        dataset = self.dataset(name)
        picks = np.random.default_rng(self.split_seed).permutation(len(dataset))[:count]
        return torch.stack([dataset[int(i)][0] for i in picks])

    def labels(self, name: str) -> np.ndarray:
        return np.array([r.label for r in self.splits[name]], dtype=np.int64)

    def class_counts(self, name: str) -> np.ndarray:
        """How many clips of each class a split holds."""
        return np.bincount(self.labels(name), minlength=len(self.class_names))

    def _loader(self, name: str, sampler=None, drop_last: bool = False) -> DataLoader:
        # A generator of its own: making an iterator then draws nothing from the global random state, which a
        # resumed run restores before its first epoch (machine_sound.resume.RandomState).
        generator = torch.Generator().manual_seed(self.split_seed)
        return DataLoader(self.dataset(name), batch_size=self.batch_size, sampler=sampler,
                          drop_last=drop_last, num_workers=self.num_workers, generator=generator,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        labels = self.labels("train")
        # A batch of one breaks BatchNorm in training mode; drop a ragged last batch when there are several.
        drop_last = len(labels) > self.batch_size
        # Balanced: draw classes equally often (the abnormal class is 3-10x rarer in MIMII); else shuffle.
        weights = 1.0 / self.class_counts("train")[labels] if self.balanced_sampling else None
        if self.target_share is not None:  # DCASE 2021-2025: ~10 target-domain clips beside ~990 source ones
            target = np.array([r.domain == "target" for r in self.splits["train"]])
            weights = domain_share_weights(np.ones(len(labels)) if weights is None else weights, labels, target,
                                           self.target_share)
        sampler = EpochSampler(len(labels), self.split_seed, self._epoch, weights)
        return self._loader("train", sampler=sampler, drop_last=drop_last)

    def _epoch(self) -> int:
        """The epoch whose order the sampler draws: the trainer's, except for the first draw after a resume (which
        Lightning makes before it restores the epoch count, when worker processes prefetch)."""
        if self._resumed_epoch is not None:
            epoch, self._resumed_epoch = self._resumed_epoch, None
            return epoch
        return self.trainer.current_epoch if self.trainer is not None else 0

    def state_dict(self) -> dict:
        """In every checkpoint (all are written as an epoch ends): that epoch, so a resumed run draws the next."""
        return {"epoch": self.trainer.current_epoch if self.trainer is not None else 0}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resumed_epoch = int(state_dict["epoch"]) + 1

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", sampler=evaluation_sampler(self.dataset("val"), self.trainer))

    def test_dataloader(self) -> DataLoader:  # several processes: shards without repeated clips
        return self._loader("test", sampler=evaluation_sampler(self.dataset("test"), self.trainer))

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        self.last_fetch = time.perf_counter()
        return batch
