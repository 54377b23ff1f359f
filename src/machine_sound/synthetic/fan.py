"""Synthetic fan: blade-pass tone and its harmonics, the shaft's orders and the motor's electrical hum, all
locked to a slowly drifting speed, over aerodynamic broadband noise, rumble and a few steady structural lines.

Faults, after MIMII's recorded kinds (Purohit et al. 2019, arXiv 1909.09347):
- `unbalance`: the rotor shakes the housing once per revolution, so the once-per-revolution order grows and the
  mechanical sound is amplitude-modulated at the rotation rate and its second harmonic (it "beats").
- `voltage_change`: another supply voltage runs the motor at another speed, and every speed-locked tone (blade
  pass, orders, hum sidebands) moves with it, while the mains hum itself stays.
- `clogging`: a blocked intake stalls now and then: a roar of turbulent air while the blade tone sags (an added
  event, kept from generator v7).
"""

from __future__ import annotations

import numpy as np

from machine_sound.synthetic.signals import (
    band_noise,
    coloured_noise,
    db,
    gate,
    harmonic_tone,
    motor_hum,
    random_bursts,
    smooth_random,
    steady_lines,
    unit_rms,
)

KINDS = ("unbalance", "voltage_change", "clogging")


def parameters(rng: np.random.Generator) -> dict:
    """One fan ID's constants: speed (Hz), blade count, timbre, the levels of its shaft orders and lines."""
    u = rng.uniform
    return dict(f_rot=u(12, 24), blades=int(rng.integers(5, 10)), harm_decay=u(0.4, 0.8), noise_cut=u(800, 3000),
                res_freq=u(1000, 4000), tone_db=u(2, 8), mains=float(rng.choice([50.0, 60.0])), hum_db=u(-14, -6),
                orders=list(u(0.05, 0.4, 6)), lines=list(u(300, 6000, 4)), line_db=list(u(-26, -16, 4)))


def sound(rng, fault_rng, p, n, sr, fault, sev):
    """(running, added) for one clip: `rng` draws the healthy sound, `fault_rng` only the fault's choices, so a
    clip rendered with and without a fault differs by the fault alone."""
    # Healthy fans drift in speed by a few percent over a clip: supply and load wander slowly.
    speed = p["f_rot"] * (1 + rng.normal(0, 0.015)) * (1 + rng.uniform(0.0, 0.02) * smooth_random(rng, n, sr, 0.15))
    orders = np.array(p["orders"])
    if fault == "voltage_change":
        speed = speed * max(1 + fault_rng.choice([-1, 1]) * fault_rng.uniform(0.06, 0.12) * sev, 0.3)
    if fault == "unbalance":
        orders[:2] *= [1 + 3 * sev, 1 + 1.5 * sev]  # the 1x order and, less, the 2x
    blade = harmonic_tone(speed * p["blades"], n, sr, [p["harm_decay"] ** k for k in range(5)], rng)
    tones = unit_rms(blade + 0.3 * harmonic_tone(speed, n, sr, orders, rng))
    revolution = 2 * np.pi * np.cumsum(speed) / sr + rng.uniform(0, 2 * np.pi)
    shake = 1 + 0.05 * np.sin(revolution)  # every real rotor is a little out of balance
    if fault == "unbalance":
        depth = min(0.5 * sev, 0.9)
        shake = 1 + depth * (np.sin(revolution) + 0.4 * np.sin(2 * revolution + fault_rng.uniform(0, 6.3))) / 1.4
    air = coloured_noise(rng, n, sr, 6.0, lo=p["noise_cut"]) + 0.4 * band_noise(rng, n, sr, p["res_freq"], 300)
    air = unit_rms(air) * db(rng.normal(0, 2.0)) * (1 + 0.1 * smooth_random(rng, n, sr, 0.5))
    air = air + rng.uniform(0.3, 2.0) * coloured_noise(rng, n, sr, 9.0, lo=60)  # low rumble of varying level
    hum = db(p["hum_db"] + rng.normal(0, 1.5)) * motor_hum(rng, n, sr, p["mains"], speed)
    lines = steady_lines(rng, n, sr, p["lines"], p["line_db"])
    level = db(p["tone_db"] + rng.normal(0, 1.5))
    added = np.zeros(n)
    if fault == "clogging":
        surge = gate(n, sr, random_bursts(fault_rng, n / sr, int(fault_rng.integers(3, 6)), 0.3, 0.7), ramp_s=0.05)
        tones = tones * (1 - 0.6 * min(sev, 1.5) * surge / 1.5)
        roar = unit_rms(coloured_noise(fault_rng, n, sr, 3.0, lo=p["noise_cut"] / 2))
        added = 2.0 * sev * surge * roar
    return (level * tones + air) * shake + hum + lines, added
