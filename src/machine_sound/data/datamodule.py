"""The data path shared by every layout: check every file once (decoding it into the cache), skip or refuse bad
files, split, load waveforms, and turn batches into log-mel images on the device (`on_after_batch_transfer`), so
the STFT runs batched on the GPU where there is one.

A layout (MIMII, DCASE 2020, class folders) subclasses `AudioDataModule` and says only where the recordings are
(`find_recordings`) and, when it has its own, how they are split (`make_splits`).
"""

from __future__ import annotations

import csv
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from tqdm.auto import tqdm

from machine_sound.data.audio import BadFileError, Decoding, decode, fit_length, probe
from machine_sound.data.cache import DecodedCache
from machine_sound.data.split import SPLITS, stratified_split
from machine_sound.errors import ConfigError
from machine_sound.features import LogMelFrontend, SpecAugment

log = logging.getLogger(__name__)

Item = tuple[Path, int]  # a recording and its label
BAD_FILES = "bad_files.csv"
ON_BAD_FILE = ("raise", "skip")
FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}  # the only WAVs that can hold NaN or inf


def resolve_workers(num_workers: int | str) -> int:
    """`data.num_workers: auto`: on a GPU machine, loader processes for this job's share of the CPU threads (at
    most 8); on a CPU-only machine none, since the model's own threads already use every core."""
    if num_workers == "auto":
        return min(8, torch.get_num_threads()) if torch.cuda.is_available() else 0
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"data.num_workers={num_workers!r}: give a number >= 0 or 'auto'")
    return num_workers


class ClipDataset(Dataset):
    """(waveform (channels, frames) float32, label) pairs, read from the cache or decoded on demand; with
    `anomalous` flags (test clips scored by ID), (waveform, label, flag) triples."""

    def __init__(self, items: Sequence[Item], sources: Mapping[Path, Path] | None, decoding: Decoding,
                 num_frames: int, anomalous: Sequence[int] | None = None):
        self.items = list(items)
        self.sources = sources  # recording -> cache entry; None reads the recordings themselves
        self.decoding, self.num_frames = decoding, num_frames
        self.anomalous = anomalous

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        path, label = self.items[index]
        if self.sources is not None:
            wave = DecodedCache.load(self.sources[path], self.num_frames)
        else:
            wave = decode(path, self.decoding)[0]
        wave = torch.from_numpy(fit_length(wave, self.num_frames))
        if self.anomalous is not None:
            return wave, label, self.anomalous[index]
        return wave, label


