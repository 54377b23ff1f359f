"""What every model here shares between a waveform batch and its front end: the shortest clip it takes, the
input check, fitting the front end's per-band statistics on training clips, and a checkpoint that never asks for
pretrained weights again. The classifier (`models/classifier.py`) and the detectors (`models/detector.py`)
inherit it; each sets `self.frontend` (`models/frontend.py`)."""

from __future__ import annotations

import lightning as L
import torch

from machine_sound.errors import MachineSoundError


class WaveformModel(L.LightningModule):
    """A LightningModule that takes waveforms (batch, `hparams.in_chans`, samples) at `frontend.sample_rate`."""

    @property
    def min_samples(self) -> int:
        """The shortest waveform the front end takes: more than half its STFT window (centred frames)."""
        return self.frontend.mel.spectrogram.n_fft // 2 + 1

    def check_wave(self, wave: torch.Tensor) -> None:
        """ValueError unless `wave` is (batch, the trained channels, at least `min_samples`)."""
        channels, shortest = self.hparams.in_chans, self.min_samples
        if wave.dim() != 3 or wave.shape[1] != channels or wave.shape[2] < shortest:
            raise ValueError(f"expected waveforms (batch, {channels}, samples >= {shortest}) at "
                             f"{self.frontend.sample_rate} Hz, the channels the model was trained on; got "
                             f"{tuple(wave.shape)}")

    def setup(self, stage: str) -> None:
        """Before training: fit the front end's per-band normalisation on up to `norm_clips` training clips (never
        val or test) where it standardises; a checkpoint being resumed overwrites it with its own."""
        if stage != "fit" or not self.frontend.needs_fit:
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if not hasattr(datamodule, "clips"):
            raise MachineSoundError("the front end's normalisation is fitted on the data module's training clips; "
                                    "train with an AudioDataModule (machine_sound.data.datamodule)")
        waves = datamodule.clips("train", int(self.hparams.get("norm_clips", 64)))
        self.frontend.fit(self.frontend.log_mel(waves))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The trained weights are in the checkpoint: loading it must not fetch or read pretrained ones.
        if "pretrained" in checkpoint["hyper_parameters"]:
            checkpoint["hyper_parameters"].update(pretrained=False, weights_path=None)
