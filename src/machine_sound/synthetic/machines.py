"""Synthetic machine sounds: one recipe module per MIMII machine type (`fan`, `pump`, `slider`, `valve`), the
factory background they are recorded in, and `render`, which plays one clip of one ID with or without a fault.

Each ID draws its own constants (speed, period, timbre, harmonic balance, steady tonal lines) from
`id_parameters`, so telling IDs apart is learnable; each clip varies them a little (speed drift, levels, timing).
Faults follow MIMII's recorded kinds. Most change the machine's running sound, as real faults do (a tone that
wanders or moves, a beat at the rotation rate, irregular strokes, a squeal while moving, a valve that no longer
closes); generator v7's added-event kinds (bursts, crackle, rattles, flaps, scrapes, chatter) are kept beside
them. A clip's kind is drawn at random from its machine's list (`ANOMALY_KINDS`). The parameters were chosen by
how the faults sound and look beside genuine MIMII / DCASE 2020 clips (`benchmarks/real_vs_synthetic.py`), not
by any detector's score.

A recipe is `sound(rng, fault_rng, params, n, sr, fault, severity) -> (running, added)`: the machine's own
running sound (which a fault may change) and the fault's added events (zeros when there are none). `rng` draws
every healthy choice and `fault_rng` only the fault's, so the same clip with and without its fault differs by
the fault alone. Levels are set from the running sound, so added events make a clip louder instead of making
everything else quieter. `severity` scales every kind (1.0 is the default task).
"""

from __future__ import annotations

import zlib

import numpy as np

from machine_sound.synthetic import fan, pump, slider, valve
from machine_sound.synthetic.signals import (
    coloured_noise,
    db,
    harmonic_tone,
    place,
    resonant_click,
    smooth_random,
    steady_lines,
    unit_rms,
)

RECIPES = {"fan": fan, "pump": pump, "slider": slider, "valve": valve}
ANOMALY_KINDS: dict[str, tuple[str, ...]] = {machine: recipe.KINDS for machine, recipe in RECIPES.items()}


def stable_seed(*parts: object) -> int:
    """A seed from names and numbers that is the same in every process (Python's hash() is salted)."""
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def id_parameters(machine: str, machine_id: str) -> dict:
    """The constants of one machine ID: the same for every clip and every seed."""
    return RECIPES[machine].parameters(np.random.default_rng(stable_seed("id", machine, machine_id)))


def render(machine: str, machine_id: str, n: int, sr: int, fault: str | None = None, severity: float = 1.0,
           key: tuple = ()) -> tuple[np.ndarray, np.ndarray]:
    """One clip of `machine`/`machine_id`, `n` samples at `sr` Hz: `(running, added)`, float64 (n,), not yet
    levelled. `key` names the clip (the same key gives the same clip); `fault` is one of `ANOMALY_KINDS[machine]`
    or None. Raises ValueError for an unknown machine or kind, or a bad length, rate or severity."""
    if machine not in RECIPES:
        raise ValueError(f"unknown machine '{machine}'; valid: {', '.join(RECIPES)}")
    if not (isinstance(n, int) and n > 0 and sr > 0 and 0 < severity < float("inf")):
        raise ValueError(f"n={n!r} and sr={sr!r} must be positive, severity={severity!r} positive and finite")
    if fault is not None and fault not in ANOMALY_KINDS[machine]:
        raise ValueError(f"unknown {machine} fault '{fault}'; valid: {', '.join(ANOMALY_KINDS[machine])}")
    rng = np.random.default_rng(stable_seed("machine", machine, machine_id, *key))
    fault_rng = np.random.default_rng(stable_seed("fault", machine, machine_id, *key))
    return RECIPES[machine].sound(rng, fault_rng, id_parameters(machine, machine_id), n, sr, fault, severity)


# The factory's own steady lines (other machines, ventilation): the same frequencies in every clip, as in a
# real plant, at levels that vary from clip to clip.
_FACTORY = np.random.default_rng(stable_seed("factory lines"))
FACTORY_LINES = tuple(float(f) for f in np.sort(_FACTORY.uniform(200, 7000, 6)))


def factory_background(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Non-stationary factory noise, unit RMS: pinkish broadband of drifting level, mains hum, distant impacts, a
    drifting drone and the factory's steady lines (`FACTORY_LINES`)."""
    broadband = coloured_noise(rng, n, sr, rng.uniform(2.0, 5.0)) * np.exp(0.25 * smooth_random(rng, n, sr, 0.3))
    hum = unit_rms(harmonic_tone(rng.choice([50.0, 60.0]), n, sr, [1, 0.6, 0.3, 0.2], rng))
    impacts = np.zeros(n)
    for start in rng.uniform(0, n / sr, int(rng.poisson(3))):
        thud = resonant_click(rng, sr, rng.uniform(80, 400), rng.uniform(0.02, 0.08), noise_mix=0.1)
        place(impacts, thud, int(start * sr), gain=rng.uniform(1.0, 4.0))
    drone = unit_rms(harmonic_tone(rng.uniform(150, 600) * (1 + 0.02 * smooth_random(rng, n, sr, 0.1)),
                                   n, sr, [1, 0.5], rng))
    lines = steady_lines(rng, n, sr, FACTORY_LINES, rng.uniform(-34, -22, len(FACTORY_LINES)))
    return unit_rms(broadband + db(rng.uniform(-20, -10)) * hum + db(rng.uniform(-25, -12)) * drone + impacts + lines)
