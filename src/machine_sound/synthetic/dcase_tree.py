"""A zero-download DCASE-2023-like dataset: the synthetic machines written in the DCASE 2021-2025 Task 2 layout,
with a source and a target domain, which the DCASE reader then reads like the real sets.

    <root>/<machine>/train/section_00_<source|target>_train_normal_NNNN_spd_<speed>_bg_<level>.wav
    <root>/<machine>/test/section_00_<source|target>_test_<normal|anomaly>_NNNN_spd_<speed>_bg_<level>.wav
    <root>/<machine>/attributes_00.csv     (file_name, d1p, d1v, d2p, d2v)

One section per machine type, as in the first-shot years. The source domain runs the machine at a few speeds
(`source_speeds`, attribute `spd`, e.g. 090 = 0.9 x its own speed) with the background at `source_snr`; the target
domain runs it at another speed (`target_speed`) in a louder background (`target_snr`, attribute `bg`), so an
operating condition and the recording condition both shift, as in DCASE 2022-2025. Training clips come at the
task's ratio (990 source to 10 target per section there; 297 to 3 here, sized for a CPU), and the test set has
`n_test` normal and `n_test` anomalous clips in each domain (50 each in DCASE 2023). The anomalies are the
synthetic machines' faults (`machine_sound.synthetic.machines`). The tree is a pure function of the settings: a
marker file holds them, a change regenerates the machine type, and the files appear atomically.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile as sf
from tqdm.auto import tqdm

from machine_sound.data.readers.dcase import EVERY_MACHINE
from machine_sound.errors import ConfigError, require_positive
from machine_sound.synthetic.generator import MARKER, SyntheticMimii, write_once
from machine_sound.synthetic.machines import ANOMALY_KINDS

log = logging.getLogger(__name__)

SECTION = "section_00"
INDEX_BASE = {("source", "train"): 0, ("target", "train"): 100_000, ("source", "test"): 200_000,
              ("target", "test"): 300_000}  # distinct clip keys for every domain and split


@dataclass(frozen=True)
class SyntheticDcase:
    """Settings of the synthetic DCASE-like tree; the defaults suit a 2-core CPU (400 clips per machine type)."""

    n_source_train: int = 297
    n_target_train: int = 3
    n_test: int = 50
    source_speeds: tuple[float, ...] = (0.9, 1.0, 1.1)
    target_speed: float = 1.3
    source_snr: str = "0_dB"
    target_snr: str = "-6_dB"
    duration_s: float = 10.0
    sample_rate: int = 16000
    severity: float = 1.0
    seed: int = 0
    version: int = 1  # bump when the tree changes, so cached trees are regenerated

    def __post_init__(self):
        for name in ("n_source_train", "n_target_train", "n_test"):
            require_positive(f"data.generator.{name}", getattr(self, name), integer=True)
        object.__setattr__(self, "source_speeds", tuple(float(s) for s in self.source_speeds))
        for speed in (*self.source_speeds, self.target_speed):
            if not 0.5 <= speed <= 2.0:
                raise ConfigError(f"data.generator speed {speed}: a multiple of the machine's speed in [0.5, 2]")
        if self.target_speed in self.source_speeds:
            raise ConfigError(f"data.generator.target_speed={self.target_speed} is one of the source speeds: the "
                              "target domain must run the machine otherwise")
        self.sound  # noqa: B018 - checks duration, rate, severity and seed

    @property
    def sound(self) -> SyntheticMimii:
        """The synthetic machines, with these settings."""
        return SyntheticMimii(n_normal=1, n_abnormal=1, duration_s=self.duration_s, sample_rate=self.sample_rate,
                              severity=self.severity, seed=self.seed)

    def prepare(self, reader) -> None:
        """Write the machine type(s) a DCASE reader (`reader.root`, `reader.machine`) will read."""
        import torch

        if reader.root is None:
            raise ConfigError("data.root is not set: the synthetic recordings need a folder to be written to")
        machines = list(ANOMALY_KINDS) if reader.machine == EVERY_MACHINE else [reader.machine]
        for machine in machines:
            self.ensure(reader.root, machine, workers=torch.get_num_threads())

    def clips(self, machine: str) -> list[tuple[str, str, str, int, float, str]]:
        """(folder, file name, label, clip index, speed, snr) of every clip of a machine type, in writing order."""
        out = []
        plan = [("source", "train", "normal", self.n_source_train), ("target", "train", "normal", self.n_target_train)]
        plan += [(domain, "test", condition, self.n_test) for domain in ("source", "target")
                 for condition in ("normal", "anomaly")]
        for domain, split, condition, count in plan:
            for i in range(count):
                speed = self.source_speeds[i % len(self.source_speeds)] if domain == "source" else self.target_speed
                snr = self.source_snr if domain == "source" else self.target_snr
                number = i + (count if condition == "anomaly" else 0)  # DCASE numbers a split's clips once
                name = (f"{SECTION}_{domain}_{split}_{condition}_{number:04d}_spd_{round(speed * 100):03d}_bg_"
                        f"{snr.replace('_dB', 'dB').replace('-', 'm')}.wav")
                label = "abnormal" if condition == "anomaly" else "normal"
                out.append((split, name, label, INDEX_BASE[(domain, split)] + number, speed, snr))
        return out

    def ensure(self, root: str | Path, machine: str, progress: bool = True, workers: int | None = None) -> Path:
        """Write `<root>/<machine>/` unless an identical one is there; return its path."""
        if machine not in ANOMALY_KINDS:
            raise ConfigError(f"machine={machine}: the synthetic DCASE data has {', '.join(ANOMALY_KINDS)} "
                              f"(or machine={EVERY_MACHINE})")
        target = Path(root) / machine
        spec = {**asdict(self), "machine": machine}
        spec["source_speeds"] = list(self.source_speeds)
        return write_once(target, spec, lambda staging: self._write(staging, machine, spec, progress, workers))

    def _write(self, staging: Path, machine: str, spec: dict, progress: bool, workers: int | None) -> None:
        for split in ("train", "test"):
            (staging / split).mkdir(parents=True)
        clips = self.clips(machine)
        tasks = [(self.sound, machine, label, index, speed, snr, staging / split / name)
                 for split, name, label, index, speed, snr in clips]
        workers = workers or min(os.cpu_count() or 1, 8)
        with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
            done = pool.map(_write_clip, tasks, chunksize=8) if pool else map(_write_clip, tasks)
            for _ in tqdm(done, total=len(tasks), desc=f"synthesizing DCASE-like {machine}", unit="clip",
                          disable=not progress):
                pass
        with open(staging / "attributes_00.csv", "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["file_name", "d1p", "d1v", "d2p", "d2v"])
            for split, name, *_ in clips:
                parts = name.removesuffix(".wav").split("_")
                writer.writerow([f"{machine}/{split}/{name}", *parts[-4:]])
        (staging / MARKER).write_text(json.dumps(spec, indent=1))


def _write_clip(task) -> None:
    """Generate and write one clip (a top-level function, so a process pool can run it)."""
    sound, machine, label, index, speed, snr, path = task
    audio = sound.clip(snr, machine, SECTION, label, index, speed=speed)
    sf.write(path, audio, sound.sample_rate, subtype="PCM_16")