class AudioDataModule(L.LightningDataModule):
    """Everything between recordings on disk and normalised log-mel batches on the device."""

    class_names: tuple[str, ...] = ()
    layout = ""  # which dataset layout: mimii, dcase2020, folder

    def __init__(
        self,
        frontend: LogMelFrontend,
        augment: SpecAugment | None = None,
        name: str = "data",
        sample_rate: int = 16000,
        channel: int | str | Sequence[int] = 0,
        resample: bool = False,
        clip_seconds: float = 10.0,
        split: Mapping[str, float] | None = None,
        split_seed: int = 0,
        batch_size: int = 16,
        num_workers: int | str = "auto",
        balanced_sampling: bool = True,
        norm_clips: int = 64,
        cache_dir: str | None = None,
        on_bad_file: str = "raise",
        run_dir: str | None = None,
    ):
        super().__init__()
        if on_bad_file not in ON_BAD_FILE:
            raise ConfigError(f"data.on_bad_file={on_bad_file}: choose raise or skip")
        self.frontend, self.augment, self.name = frontend, augment, name
        self.decoding = Decoding(sample_rate, channel if isinstance(channel, (int, str)) else list(channel),
                                 resample)
        self.num_frames = int(round(clip_seconds * sample_rate))
        self.fractions = dict(split or {"train": 0.6, "val": 0.2, "test": 0.2})
        self.split_seed = split_seed
        self.batch_size, self.num_workers = batch_size, resolve_workers(num_workers)
        self.balanced_sampling, self.norm_clips = balanced_sampling, norm_clips
        self.cache = DecodedCache(cache_dir) if cache_dir else None
        self.on_bad_file = on_bad_file
        self.run_dir = Path(run_dir) if run_dir else None
        self.splits: dict[str, list[Item]] = {}
        # Per split, 0/1 per clip: set when the labels are machine IDs and the split is scored for anomalies.
        self.anomalous: dict[str, list[int]] = {}
        self.sources: dict[Path, Path] | None = {} if self.cache else None
        self.bad_files: list[BadFileError] = []
        self.last_fetch = 0.0  # when the last training batch left the DataLoader (read by DataWaitMonitor)

    @property
    def in_chans(self) -> int:
        """Image channels of a log-mel batch: one per selected microphone."""
        return self.decoding.out_channels

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def scored_by_id(self) -> bool:
        """True when the labels are machine IDs and test clips are scored for anomalies by how well they fit
        their own ID (DCASE 2020, the MIMII baseline protocol)."""
        return False

    @property
    def removes_background(self) -> bool:
        """What `features.frontend.subtract_background: auto` becomes. Removing each clip's steady background
        sharpens faults against a machine's steady sound, but erases the steady spectrum that tells machine IDs
        or arbitrary classes apart: off unless a layout turns it on."""
        return False

    # -- what a layout provides ---------------------------------------------------------------------------------

    def find_recordings(self) -> list[Item]:
        """Every recording of the dataset as (path, label), in a reproducible order."""
        raise NotImplementedError

    def make_splits(self, items: list[Item]) -> dict[str, list[Item]]:
        """Train/val/test: stratified random by default; a layout with its own split overrides this."""
        return self.stratified(items, **self.fractions)

    def stratified(self, items: list[Item], train: float, val: float, test: float) -> dict[str, list[Item]]:
        """`items` split at these fractions keeping the class ratio, seeded by `split_seed`; with test=0 the
        'test' list is empty."""
        assignment = stratified_split([label for _, label in items], train, val, test, seed=self.split_seed,
                                      class_names=self.class_names)
        return {name: [item for item, s in zip(items, assignment) if s == name] for name in SPLITS}

    def describe(self) -> str:
        """What this data module holds, for log lines and the run's summary."""
        return self.name

    # -- setup --------------------------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.splits = self.make_splits(self.check(self.find_recordings()))
        self.frontend.resolve_auto(self.removes_background)
        counts = {name: self.class_counts(name).tolist() for name in SPLITS}
        log.info("split of %s %s: %s", self.describe(), self.class_names, counts)
        if self.run_dir is not None:
            self.write_split(self.run_dir / "split.csv")
        if not bool(self.frontend.fitted):
            self.fit_normalisation()

    def check(self, items: list[Item]) -> list[Item]:
        """Read every file once, in parallel: with the cache, decode it into its entry (a no-op when the entry is
        there); without, check its header, and decode float WAVs, the only ones that can hold NaN.
        Bad files raise, naming the first, or with `on_bad_file=skip` are logged, listed and left out."""
        def visit(item: Item) -> Path | BadFileError:
            path = item[0]
            try:
                if self.cache is not None:
                    return self.cache.ensure(path, self.decoding)
                if probe(path, self.decoding).subtype in FLOAT_SUBTYPES:
                    decode(path, self.decoding)
                return path
            except BadFileError as err:
                return err

        start = time.perf_counter()
        with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
            results = list(tqdm(pool.map(visit, items), total=len(items), desc="checking files", unit="file",
                                disable=len(items) < 200, leave=False))
        bad = [r for r in results if isinstance(r, BadFileError)]
        log.info("checked %d files in %.1f s%s", len(items), time.perf_counter() - start,
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
        for item, result in zip(items, results):
            if not isinstance(result, BadFileError):
                good.append(item)
                if self.sources is not None:
                    self.sources[item[0]] = result
        return good

    def write_bad_files(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "reason"])
            writer.writerows([str(err.path), str(err)] for err in self.bad_files)

    def write_split(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label", "class", "split", "anomalous"])
            for name, part in self.splits.items():
                flags = self.anomalous.get(name, [""] * len(part))
                for (file, label), flag in zip(part, flags):
                    writer.writerow([str(file), label, self.class_names[label], name, flag])

    def fit_normalisation(self) -> None:
        """Per-band log-mel statistics from up to `norm_clips` training clips (never val or test)."""
        train = self.dataset("train")
        picks = np.random.default_rng(self.split_seed).permutation(len(train))[: self.norm_clips]
        waves = torch.stack([train[i][0] for i in picks])
        self.frontend.fit(self.frontend.log_mel(waves))

    def dataset(self, name: str) -> ClipDataset:
        return ClipDataset(self.splits[name], self.sources, self.decoding, self.num_frames, self.anomalous.get(name))

    def labels(self, name: str) -> np.ndarray:
        return np.array([label for _, label in self.splits[name]], dtype=np.int64)

    def class_counts(self, name: str) -> np.ndarray:
        """How many clips of each class a split holds."""
        return np.bincount(self.labels(name), minlength=len(self.class_names))

    # -- loaders ----------------------------------------------------------------------------------------------

    def _loader(self, name: str, shuffle: bool = False, sampler=None, drop_last: bool = False) -> DataLoader:
        return DataLoader(self.dataset(name), batch_size=self.batch_size, shuffle=shuffle, sampler=sampler,
                          drop_last=drop_last, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        labels = self.labels("train")
        # A batch of one breaks BatchNorm in training mode; drop a ragged last batch when there are several.
        drop_last = len(labels) > self.batch_size
        if not self.balanced_sampling:
            return self._loader("train", shuffle=True, drop_last=drop_last)
        # Draw classes equally often: the abnormal class is 3-10x rarer in MIMII.
        counts = self.class_counts("train")
        weights = 1.0 / counts[labels]
        generator = torch.Generator().manual_seed(self.split_seed)
        sampler = WeightedRandomSampler(weights.tolist(), num_samples=len(labels), replacement=True,
                                        generator=generator)
        return self._loader("train", sampler=sampler, drop_last=drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    # -- on the device ------------------------------------------------------------------------------------------

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        self.last_fetch = time.perf_counter()
        return batch

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        wave, *targets = batch
        self.frontend.to(wave.device)
        spec = self.frontend(wave)
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            spec = self.augment(spec)
        return spec, *targets

    def state_dict(self) -> dict:
        """What a restored model needs to see the same inputs, in the checkpoint: the fitted normalisation, the
        background setting `auto` settled on, the decode settings and the class names (for predict)."""
        return {"frontend": self.frontend.state_dict(), "subtract_background": self.frontend.subtract_background,
                "sample_rate": self.decoding.sample_rate, "channel": self.decoding.channel,
                "num_frames": self.num_frames, "class_names": list(self.class_names),
                "scored_by_id": self.scored_by_id}

    def load_state_dict(self, state_dict: dict) -> None:
        restore_frontend(self.frontend, state_dict)


def restore_frontend(frontend: LogMelFrontend, state_dict: dict) -> None:
    """Put a data module's saved front-end state (`AudioDataModule.state_dict`) into `frontend`."""
    frontend.load_state_dict(state_dict["frontend"])
    if "subtract_background" in state_dict:
        frontend.subtract_background = state_dict["subtract_background"]
