"""Genuine machine recordings beside synthetic ones, as log-mel spectrograms, for the README.

Writes two PNGs into --out (default: the repository's docs/):
- `real_vs_synthetic.png`: one row per machine type with genuine samples: a genuine normal and a genuine anomalous
  clip (DCASE 2020 Task 2 development data, id_00), then a synthetic normal and a synthetic abnormal clip from this
  project's generator (machine_sound.synthetic; the fault kind is the first of ANOMALY_KINDS[machine] unless
  --kinds names another). If the MIMII fan id_04 6 dB pair is there too, an extra row shows it (channel 0 of the
  8-channel files) beside synthetic fan id_04 at 6_dB.
- `synthetic_faults.png`: per machine type, one synthetic recording without a fault and then with every fault kind
  (the same recording each time, so the panels differ by the fault alone).

The genuine recordings are not part of this repository. Copy a few files from the public datasets (MIMII and the
DCASE 2020 Task 2 development set, Hitachi, CC BY-SA 4.0) into a folder laid out as

    <real>/dcase2020/<machine>/test/{normal,anomaly}_id_00_00000000.wav      (10 s, mono, 16 kHz)
    <real>/mimii/6_dB_fan/fan/id_04/{normal,abnormal}/*.wav                  (optional; the first file of each)

and point --real at it. The log-mel is the model's front end (model/frontend=logmel); each panel has its own colour
scale, from its maximum down 80 dB, so genuine and synthetic clips recorded at different gains compare by shape.

    python benchmarks/real_vs_synthetic.py [--real ../shared/real-samples] [--out docs] [--snr 6_dB]
        [--machine-id id_00] [--seed 0] [--kinds fan=unbalance,pump=clogging]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from functools import lru_cache
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import soundfile as sf
import torch
from omegaconf import OmegaConf
from PIL import Image

from machine_sound.config import compose
from machine_sound.errors import ConfigError, DataError, MachineSoundError
from machine_sound.models.frontend import LogMelFrontend
from machine_sound.synthetic.generator import SyntheticMimii
from machine_sound.synthetic.machines import ANOMALY_KINDS

matplotlib.use("Agg")
REPO = Path(__file__).resolve().parent.parent
RANGE_DB = 80.0
CMAP = plt.get_cmap("magma", 40)  # 2 dB steps: with the palette PNG below, keeps each file a few hundred KB
plt.rcParams.update({"font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7})


def parse_kinds(text: str | None) -> dict[str, str]:
    """'fan=unbalance,pump=clogging' -> {machine: kind}; every other machine gets its first kind."""
    chosen = {machine: kinds[0] for machine, kinds in ANOMALY_KINDS.items()}
    for item in filter(None, (text or "").split(",")):
        machine, _, kind = item.partition("=")
        if kind not in ANOMALY_KINDS.get(machine, ()):
            valid = "; ".join(f"{m}: {', '.join(k)}" for m, k in ANOMALY_KINDS.items())
            raise ConfigError(f"--kinds {item!r}: write machine=kind with a kind of that machine ({valid})")
        chosen[machine] = kind
    return chosen


def make_frontend() -> LogMelFrontend:
    """The model's log-mel front end, with the settings of the default training config."""
    return LogMelFrontend(**OmegaConf.to_container(compose([]).model.frontend, resolve=True))


def read_real(path: Path, sample_rate: int) -> np.ndarray:
    try:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise DataError(f"cannot read {path}: {err}; replace it with a WAV file from the dataset") from None
    if sr != sample_rate:
        raise DataError(f"{path} is at {sr} Hz, the front end expects {sample_rate} Hz; use the dataset's file")
    return audio[:, 0]  # MIMII: channel 0 of the 8-mic array, as the training pipeline reads it (data.channel)


def real_rows(real: Path, sample_rate: int) -> list[dict]:
    """The genuine (normal, anomalous) pairs found under `real`, one dict per figure row."""
    if not real.is_dir():
        raise DataError(f"--real {real}: no such folder; point --real at a copy of the genuine samples "
                         "(<real>/dcase2020/<machine>/test/{normal,anomaly}_id_00_00000000.wav)")
    rows, notes = [], []
    for machine in ANOMALY_KINDS:
        files = [real / "dcase2020" / machine / "test" / f"{label}_id_00_00000000.wav"
                 for label in ("normal", "anomaly")]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            notes.append(f"note: skipping {machine}: {', '.join(missing)} not found")
            continue
        rows.append(dict(machine=machine, label=f"{machine} (DCASE 2020, id_00)", snr=None, id=None,
                         real=[read_real(f, sample_rate) for f in files]))
    if not rows:
        raise DataError(f"no genuine samples under {real}: expected "
                         f"{real}/dcase2020/<machine>/test/{{normal,anomaly}}_id_00_00000000.wav for a machine of "
                         f"{', '.join(ANOMALY_KINDS)}; point --real at a folder laid out so")
    mimii = real / "mimii" / "6_dB_fan" / "fan" / "id_04"
    pairs = [sorted((mimii / label).glob("*.wav")) for label in ("normal", "abnormal")]
    if all(pairs) and "fan" in ANOMALY_KINDS:
        rows.append(dict(machine="fan", label="fan (MIMII 6 dB, id_04)", snr="6_dB", id="id_04",
                         real=[read_real(p[0], sample_rate) for p in pairs]))
    else:
        notes.append(f"note: no MIMII fan pair in {mimii}/{{normal,abnormal}}; that row is left out")
    for note in notes:  # after the check above: when nothing is found, the error alone says it
        print(note)
    return rows


