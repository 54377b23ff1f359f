"""Reading recordings with soundfile, with errors that name the file and say what to do."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf

from machine_sound.errors import DataError

# libsndfile accepts a truncated WAV silently; its header log then says "data : <declared> (should be <real>)".
_TRUNCATED = re.compile(r"^data\s*:\s*\d+\s*\(should be\s*\d+\)", re.MULTILINE)


def probe(path: str | Path, sample_rate: int, channel: int) -> sf._SoundFileInfo:
    """Check a file's header without decoding it: readable, complete, at the expected rate, has the channel."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise DataError(f"cannot read {path}: {err} (corrupt, empty or not audio; delete or replace it)") from None
    if _TRUNCATED.search(info.extra_info):
        raise DataError(f"{path} is truncated: its header promises more audio than the file holds "
                        "(an interrupted copy or download?); re-copy or delete it")
    if info.frames == 0:
        raise DataError(f"{path} holds no audio frames; delete or replace it")
    if info.samplerate != sample_rate:
        raise DataError(f"{path} has sample rate {info.samplerate} Hz but data.sample_rate is {sample_rate} Hz; "
                        f"set data.sample_rate={info.samplerate} or resample the files")
    if channel >= info.channels:
        raise DataError(f"{path} has {info.channels} channel(s) but data.channel={channel}; "
                        f"choose a channel from 0 to {info.channels - 1}")
    return info


def read_clip(path: str | Path, channel: int, num_frames: int) -> np.ndarray:
    """One channel of a recording as float32 (1, num_frames): cropped from the start or zero-padded at the end."""
    try:
        data, _ = sf.read(str(path), frames=num_frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise DataError(f"cannot decode {path}: {err}; delete or replace it") from None
    wave = data[:, channel]
    if not np.isfinite(wave).all():
        raise DataError(f"{path} contains NaN or infinite samples; delete or replace it")
    if len(wave) < num_frames:
        wave = np.pad(wave, (0, num_frames - len(wave)))
    return wave[None, :]
