"""The recordings that predict scores, cut into clip-length windows: which files, which windows, and reading them.

Torch-free, so predict from an ONNX file runs where only onnxruntime, numpy and soundfile are installed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from machine_sound.data.audio import BadFileError, Decoding, decode, fit_length, verify
from machine_sound.data.records import find_audio
from machine_sound.errors import DataError

log = logging.getLogger(__name__)


def window_starts(frames: int, size: int) -> list[int]:
    """Where the `size`-frame windows of a `frames`-long recording start: back to back, the last one ending with
    the recording; one window (zero-padded) when the recording is shorter."""
    if frames <= size:
        return [0]
    starts = list(range(0, frames - size + 1, size))
    return starts if starts[-1] == frames - size else starts + [frames - size]


def find_inputs(source: str | Path) -> list[Path]:
    """The recordings to score: `source` itself when it is a file, else the .wav/.flac files under it found by the
    readers' rule (`records.find_audio`: any case, linked folders followed, hidden `._*` files ignored), sorted.
    DataError when `source` does not exist or holds none."""
    path = Path(source)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"input {path} does not exist; give an audio file or a folder of them")
    files = find_audio(path)
    if not files:
        raise DataError(f"no .wav/.flac files in {path}")
    log.info("found %d recordings under %s", len(files), path)
    return files


class Recordings:
    """Every window of every readable file: `windows[i] = (file index, first frame)`, each `num_frames` long at
    `decoding.sample_rate`.

    Each file is checked once when this is built (`verify`): a bad file is kept in `errors` (file index ->
    message) and has no windows. A wrong sample rate or a missing channel is a setting problem: DataError.
    `window(i)` reads window i as (channels, num_frames) float32 (a short file zero-padded); the file read last is
    kept, since a file's windows come in a row.
    """

    def __init__(self, files: list[Path], decoding: Decoding, num_frames: int):
        self.files, self.decoding, self.num_frames = files, decoding, num_frames
        self.errors: dict[int, str] = {}
        self.windows: list[tuple[int, int]] = []  # (file index, first frame)
        self.frames: dict[int, int] = {}  # file index -> its length in frames, for the readable ones
        self.starts: dict[int, list[int]] = {}  # file index -> its windows' first frames, for the readable ones
        self._last: tuple[int, np.ndarray] | None = None
        for i, path in enumerate(files):
            try:
                frames = verify(path, decoding)
            except BadFileError as err:
                self.errors[i] = str(err)
                log.warning("not scored: %s", err)
                continue
            self.frames[i], self.starts[i] = frames, window_starts(frames, num_frames)
            self.windows += [(i, start) for start in self.starts[i]]
        if not self.windows:  # nothing to score is a failure, not an empty table
            first = next(iter(self.errors.values()))
            raise DataError(f"none of the {len(files)} file(s) could be read; the first: {first}")

    def __len__(self) -> int:
        return len(self.windows)

    def window(self, index: int) -> np.ndarray:
        file, start = self.windows[index]
        if self._last is None or self._last[0] != file:
            self._last = (file, decode(self.files[file], self.decoding)[0])
        return fit_length(self._last[1][:, start:start + self.num_frames], self.num_frames)

    def batches(self, size: int):
        """(batch, channels, num_frames) float32 arrays of consecutive windows, `size` at most each."""
        for first in range(0, len(self.windows), size):
            yield np.stack([self.window(i) for i in range(first, min(first + size, len(self.windows)))])

    def spans(self, file: int) -> list[tuple[float, float]]:
        """(start, end) in seconds of each window of file `file`, in order (the end is the recording's, not the
        zero padding's)."""
        rate, length = self.decoding.sample_rate, self.frames[file]
        return [(start / rate, min(start + self.num_frames, length) / rate) for start in self.starts[file]]
