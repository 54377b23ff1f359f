"""The decoded-audio cache: every recording decoded once (selected channels, resampled) into a compact .npy file
that later epochs and later runs memory-map instead of decoding the WAV again.

An entry's name is a hash of the file's absolute path, size and modification time and of the decode settings, so
a changed file or a changed setting simply misses and is decoded afresh. Entries are written to a temporary file
and renamed into place: parallel sweep jobs that build the same entry never leave a half-written one.
Sources stored without loss as int16 (16-bit PCM, as in MIMII and DCASE) are kept as int16, at a fifth of an
8-channel file's size for one channel; anything else (float WAVs, 24-bit) is kept as float32.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from pathlib import Path

import numpy as np

from machine_sound.data.audio import INT16_EXACT, Decoding, decode
from machine_sound.errors import DataError

INT16_SCALE = 32768.0


class DecodedCache:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def entry(self, path: str | Path, decoding: Decoding) -> Path:
        """Where the decoded form of `path` under `decoding` lives (whether or not it is there yet)."""
        path = Path(path).resolve()
        stat = path.stat()
        key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{decoding.key()}"
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.directory / digest[:2] / f"{digest}.npy"

    def ensure(self, path: str | Path, decoding: Decoding) -> Path:
        """The entry for `path`, decoding the file first if it is missing. Raises what `decode` raises."""
        entry = self.entry(path, decoding)
        if not entry.exists():
            wave, subtype = decode(path, decoding)
            if subtype in INT16_EXACT:
                wave = np.clip(np.round(wave * INT16_SCALE), -32768, 32767).astype(np.int16)
            staging = entry.with_name(f".{entry.stem}.{uuid.uuid4().hex[:8]}.tmp.npy")
            try:
                entry.parent.mkdir(parents=True, exist_ok=True)
                np.save(staging, wave)
                os.replace(staging, entry)  # atomic: readers see the old state or the whole new file
            except OSError as err:
                raise DataError(f"cannot write the decoded-audio cache in {self.directory}: {err.strerror}; set "
                                "data.cache_dir to a writable folder with free space, or null to decode every "
                                "epoch") from None
            finally:
                with contextlib.suppress(OSError):
                    staging.unlink(missing_ok=True)
        return entry

    @staticmethod
    def load(entry: Path, num_frames: int) -> np.ndarray:
        """The first `num_frames` of an entry as float32 (channels, frames), read through a memory map."""
        stored = np.load(entry, mmap_mode="r")[:, :num_frames]
        if stored.dtype == np.int16:
            return stored.astype(np.float32) / INT16_SCALE
        return np.array(stored, dtype=np.float32)

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.directory.rglob("*.npy")) if self.directory.exists() else 0
