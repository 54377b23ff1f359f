"""Indexing a MIMII tree: `<root>/<snr>_<machine>/<machine>/<id>/{normal,abnormal}/*.wav`."""

from __future__ import annotations

from pathlib import Path

from machine_sound.errors import DataError

CLASS_NAMES = ("normal", "abnormal")  # label 0 and 1: abnormal is the positive class

MIMII_HINT = ("download MIMII (Zenodo record 3384388), unzip e.g. -6_dB_pump.zip into one folder and set "
              "data.root to it, or use the built-in data=synthetic")


def index_mimii(root: str | Path | None, snr: str, machine: str, machine_id: str) -> list[tuple[Path, int]]:
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
    items: list[tuple[Path, int]] = []
    for label, name in enumerate(CLASS_NAMES):
        files = sorted((id_dir / name).glob("*.wav"))
        if not files:
            raise DataError(f"no .wav files in {id_dir / name}; a MIMII ID folder holds normal/ and abnormal/ "
                            "folders of .wav files")
        items += [(f, label) for f in files]
    return items
