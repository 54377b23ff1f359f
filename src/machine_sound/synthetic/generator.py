"""The built-in dataset: synthetic MIMII-like recordings written as real WAV files in MIMII's layout, which the
MIMII reader then reads like the real dataset (this module writes the tree; the reader knows nothing of it).

`SyntheticMimii.ensure(root, snr, machine, id)` writes `<root>/<snr>_<machine>/<machine>/<id>/{normal,abnormal}/`
on first use, for that machine/ID only; `prepare(reader)` writes every folder a MIMII reader will read. The tree
is a pure function of the generator settings: a marker file holds them, a change regenerates the ID, and the
files appear atomically so parallel sweep jobs can share it.
As in MIMII, the SNR folders hold the same machine sounds mixed with the same background at different levels.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal
from tqdm.auto import tqdm

from machine_sound.checks import check_seed
from machine_sound.data.readers.mimii import id_folder, parse_snr
from machine_sound.errors import ConfigError, DataError, require_positive
from machine_sound.synthetic.machines import ANOMALY_KINDS, factory_background, id_parameters, render, stable_seed
from machine_sound.synthetic.signals import db, rms, unit_rms

log = logging.getLogger(__name__)

MARKER = ".synthetic.json"
FAULT_LIST = "fault_kinds.csv"  # which fault each abnormal clip of the ID has
DRAWN = "drawn"  # clip(fault=DRAWN): the fault the generator draws for that abnormal clip
MAX_SEVERITY = 10.0
LABEL_DIRS = ("normal", "abnormal")


@dataclass(frozen=True)
class SyntheticMimii:
    """Settings of the synthetic recordings; the defaults suit a 2-core CPU (a few hundred 10 s clips per ID)."""

    n_normal: int = 360
    n_abnormal: int = 120
    duration_s: float = 10.0
    sample_rate: int = 16000
    channels: int = 1
    severity: float = 1.0
    seed: int = 0
    version: int = 8  # bump when the sound models change, so cached trees are regenerated

    def __post_init__(self):
        for name in ("channels", "n_normal", "n_abnormal", "sample_rate"):
            require_positive(f"data.generator.{name}", getattr(self, name), integer=True)
        if not 1 <= self.channels <= 8:
            raise ConfigError(f"data.generator.channels={self.channels}: choose 1 to 8 (MIMII has 8)")
        if require_positive("data.clip_seconds", self.duration_s) < 1.0:  # fault events last up to 0.8 s
            raise ConfigError(f"data.generator.duration_s={self.duration_s} (data.clip_seconds): the synthetic "
                              "faults need clips of at least 1 s")
        if require_positive("data.generator.severity", self.severity) > MAX_SEVERITY:
            raise ConfigError(f"data.generator.severity={self.severity}: choose a value in (0, {MAX_SEVERITY}] "
                              "(1.0 is the default task, lower is harder)")
        check_seed(self.seed, "data.generator.seed")

    def prepare(self, reader) -> None:
        """Write every (snr, machine, id) folder that a MIMII reader (`reader.root`, `reader.folders()`) will
        read, as many processes as torch may use threads (a parallel sweep job keeps to its share of the CPUs)."""
        import torch

        if reader.root is None:
            raise ConfigError("data.root is not set: the synthetic recordings need a folder to be written to")
        for snr, machine, machine_id in reader.folders():
            self.ensure(reader.root, snr, machine, machine_id, workers=torch.get_num_threads())

    def ensure(self, root: str | Path, snr: str, machine: str, machine_id: str, progress: bool = True,
               workers: int | None = None) -> Path:
        """Generate the machine/ID's folder unless an identical one is already there; return its path.
        `workers` processes write the clips (default: one per CPU, at most 8)."""
        if machine not in ANOMALY_KINDS:
            raise ConfigError(f"unknown machine '{machine}' for synthetic data; valid: {', '.join(ANOMALY_KINDS)}")
        parse_snr(snr)
        target = id_folder(root, snr, machine, machine_id)
        spec = self._spec(snr, machine, machine_id)
        return write_once(target, spec, lambda staging: self._write(staging, snr, machine, machine_id, spec,
                                                                     progress, workers))

    def fault_kind(self, machine: str, machine_id: str, index: int) -> str:
        """The fault of abnormal clip `index`: drawn at random from `ANOMALY_KINDS[machine]`, seeded by the clip."""
        kinds = ANOMALY_KINDS[machine]
        return kinds[int(np.random.default_rng(stable_seed("kind", self.seed, machine, machine_id, index))
                         .integers(len(kinds)))]

    def clip(self, snr: str, machine: str, machine_id: str, label: str, index: int,
             fault: str | None = DRAWN, speed: float = 1.0) -> np.ndarray:
        """One recording as float32 (frames, channels) in [-1, 1]; a pure function of its arguments.

        `label` is "normal" or "abnormal". An abnormal clip has the fault `fault_kind(...)` (`fault=DRAWN`, as
        written to disk), another kind of `ANOMALY_KINDS[machine]` named by `fault`, or none with `fault=None`:
        the same recording without its fault, for comparisons. A normal clip has none. `speed` runs the machine
        at that multiple of its speed (every frequency and period of its sound scaled; the background is not):
        another operating condition, as DCASE's domains have. Raises ValueError for an unknown machine, label or
        kind, a fault on a normal clip, or a speed outside (0.25, 4)."""
        if not 0.25 < speed < 4:
            raise ValueError(f"speed={speed!r}: a multiple of the machine's speed between 0.25 and 4")
        if machine not in ANOMALY_KINDS:
            raise ValueError(f"unknown machine '{machine}'; valid: {', '.join(ANOMALY_KINDS)}")
        if label not in LABEL_DIRS:
            raise ValueError(f"label={label!r}: 'normal' or 'abnormal'")
        if label == "abnormal" and fault == DRAWN:
            fault = self.fault_kind(machine, machine_id, index)
        elif label == "normal" and fault not in (DRAWN, None):
            raise ValueError(f"a normal clip has no fault; got fault={fault!r}")
        elif label == "normal":
            fault = None
        sr, n = self.sample_rate, int(round(self.duration_s * self.sample_rate))
        params = id_parameters(machine, machine_id)
        clip_key = (self.seed, machine, machine_id, label, index)  # no SNR: SNR folders share the sounds
        rng = np.random.default_rng(stable_seed("level", *clip_key))
        # Levels are set from the machine's running sound alone, so a fault's added events make the clip louder
        # instead of making everything else quieter (a cue in the average spectrum that real faults lack).
        played = int(round(n * speed))  # the sound of `played` samples squeezed into n: every frequency x speed
        running, added = render(machine, machine_id, played, sr, fault, self.severity, key=(self.seed, label, index))
        if played != n:
            running, added = signal.resample(running, n), signal.resample(added, n)
        level = rms(running)  # never 0: every machine's running sound has noise in it
        source, added = running / level, added / level
        bg_rng = np.random.default_rng(stable_seed("background", *clip_key))
        mix_gain = db(-parse_snr(snr))  # background RMS relative to the machine's
        out = np.empty((n, self.channels), dtype=np.float64)
        common = factory_background(bg_rng, n, sr)
        faulty = np.empty((n, self.channels), dtype=np.float64)
        for ch in range(self.channels):
            delay = ch * int(params.get("blades", 3) % 4 + 1)  # the array's geometry: a few samples per mic
            mic_gain = 1.0 - 0.03 * ch
            local = factory_background(bg_rng, n, sr) if ch else common
            bg = unit_rms(0.7 * common + 0.3 * local) if ch else common
            out[:, ch] = mic_gain * np.roll(source, delay) + mix_gain * bg
            faulty[:, ch] = mic_gain * np.roll(added, delay)
        out = (out + faulty) * db(-26.0 + rng.normal(0, 1.0)) / rms(out[:, 0])
        peak = np.abs(out).max()
        if peak > 0.99:  # sharp valve clicks at high SNR: turn this clip down rather than clip it
            out *= 0.99 / peak
        return out.astype(np.float32)

    # -- internals ------------------------------------------------------------------------------------------

    def _spec(self, snr, machine, machine_id) -> dict:
        return {**asdict(self), "snr": snr, "machine": machine, "id": machine_id}

    def _write(self, staging: Path, snr, machine, machine_id, spec, progress, workers=None) -> None:
        jobs = [(label, i) for label, count in zip(LABEL_DIRS, (self.n_normal, self.n_abnormal)) for i in range(count)]
        for label in LABEL_DIRS:
            (staging / label).mkdir(parents=True)
        fmt = "WAVEX" if self.channels > 2 else "WAV"  # MIMII's 8-channel files are WAVE_FORMAT_EXTENSIBLE
        paths = [staging / label / f"{i:08d}.wav" for label, i in jobs]
        tasks = [(self, snr, machine, machine_id, label, i, path, fmt) for (label, i), path in zip(jobs, paths)]
        workers = workers or min(os.cpu_count() or 1, 8)
        desc = f"synthesizing {snr}_{machine}/{machine_id}"
        with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
            done = pool.map(_write_clip, tasks, chunksize=8) if pool else map(_write_clip, tasks)
            for _ in tqdm(done, total=len(tasks), desc=desc, unit="clip", disable=not progress):
                pass
        kinds = [f"abnormal/{i:08d}.wav,{self.fault_kind(machine, machine_id, i)}\n" for i in range(self.n_abnormal)]
        (staging / FAULT_LIST).write_text("file,fault\n" + "".join(kinds))
        (staging / MARKER).write_text(json.dumps(spec, indent=1))

def write_once(target: Path, spec: dict, write) -> Path:
    """A generated folder, written once: `target` itself when its marker holds `spec`; otherwise `write(staging)`
    fills a staging folder beside it (which must write the marker), moved into place in one step, so parallel jobs
    that generate the same folder never see half of it. DataError when `target` exists but was not generated."""
    if _matches(target, spec):
        return target
    if target.exists() and not (target / MARKER).exists():
        raise DataError(f"{target} exists but was not written by the synthetic generator; "
                        "move it away or point data.root elsewhere")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    try:
        write(staging)
        _publish(staging, target, spec)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _matches(target: Path, spec: dict) -> bool:
    try:
        return json.loads((target / MARKER).read_text()) == spec
    except (OSError, ValueError):
        return False


def _publish(staging: Path, target: Path, spec: dict) -> None:
    """Move the finished folder into place; if another job got there first with the same spec, keep theirs (it
    may be in use: replacing it would pull files from under its readers)."""
    if _matches(target, spec):
        return
    if target.exists():  # stale settings: set the old tree aside, then replace it
        stale = target.parent / f".stale-{target.name}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass
    try:
        os.rename(staging, target)
        log.info("wrote synthetic recordings to %s", target)
    except OSError:
        if not _matches(target, spec):
            raise DataError(f"could not write synthetic data to {target}; is another job writing there?")


def _write_clip(task) -> None:
    """Generate and write one clip (a top-level function, so a process pool can run it)."""
    generator, snr, machine, machine_id, label, index, path, fmt = task
    audio = generator.clip(snr, machine, machine_id, label, index)
    sf.write(path, audio, generator.sample_rate, subtype="PCM_16", format=fmt)
