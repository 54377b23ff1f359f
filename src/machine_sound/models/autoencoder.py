"""`model=autoencoder`: the DCASE 2020 Task 2 baseline, a dense autoencoder of stacked log-mel frames.

Reproduced from the official baseline (Koizumi et al., "Description and discussion on DCASE2020 Challenge Task2",
arXiv 2006.05822; repository `y-kawagu/dcase2020_task2_baseline`: `keras_model.py`, `common.py`, `baseline.yaml`):

- front end (`common.file_to_vector_array`, librosa's defaults): mel power with n_fft 1024, hop 512, 64 Slaney mel
  bands, as 10·log10(mel + eps) in dB; no per-band standardisation, no background removal;
- 5 consecutive frames stacked into one 320-value vector (frame-major: the first frame's 64 bands, then the
  next frame's, ...), every frame offset of the clip giving one vector;
- a dense autoencoder Dense(128)-BN-ReLU x4, Dense(8)-BN-ReLU, Dense(128)-BN-ReLU x4, Dense(320), with Keras'
  defaults (Glorot-uniform weights, zero biases, batch-norm momentum 0.99 and epsilon 1e-3);
- mean squared error, Adam (lr 1e-3), 100 epochs, batches of 512 vectors shuffled across clips, 10 % held out;
- a clip's anomaly score is the mean over its vectors of the squared error averaged over the vector.

One model per machine type on the normal clips of all its IDs (DCASE 2020) or of one ID (the MIMII paper's
baseline): whatever the data gives. Where this differs from the release: the 10 % validation share is drawn from
clips at random (Keras took the last 10 % of the vectors), and the vectors of a batch of clips (`data.batch_size`)
are shuffled and cut into batches of 512, so a batch mixes the vectors of that many clips, not of all clips.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

import torch
from torch import nn

from machine_sound.errors import ConfigError, MachineSoundError, require_positive
from machine_sound.models.detector import AnomalyDetector
from machine_sound.models.frontend import LogMelFrontend

# The baseline's front end: librosa.feature.melspectrogram defaults and 20/power * log10(mel + eps).
DCASE_FRONTEND = {"sample_rate": 16000, "n_fft": 1024, "hop_length": 512, "n_mels": 64, "top_db": None,
                  "subtract_background": False, "standardize": False, "eps": sys.float_info.epsilon,
                  "mel_scale": "slaney", "mel_norm": "slaney"}


def dense_autoencoder(input_dim: int, hidden: int = 128, bottleneck: int = 8, layers: int = 4) -> nn.Sequential:
    """The baseline's network: `layers` x Dense(hidden)-BN-ReLU, Dense(bottleneck)-BN-ReLU, `layers` x
    Dense(hidden)-BN-ReLU, Dense(input_dim); Keras' initialisation and batch-norm settings."""
    sizes = [input_dim] + [hidden] * layers + [bottleneck] + [hidden] * layers
    blocks: list[nn.Module] = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        blocks += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out, momentum=0.01, eps=1e-3), nn.ReLU()]
    blocks.append(nn.Linear(sizes[-1], input_dim))
    net = nn.Sequential(*blocks)
    for module in net:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return net


class DenseAutoencoder(AnomalyDetector):
    """`forward(wave)`: wave (batch, channels, samples) at 16 kHz -> anomaly scores (batch, len(class_names)), the
    clip's mean reconstruction error (the same for every ID: the model does not tell IDs apart).

    `frontend` overrides keys of `DCASE_FRONTEND`; `frames` frames are stacked per vector (with several
    channels, each frame holds every channel's bands); `vector_batch` vectors per optimizer step. Raises
    ConfigError for settings that cannot work."""

    option = "autoencoder"

    def __init__(
        self,
        task: str = "id_anomaly",
        class_names: Sequence[str] | None = None,
        in_chans: int | None = None,
        frontend: dict | None = None,
        frames: int = 5,
        hidden: int = 128,
        bottleneck: int = 8,
        layers: int = 4,
        vector_batch: int = 512,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        threshold_percentile: float = 90.0,
    ):
        super().__init__(task, class_names, in_chans, threshold_percentile)
        for name, value in (("frames", frames), ("hidden", hidden), ("bottleneck", bottleneck), ("layers", layers),
                            ("vector_batch", vector_batch)):
            require_positive(f"model.{name}", value, integer=True)
        if vector_batch < 2:
            raise ConfigError(f"model.vector_batch={vector_batch}: batch norm needs at least 2 vectors per batch")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self._store_shape()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.frontend = LogMelFrontend(**{**DCASE_FRONTEND, **(frontend or {})})
        self.input_dim = self.frontend.mel.n_mels * frames * self.channels
        self.net = dense_autoencoder(self.input_dim, hidden, bottleneck, layers)
        self.automatic_optimization = False  # several 512-vector steps per batch of clips

    @property
    def min_samples(self) -> int:
        """The shortest waveform giving one vector: `frames` STFT frames (centred, one per hop) and more than half
        an STFT window."""
        spectrogram = self.frontend.mel.spectrogram
        return max(spectrogram.n_fft // 2 + 1, (self.hparams.frames - 1) * spectrogram.hop_length)

    def vectors(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) -> (batch, vectors, frames * channels * n_mels): every run of `frames`
        consecutive log-mel frames, frame-major as in the baseline's `file_to_vector_array`."""
        spec = self.frontend(wave)  # (batch, channels, n_mels, time)
        frames = self.hparams.frames
        if spec.shape[-1] < frames:
            raise ValueError(f"a clip of {spec.shape[-1]} frames is shorter than the {frames} frames of a vector")
        windows = spec.unfold(-1, frames, 1)  # (batch, channels, n_mels, vectors, frames)
        return windows.permute(0, 3, 4, 1, 2).flatten(2)

    def errors(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, vectors): each vector's squared reconstruction error averaged over its values."""
        vectors = self.vectors(wave)
        flat = vectors.reshape(-1, vectors.shape[-1])
        restored = self.net(flat.to(next(self.net.parameters()).dtype)).float()
        return (restored - flat).square().mean(dim=-1).reshape(vectors.shape[:2])

    def id_scores(self, wave: torch.Tensor) -> torch.Tensor:
        return self.errors(wave).mean(dim=-1, keepdim=True).expand(-1, len(self.ids))

    def training_step(self, batch, batch_idx):
        wave = batch[0]
        vectors = self.vectors(wave).reshape(-1, self.input_dim)
        optimizer = self.optimizers()
        order = torch.randperm(len(vectors), device=vectors.device)
        chunks = [c for c in order.split(self.hparams.vector_batch) if len(c) > 1]  # batch norm needs 2 or more
        total = torch.zeros((), device=vectors.device)
        for chunk in chunks:
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(self.net(vectors[chunk]).float(), vectors[chunk])
            if not torch.isfinite(loss):
                raise MachineSoundError(f"training diverged: the reconstruction loss is {loss.item()} at epoch "
                                        f"{self.current_epoch}; lower model.optimizer.lr")
            self.manual_backward(loss)
            optimizer.step()
            total += loss.detach() * len(chunk)
        self.log("train/loss", total / max(1, sum(map(len, chunks))), on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(wave))

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
