"""MIMII as released: `<root>/<snr>_<machine>/<machine>/<id>/{normal,abnormal}/*.wav`, one machine/ID per run.

The synthetic data is written in the same layout, so `data=synthetic` is this module with a generator.
Two split protocols:
- `stratified` (default): a random train/val/test split of the ID's normal and abnormal clips at their ratio;
  the classifier learns normal against abnormal.
- `baseline`: the MIMII paper's. Test = the ID's first N normal files (N = its number of abnormal files) and all
  its abnormal files. Nothing abnormal is left to learn from, so, as for DCASE, the model learns to tell the
  machine type's IDs apart from every ID's remaining normal clips, and a test clip's anomaly score is
  1 - p(own ID).
`test_snr` evaluates across noise levels: the test clips are the same recordings as the test split, taken from
another SNR folder (MIMII's SNR folders hold the same machine sounds mixed with the background at other levels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from machine_sound.data.datamodule import AudioDataModule, Item
from machine_sound.data.synthetic import SyntheticMimii, parse_snr
from machine_sound.errors import ConfigError, DataError

CLASS_NAMES = ("normal", "abnormal")  # label 0 and 1: abnormal is the positive class
PROTOCOLS = ("stratified", "baseline")

MIMII_HINT = ("download MIMII (Zenodo record 3384388), unzip e.g. -6_dB_pump.zip into one folder and set "
              "data.root to it, or use the built-in data=synthetic")


def index_mimii(root: str | Path | None, snr: str, machine: str, machine_id: str) -> list[Item]:
    """All recordings of one snr/machine/id as (path, label), sorted by path so the order is reproducible."""
    if root is None:
        raise DataError(f"data.root is not set: {MIMII_HINT}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist: {MIMII_HINT}")
    snr_dir = root / f"{snr}_{machine}"
    if not snr_dir.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and "_dB_" in p.name)
        raise DataError(f"no folder {snr_dir.name} in {root} (found: {', '.join(found) or 'none'}); "
                        f"unzip {snr}_{machine}.zip there or choose another snr/machine")
    id_dir = snr_dir / machine / machine_id
    if not id_dir.is_dir():
        found = sorted(p.name for p in (snr_dir / machine).glob("id_*"))
        raise DataError(f"no folder {id_dir} (IDs found: {', '.join(found) or 'none'})")
    items: list[Item] = []
    for label, name in enumerate(CLASS_NAMES):
        files = sorted((id_dir / name).glob("*.wav"))
        if not files:
            raise DataError(f"no .wav files in {id_dir / name}; a MIMII ID folder holds normal/ and abnormal/ "
                            "folders of .wav files")
        items += [(f, label) for f in files]
    return items


class MimiiDataModule(AudioDataModule):
    """Recordings of one MIMII machine/ID (real, or synthetic when a `generator` is given)."""

    class_names = CLASS_NAMES
    layout = "mimii"

    def __init__(self, root: str | None, snr: str, machine: str, machine_id: str,
                 machines: Mapping[str, Sequence[str]], generator: SyntheticMimii | None = None,
                 test_snr: str | None = None, protocol: str = "stratified", **kwargs):
        super().__init__(**kwargs)
        if protocol not in PROTOCOLS:
            raise ConfigError(f"data.protocol={protocol}: choose {' or '.join(PROTOCOLS)}")
        if machine not in machines:
            raise ConfigError(f"unknown machine '{machine}'; valid: {', '.join(machines)}")
        if machine_id not in machines[machine]:
            raise ConfigError(f"unknown id '{machine_id}' for {machine}; valid: {', '.join(machines[machine])} "
                              f"(to use another, add it to data.machines.{machine})")
        parse_snr(snr)
        if test_snr is not None:
            parse_snr(test_snr)
        if generator is not None and generator.sample_rate != self.decoding.sample_rate:
            raise ConfigError(f"data.generator.sample_rate={generator.sample_rate} differs from "
                              f"data.sample_rate={self.decoding.sample_rate}")
        self.root, self.snr, self.machine, self.machine_id = root, snr, machine, machine_id
        self.generator, self.test_snr, self.protocol = generator, test_snr, protocol
        if protocol == "baseline":  # the labels are the machine type's IDs
            self.class_names = tuple(machines[machine])
            if len(self.class_names) < 2:
                raise ConfigError(f"data.protocol=baseline learns to tell {machine}'s IDs apart: data.machines."
                                  f"{machine} lists only {', '.join(self.class_names)}")

    @property
    def scored_by_id(self) -> bool:
        return self.protocol == "baseline"

    @property
    def removes_background(self) -> bool:
        return not self.scored_by_id  # normal/abnormal: measured to help (pump/id_04 -6 dB AUROC 0.93 -> 0.99)

    def describe(self) -> str:
        cross = f" (test at {self.test_snr})" if self.test_snr else ""
        return f"{self.name}{cross}"

    def prepare_data(self) -> None:
        if self.generator is not None:
            # As many processes as torch may use threads: a parallel sweep job keeps to its share of the CPUs.
            ids = self.class_names if self.protocol == "baseline" else [self.machine_id]
            for snr in dict.fromkeys([self.snr, self.test_snr or self.snr]):
                for machine_id in ids:
                    self.generator.ensure(self.root, snr, self.machine, machine_id, workers=torch.get_num_threads())

    def find_recordings(self) -> list[Item]:
        if self.protocol == "stratified":
            return index_mimii(self.root, self.snr, self.machine, self.machine_id)
        pool = []  # every ID's normal clips that are not in its baseline test set, labelled by ID
        for label, machine_id in enumerate(self.class_names):
            normal, abnormal = self.baseline_test_split(machine_id)
            pool += [(path, label) for path, _ in normal[len(abnormal):]]
        return pool

    def baseline_test_split(self, machine_id: str) -> tuple[list[Item], list[Item]]:
        """An ID's normal and abnormal clips, sorted by name: its test set is normal[:N] + abnormal."""
        items = index_mimii(self.root, self.snr, self.machine, machine_id)
        normal = [item for item in items if item[1] == 0]
        abnormal = [item for item in items if item[1] == 1]
        if len(normal) <= len(abnormal):
            raise DataError(f"{self.snr}_{self.machine}/{machine_id} has {len(normal)} normal and {len(abnormal)} "
                            "abnormal files: the baseline protocol tests on as many normal files as abnormal ones "
                            "and needs more normal files left to train on")
        return normal, abnormal

    def make_splits(self, items: list[Item]) -> dict[str, list[Item]]:
        cross_snr = self.test_snr is not None and self.test_snr != self.snr
        if self.protocol == "stratified":
            splits = super().make_splits(items)
            if cross_snr:
                splits["test"] = self.check(self.at_snr(splits["test"], self.test_snr))
            return splits
        # baseline: train/val from the pool at the train:val ratio; the test set is the protocol's, for this ID
        total = self.fractions["train"] + self.fractions["val"]
        splits = self.stratified(items, self.fractions["train"] / total, self.fractions["val"] / total, 0.0)
        normal, abnormal = self.baseline_test_split(self.machine_id)
        test = normal[: len(abnormal)] + abnormal
        test = self.check(self.at_snr(test, self.test_snr) if cross_snr else test)
        self.anomalous["test"] = [label for _, label in test]  # normal (0) or abnormal (1) ...
        own = self.class_names.index(self.machine_id)
        splits["test"] = [(path, own) for path, _ in test]  # ... and labelled by ID
        return splits

    def at_snr(self, items: list[Item], snr: str) -> list[Item]:
        """The same recordings in another SNR folder (cross-SNR evaluation), with a clear error for a missing one."""
        index_mimii(self.root, snr, self.machine, self.machine_id)  # the folder's own errors first
        source = f"{self.snr}_{self.machine}"
        moved = []
        for path, label in items:
            snr_dir = path.parents[3]  # <snr>_<machine>/<machine>/<id>/<label>/<file>
            other = snr_dir.with_name(f"{snr}_{self.machine}") / path.relative_to(snr_dir)
            if not other.is_file():
                raise DataError(f"data.test_snr={snr}: {other} is missing; cross-SNR testing needs the same "
                                f"file names in {source} and {snr}_{self.machine}")
            moved.append((other, label))
        return moved