def make_synth(gen: SyntheticMimii):
    @lru_cache(maxsize=None)
    def synth(snr: str, machine: str, machine_id: str, kind: str | None = None, label: str = "abnormal") -> np.ndarray:
        """Channel 0 of clip 0 of `label`: with the fault `kind`, or without a fault when `kind` is None (for
        "abnormal": the same recording as the faulty panels, so they differ by the fault alone)."""
        return gen.clip(snr, machine, machine_id, label, 0, fault=kind)[:, 0]
    return synth


def draw(ax, frontend: LogMelFrontend, wave: np.ndarray, title: str):
    with torch.no_grad():
        spec = frontend.log_mel(torch.from_numpy(np.ascontiguousarray(wave))[None, None])[0, 0].numpy()
    image = ax.imshow(spec - spec.max(), origin="lower", aspect="auto", cmap=CMAP, vmin=-RANGE_DB, vmax=0,
                      extent=(0, len(wave) / frontend.sample_rate, 0, spec.shape[0]), interpolation_stage="data")
    ax.set_title(title, pad=2)
    ax.tick_params(length=2, pad=1)
    return image


def save(fig, path: Path, image) -> Path:
    """A 128-colour palette PNG: full-colour spectrogram noise would make a file of 1-2 MB."""
    fig.colorbar(image, ax=fig.axes, shrink=0.6, pad=0.01, label="dB re panel max")
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=90, format="png")
    plt.close(fig)
    palette = Image.open(buffer).convert("RGB").quantize(128, method=Image.Quantize.MEDIANCUT,
                                                         dither=Image.Dither.NONE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        palette.save(path, optimize=True)
    except OSError as err:
        raise DataError(f"cannot write {path}: {err.strerror or err}; choose a writable --out") from None
    return path


def figure_real(rows, synth, frontend, kinds, args, version) -> Path:
    height = 2.0 * len(rows) + 0.8
    fig, axes = plt.subplots(len(rows), 4, figsize=(14, height), squeeze=False, layout="constrained")
    for r, row in enumerate(rows):
        snr, mid, kind = row["snr"] or args.snr, row["id"] or args.machine_id, kinds[row["machine"]]
        panels = [(row["real"][0], "genuine normal"), (row["real"][1], "genuine anomalous"),
                  (synth(snr, row["machine"], mid, label="normal"), f"synthetic normal ({mid}, {snr})"),
                  (synth(snr, row["machine"], mid, kind), f"synthetic abnormal: {kind} ({mid}, {snr})")]
        for ax, (wave, title) in zip(axes[r], panels):
            image = draw(ax, frontend, wave, title)
        axes[r, 0].set_ylabel(f"{row['label']}\nmel band")
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    fig.suptitle("Log-mel spectrograms: genuine recordings (left) and synthetic ones (right)", fontsize=9)
    fig.text(0.5, 0.002, "Genuine recordings: MIMII / DCASE 2020 Task 2 development data (Hitachi), CC BY-SA 4.0; "
             f"synthetic: machine-sound generator v{version}, {args.snr}", ha="center", va="bottom", fontsize=7)
    fig.get_layout_engine().set(rect=(0, 0.2 / height, 1, 1 - 0.2 / height))  # room for the footer
    return save(fig, args.out / "real_vs_synthetic.png", image)


def figure_faults(synth, frontend, args, version) -> Path:
    machines = list(ANOMALY_KINDS)
    columns = 1 + max(len(k) for k in ANOMALY_KINDS.values())
    fig, axes = plt.subplots(len(machines), columns, figsize=(max(9.0, 2.4 * columns), 1.8 * len(machines) + 0.5),
                             squeeze=False, layout="constrained")
    for r, machine in enumerate(machines):
        kinds = ANOMALY_KINDS[machine]
        image = draw(axes[r, 0], frontend, synth(args.snr, machine, args.machine_id), "the same clip, no fault")
        for c, kind in enumerate(kinds, start=1):
            draw(axes[r, c], frontend, synth(args.snr, machine, args.machine_id, kind), f"abnormal: {kind}")
        for ax in axes[r, len(kinds) + 1:]:
            ax.remove()
        axes[r, 0].set_ylabel(f"{machine}\nmel band")
        below = 0 if r == len(machines) - 1 else 1 + len(ANOMALY_KINDS[machines[r + 1]])
        for ax in axes[r, below: len(kinds) + 1]:  # panels with none under them
            ax.set_xlabel("time (s)")
    fig.suptitle(f"One synthetic clip without a fault and with every fault kind: generator v{version}, "
                 f"{args.machine_id}, {args.snr}, seed {args.seed}", fontsize=9)
    return save(fig, args.out / "synthetic_faults.png", image)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=REPO.parent / "shared" / "real-samples",
                        help="folder with the genuine samples (default: ../shared/real-samples)")
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="where the PNGs go (default: docs/)")
    parser.add_argument("--snr", default="6_dB",
                        help="SNR of the synthetic clips (default: 6_dB; a negative one as --snr=-6_dB)")
    parser.add_argument("--machine-id", default="id_00", help="synthetic machine ID (default: id_00)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    parser.add_argument("--kinds", help="fault per machine in figure 1, e.g. fan=unbalance,pump=clogging "
                                        "(default: the first kind of each)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        kinds = parse_kinds(args.kinds)
        gen = SyntheticMimii(seed=args.seed)
        frontend = make_frontend()
        rows = real_rows(args.real, frontend.sample_rate)
        synth = make_synth(gen)
        paths = [figure_real(rows, synth, frontend, kinds, args, gen.version),
                 figure_faults(synth, frontend, args, gen.version)]
    except MachineSoundError as err:  # a path, file or setting the user can fix: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
