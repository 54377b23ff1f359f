"""The spectrogram front end: waveform batch -> normalised log-mel image batch, run on the device.

STFT, mel and dB are computed in float32 even under mixed precision (autocast is switched off here), since
fp16/bf16 power spectra lose the quiet bands that matter at low SNR.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from machine_sound.errors import ConfigError


class LogMelFrontend(nn.Module):
    """MelSpectrogram -> dB -> per-mel-band standardisation with statistics fitted on training clips,
    then (optionally) each clip's stationary background removed.

    `subtract_background` subtracts every band's median over the clip's frames: steady machine hum and factory
    noise drop out and what changes in time (bursts, clicks, modulation) stands out, which is where faults show
    at low SNR. On the synthetic -6 dB pump/id_04 task it lifts test AUROC from about 0.93 to 0.99. It also
    removes the steady spectrum that tells one machine ID or sound class from another, so `"auto"` leaves the
    choice to the data module (`resolve_auto`): on for MIMII normal/abnormal, off otherwise; alone, auto is on.
    The statistics are buffers, so they travel with the module's state dict (and the checkpoint).
    """

    def __init__(self, sample_rate: int, n_fft: int = 1024, hop_length: int = 512, n_mels: int = 128,
                 f_min: float = 0.0, f_max: float | None = None, top_db: float | None = 80.0,
                 subtract_background: bool | str = "auto"):
        super().__init__()
        if subtract_background not in (True, False, "auto"):
            raise ConfigError(f"features.frontend.subtract_background={subtract_background!r}: true, false or auto")
        self.subtract_background = subtract_background
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, f_min=f_min, f_max=f_max,
            power=2.0)
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=top_db)
        self.register_buffer("mean", torch.zeros(n_mels, 1))
        self.register_buffer("std", torch.ones(n_mels, 1))
        self.register_buffer("fitted", torch.tensor(False))

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) -> (batch, channels, n_mels, frames) in dB, not normalised."""
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return self.to_db(self.mel(wave.float()))

    @torch.no_grad()
    def fit(self, log_mels: torch.Tensor) -> None:
        """Set the per-band mean and std from a batch of un-normalised log-mels (training clips only)."""
        dims = [d for d in range(log_mels.dim()) if d != log_mels.dim() - 2]
        self.mean.copy_(log_mels.mean(dim=dims).unsqueeze(-1))
        self.std.copy_(log_mels.std(dim=dims).clamp_min(1e-3).unsqueeze(-1))
        self.fitted.fill_(True)

    def resolve_auto(self, subtract: bool) -> None:
        """Settle `subtract_background="auto"` to what the data asks for; a true or false setting stays."""
        if self.subtract_background == "auto":
            self.subtract_background = subtract

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = (self.log_mel(wave) - self.mean) / self.std
        if self.subtract_background in (True, "auto"):
            spec = spec - spec.median(dim=-1, keepdim=True).values
        return spec


class SpecAugment(nn.Module):
    """Frequency and time masks drawn independently for every clip (Park et al., 2019), and optionally a random
    circular shift in time: a fault can happen at any moment of a recording, so where it falls must not matter.
    Training only."""

    def __init__(self, freq_mask_param: int = 16, time_mask_param: int = 24, num_masks: int = 2,
                 time_roll: bool = False):
        super().__init__()
        self.time_roll = time_roll
        masks = []
        for _ in range(num_masks):
            masks.append(torchaudio.transforms.FrequencyMasking(freq_mask_param, iid_masks=True))
            masks.append(torchaudio.transforms.TimeMasking(time_mask_param, iid_masks=True))
        self.masks = nn.Sequential(*masks)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if self.time_roll:
            frames = spec.shape[-1]
            shifts = torch.randint(0, frames, (spec.shape[0], 1, 1, 1), device=spec.device)
            index = (torch.arange(frames, device=spec.device) - shifts) % frames
            spec = spec.gather(-1, index.expand_as(spec))
        return self.masks(spec)
