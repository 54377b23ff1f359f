"""The LightningDataModule: index one snr/machine/id, split it, load waveforms, and turn batches into log-mels
on the device (`on_after_batch_transfer`), so the STFT runs batched on the GPU where there is one."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Mapping, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from machine_sound.data.audio import probe, read_clip
from machine_sound.data.mimii import CLASS_NAMES, index_mimii
from machine_sound.data.split import SPLITS, stratified_split
from machine_sound.data.synthetic import SyntheticMimii, parse_snr
from machine_sound.errors import ConfigError
from machine_sound.features import LogMelFrontend, SpecAugment

log = logging.getLogger(__name__)


class ClipDataset(Dataset):
    """(waveform (1, frames) float32, label) pairs read from disk on demand."""

    def __init__(self, items: Sequence[tuple[Path, int]], channel: int, num_frames: int):
        self.items = list(items)
        self.channel = channel
        self.num_frames = num_frames

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        path, label = self.items[index]
        return torch.from_numpy(read_clip(path, self.channel, self.num_frames)), label


class MachineSoundDataModule(L.LightningDataModule):
    """Recordings of one MIMII machine/ID (real, or synthetic when a `generator` is given)."""

    def __init__(
        self,
        root: str | None,
        snr: str,
        machine: str,
        machine_id: str,
        machines: Mapping[str, Sequence[str]],
        frontend: LogMelFrontend,
        augment: SpecAugment | None = None,
        generator: SyntheticMimii | None = None,
        sample_rate: int = 16000,
        channel: int = 0,
        clip_seconds: float = 10.0,
        split: Mapping[str, float] | None = None,
        split_seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
        balanced_sampling: bool = True,
        norm_clips: int = 64,
        run_dir: str | None = None,
    ):
        super().__init__()
        if machine not in machines:
            raise ConfigError(f"unknown machine '{machine}'; valid: {', '.join(machines)}")
        if machine_id not in machines[machine]:
            raise ConfigError(f"unknown id '{machine_id}' for {machine}; valid: {', '.join(machines[machine])} "
                              f"(to use another, add it to data.machines.{machine})")
        parse_snr(snr)
        if generator is not None and generator.sample_rate != sample_rate:
            raise ConfigError(f"data.generator.sample_rate={generator.sample_rate} differs from "
                              f"data.sample_rate={sample_rate}")
        self.root, self.snr, self.machine, self.machine_id = root, snr, machine, machine_id
        self.frontend, self.augment, self.generator = frontend, augment, generator
        self.sample_rate, self.channel = sample_rate, channel
        self.num_frames = int(round(clip_seconds * sample_rate))
        self.fractions = dict(split or {"train": 0.6, "val": 0.2, "test": 0.2})
        self.split_seed = split_seed
        self.batch_size, self.num_workers = batch_size, num_workers
        self.balanced_sampling, self.norm_clips = balanced_sampling, norm_clips
        self.run_dir = Path(run_dir) if run_dir else None
        self.class_names = CLASS_NAMES
        self.splits: dict[str, list[tuple[Path, int]]] = {}

    # -- data on disk ---------------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        if self.generator is not None:
            # As many processes as torch may use threads: a parallel sweep job keeps to its share of the CPUs.
            self.generator.ensure(self.root, self.snr, self.machine, self.machine_id,
                                  workers=torch.get_num_threads())

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        items = index_mimii(self.root, self.snr, self.machine, self.machine_id)
        for path, _ in items:
            probe(path, self.sample_rate, self.channel)
        assignment = stratified_split([label for _, label in items], seed=self.split_seed, **self.fractions)
        self.splits = {name: [item for item, s in zip(items, assignment) if s == name] for name in SPLITS}
        counts = {name: self.class_counts(name).tolist() for name in SPLITS}
        log.info("split of %s_%s/%s (normal, abnormal): %s", self.snr, self.machine, self.machine_id, counts)
        if self.run_dir is not None:
            self.write_split(self.run_dir / "split.csv")
        if not bool(self.frontend.fitted):
            self.fit_normalisation()

    def write_split(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label", "class", "split"])
            for name, part in self.splits.items():
                for file, label in part:
                    writer.writerow([str(file), label, self.class_names[label], name])

    def fit_normalisation(self) -> None:
        """Per-band log-mel statistics from up to `norm_clips` training clips (never val or test)."""
        train = self.dataset("train")
        picks = np.random.default_rng(self.split_seed).permutation(len(train))[: self.norm_clips]
        waves = torch.stack([train[i][0] for i in picks])
        self.frontend.fit(self.frontend.log_mel(waves))

    def dataset(self, name: str) -> ClipDataset:
        return ClipDataset(self.splits[name], self.channel, self.num_frames)

    def labels(self, name: str) -> np.ndarray:
        return np.array([label for _, label in self.splits[name]], dtype=np.int64)

    def class_counts(self, name: str) -> np.ndarray:
        """How many clips of each class (normal, abnormal) a split holds."""
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
        weights = 1.0 / self.class_counts("train")[labels]
        generator = torch.Generator().manual_seed(self.split_seed)
        sampler = WeightedRandomSampler(weights.tolist(), num_samples=len(labels), replacement=True,
                                        generator=generator)
        return self._loader("train", sampler=sampler, drop_last=drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    # -- on the device ------------------------------------------------------------------------------------------

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        wave, label = batch
        self.frontend.to(wave.device)
        spec = self.frontend(wave)
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            spec = self.augment(spec)
        return spec, label

    def state_dict(self) -> dict:
        """The fitted normalisation travels in the checkpoint, so a restored model sees the same inputs."""
        return {"frontend": self.frontend.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.frontend.load_state_dict(state_dict["frontend"])
