"""Decoding recordings with soundfile: channel selection, optional resampling, and errors that name the file.

`Decoding` holds the settings that decide what a file decodes to (so they also key the decoded-audio cache).
`decode()` returns a whole recording; `fit_length()` crops or zero-pads it to the clip length.
A file that cannot be used raises `BadFileError`, which `data.on_bad_file=skip` turns into a listed skip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from machine_sound.errors import ConfigError, DataError

# libsndfile accepts a truncated WAV silently; its header log then says "data : <declared> (should be <real>)".
_TRUNCATED = re.compile(r"^data\s*:\s*\d+\s*\(should be\s*\d+\)", re.MULTILINE)

# Sources that fit int16 without loss: the cache stores them as int16 (MIMII and DCASE are 16-bit PCM).
INT16_EXACT = {"PCM_16", "PCM_S8", "PCM_U8"}
FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}  # the only WAVs that can hold NaN or inf


class BadFileError(DataError):
    """One recording cannot be used (unreadable, truncated, empty, NaN...); `path` names it."""

    def __init__(self, path: str | Path, message: str):
        super().__init__(message)
        self.path = Path(path)


def parse_channel(channel) -> int | str | tuple[int, ...]:
    """`data.channel`: one microphone (0), "mean" of all, or a list of microphones stacked as image channels."""
    if isinstance(channel, str):
        if channel == "mean":
            return channel
        if channel.isdigit():
            return int(channel)
    elif isinstance(channel, int) and not isinstance(channel, bool) and channel >= 0:
        return channel
    elif isinstance(channel, Sequence) and channel and all(isinstance(c, int) and c >= 0 for c in channel):
        if len(set(channel)) != len(channel):
            raise ConfigError(f"data.channel={list(channel)} names a channel twice")
        return tuple(channel)
    raise ConfigError(f"data.channel={channel!r}: give a channel number (0), 'mean', or a list such as [0,2,4,6]")


@dataclass(frozen=True)
class Decoding:
    """What a file decodes to: the channel choice at `sample_rate`. `resample` allows files at other rates."""

    sample_rate: int = 16000
    channel: int | str | tuple[int, ...] = 0
    resample: bool = False

    def __post_init__(self):
        object.__setattr__(self, "channel", parse_channel(self.channel))
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise ConfigError(f"data.sample_rate={self.sample_rate!r}: a positive whole number of Hz")
        if not isinstance(self.resample, bool):
            raise ConfigError(f"data.resample={self.resample!r}: true or false")

    @property
    def picks(self) -> tuple[int, ...]:
        """The channels read, in order; () for the mean of all."""
        if isinstance(self.channel, str):
            return ()
        return self.channel if isinstance(self.channel, tuple) else (self.channel,)

    @property
    def out_channels(self) -> int:
        """Channels of a decoded clip, which is the image channels (`in_chans`) the backbone gets."""
        return len(self.channel) if isinstance(self.channel, tuple) else 1

    def key(self) -> str:
        return f"sr={self.sample_rate};channel={self.channel};resample={self.resample}"


def probe(path: str | Path, decoding: Decoding) -> sf._SoundFileInfo:
    """Check a file's header without decoding it: readable, complete, non-empty, rate and channels usable."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise BadFileError(path, f"cannot read {path}: {err} (corrupt, empty or not audio; delete or replace it)"
                           ) from None
    if _TRUNCATED.search(info.extra_info):
        raise BadFileError(path, f"{path} is truncated: its header promises more audio than the file holds "
                                 "(an interrupted copy or download?); re-copy or delete it")
    if info.frames == 0:
        raise BadFileError(path, f"{path} holds no audio frames; delete or replace it")
    if info.samplerate != decoding.sample_rate and not decoding.resample:
        raise DataError(f"{path} has sample rate {info.samplerate} Hz but data.sample_rate is "
                        f"{decoding.sample_rate} Hz; set data.resample=true to resample such files on loading (or "
                        f"data.sample_rate={info.samplerate} when training on data that is all at that rate)")
    if decoding.picks and max(decoding.picks) >= info.channels:
        raise DataError(f"{path} has {info.channels} channel(s) but data.channel={decoding.channel!r}; "
                        f"choose channels from 0 to {info.channels - 1}")
    return info


def decode(path: str | Path, decoding: Decoding) -> tuple[np.ndarray, str]:
    """A whole recording as float32 (channels, frames) at `decoding.sample_rate`, and the file's sample format
    (soundfile's subtype, such as PCM_16)."""
    info = probe(path, decoding)
    try:
        data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise BadFileError(path, f"cannot decode {path}: {err}; delete or replace it") from None
    if not np.isfinite(data).all():
        raise BadFileError(path, f"{path} contains NaN or infinite samples; delete or replace it")
    wave = data[:, list(decoding.picks)].T if decoding.picks else data.mean(axis=1, keepdims=True).T
    if info.samplerate != decoding.sample_rate:
        wave = resample(wave, info.samplerate, decoding.sample_rate, path)
    return np.ascontiguousarray(wave, dtype=np.float32), info.subtype


def resample(wave: np.ndarray, rate: int, target: int, path: str | Path) -> np.ndarray:
    """(channels, frames) from `rate` to `target` Hz with torchaudio's windowed-sinc resampler (the one training
    used). Imported here, so reading files at the model's rate needs no torch (predict from an ONNX file);
    DataError naming the file when torchaudio is not installed."""
    try:
        import torch
        import torchaudio
    except ImportError:
        raise DataError(f"{path} is at {rate} Hz and the model takes {target} Hz: resampling needs torchaudio, which "
                        f"is not installed here; convert the files to {target} Hz first, or install torch and "
                        "torchaudio") from None
    return torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(wave)), rate, target).numpy()


def verify(path: str | Path, decoding: Decoding) -> int:
    """Check a recording without keeping it: its header, and a full decode where only that can tell (float WAVs,
    which can hold NaN; files to resample, whose length changes). Returns its length in frames at
    `decoding.sample_rate`; raises what `probe` and `decode` raise."""
    info = probe(path, decoding)
    if info.subtype in FLOAT_SUBTYPES or info.samplerate != decoding.sample_rate:
        return decode(path, decoding)[0].shape[-1]
    return info.frames


def fit_length(wave: np.ndarray, num_frames: int) -> np.ndarray:
    """Crop (from the start) or zero-pad (at the end) a (channels, frames) clip to `num_frames`, as float32."""
    if wave.shape[-1] >= num_frames:
        return np.asarray(wave[:, :num_frames], dtype=np.float32)
    out = np.zeros((wave.shape[0], num_frames), dtype=np.float32)
    out[:, : wave.shape[-1]] = wave
    return out
