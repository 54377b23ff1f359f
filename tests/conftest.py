"""Config fixtures built with Hydra's compose API, pointed at temporary folders, with small fast settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from machine_sound.config import compose, instantiate

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLES = REPO.parent / "shared" / "real-samples"

# Tiny synthetic data: 2 s clips, 15 normal + 6 abnormal per ID, and a front end sized to match.
SMALL = [
    "data.clip_seconds=2.0",
    "data.generator.n_normal=15",
    "data.generator.n_abnormal=6",
    "data.batch_size=4",
    "model.norm_clips=8",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
]


def make_cfg(output_dir: Path, data_dir: Path, overrides=()):
    small = SMALL
    real_data = [o for o in overrides if o.startswith("data=") and o != "data=synthetic"
                 or o in ("sweep=dcase2020", "sweep=dcase", "sweep=synthetic_dcase")]
    if real_data:  # no generator to shrink
        small = [o for o in small if not o.startswith("data.generator.")]
    autoencoder = "model=autoencoder" in overrides or (  # sweep=dcase2020 picks it too
        "sweep=dcase2020" in overrides and not any(o.startswith("model=") for o in overrides))
    if autoencoder:  # its front end is the DCASE baseline's, never standardised
        small = [o for o in small if not o.startswith("model.norm_clips")]
    return compose([f"paths.output_dir={output_dir}", f"paths.data_dir={data_dir}", *small, *overrides])


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One synthetic data folder shared by the whole session (generation is the slow part)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def cfg_factory(tmp_path, data_dir):
    def factory(*overrides, output_dir: Path | None = None):
        return make_cfg(output_dir or tmp_path / "run", data_dir, overrides)
    return factory


def write_wav(path: Path, seconds=0.5, sample_rate=16000, channels=1, seed=0, subtype="PCM_16") -> Path:
    """A noise recording (frames, channels); each channel at its own level so channel choices can be told apart."""
    audio = np.random.default_rng(seed).normal(0, 0.1, (int(sample_rate * seconds), channels))
    audio *= np.linspace(1.0, 0.2, channels)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.astype(np.float32), sample_rate, subtype=subtype)
    return path


def make_mimii(root, n_normal=4, n_abnormal=3, sample_rate=16000, seconds=0.5, snr="-6_dB", channels=1,
               machine_id="id_00"):
    """A tiny MIMII tree for pump: `<root>/<snr>_pump/pump/<machine_id>/{normal,abnormal}/0000000N.wav`."""
    folder = Path(root) / f"{snr}_pump" / "pump" / machine_id
    for label, count in (("normal", n_normal), ("abnormal", n_abnormal)):
        for i in range(count):
            write_wav(folder / label / f"{i:08d}.wav", seconds, sample_rate, channels, seed=i)
    return folder


def setup_mimii(cfg_factory, root, *overrides):
    cfg = cfg_factory("data=mimii", f"data.root={root}", "machine=pump", "id=id_00", "data.clip_seconds=0.5",
                      *overrides)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return datamodule
