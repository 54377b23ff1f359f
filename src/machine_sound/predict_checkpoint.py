"""Predict's model from a checkpoint: the trained LightningModule with its stored run config's reading settings,
and its outputs for every window of the recordings through Lightning's `Trainer.predict`.

The checkpoint's model turns waveforms into scores by itself (front end, statistics, weights, threshold); the
run config it carries says how to read a file (sample rate, channel choice, clip length). Arguments other than
predict's own are Hydra overrides of those reading settings only (`READING`, e.g. `data.resample=true`).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from machine_sound.console import quiet_lightning
from machine_sound.runs import check_fits, load_checkpoint, load_model, run_config

# The stored run config's settings that reading a file depends on: the only ones predict lets you change.
READING = ("data.channel", "data.resample", "data.clip_seconds", "data.batch_size", "data.sample_rate")


class WindowDataset(Dataset):
    """`(wave (channels, num_frames) float32, file index)` for every window of `Recordings`."""

    def __init__(self, recordings):
        self.recordings = recordings

    def __len__(self) -> int:
        return len(self.recordings)

    def __getitem__(self, index: int):
        return torch.from_numpy(self.recordings.window(index)), self.recordings.windows[index][0]


class CheckpointModel:
    """A checkpoint's model as predict uses it: `class_names`, `task`, `threshold`, `threshold_fitted`, the
    `decoding`, `num_frames` (clip length) and `batch_size` that read files for it, the `machine` and data
    `layout` it was trained on, its run config `cfg` (with the overrides), and `outputs(recordings)`. DataError or
    ConfigError (from `machine_sound.runs`) for a checkpoint or setting that cannot be used."""

    def __init__(self, ckpt_path: str | Path, overrides=()):
        checkpoint = load_checkpoint(ckpt_path)
        self.cfg = cfg = run_config(checkpoint, overrides, only=READING)
        self.trained_clip_seconds = float(run_config(checkpoint).data.clip_seconds)  # before the overrides
        self.model = load_model(ckpt_path, cfg)
        self.decoding = check_fits(cfg, self.model)
        self.num_frames = int(round(cfg.data.clip_seconds * self.decoding.sample_rate))
        self.batch_size = int(cfg.data.batch_size)
        self.layout = str(OmegaConf.select(cfg, "data.reader._target_", default="") or "").rsplit(".", 1)[-1]
        self.machine = OmegaConf.select(cfg, "machine", default=None)
        self.class_names, self.task = self.model.class_names, self.model.task
        self.threshold = self.model.threshold.detach().cpu().numpy()
        self.threshold_fitted = bool(getattr(self.model, "threshold_fitted", True))

    def outputs(self, recordings) -> np.ndarray:
        """(windows, K) float32: the model's `predict_step` output (class probabilities, or a detector's anomaly
        score as each machine ID) for every window, in order."""
        quiet_lightning()
        trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
        loader = DataLoader(WindowDataset(recordings), batch_size=self.batch_size,
                            pin_memory=torch.cuda.is_available())
        return torch.cat(trainer.predict(self.model, dataloaders=loader)).float().cpu().numpy()
