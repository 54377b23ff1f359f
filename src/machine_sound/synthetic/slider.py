"""Synthetic slider (slide rail): strokes back and forth, each with motor whine and its harmonics, friction noise
and an end-stop impact; a belt thrum, a faint rail squeal and scrape, scattered ticks, the drive's hum and a few
steady structural lines; the ID sets the period, timbre and lines.

Faults, after MIMII's recorded kinds (Purohit et al. 2019, arXiv 1909.09347):
- `rail_damage`: a damaged stretch of rail: the carriage grinds over it in a train of short broadband impacts,
  at the same place of the rail in both directions.
- `loose_belt`: a slack belt slips and catches, so the strokes come at irregular times and last irregularly.
- `no_grease`: a dry rail squeals while the carriage moves: a stick-slip tone whose pitch follows the speed.
- `rail_damage_rattle`, `loose_belt_flap`, `no_grease_scrape`: generator v7's added events (a rattle at one place
  of most forward strokes; the belt's thrum flapping as strokes start; short loud scrapes), kept so that
  detectors also meet faults that are events on top of an unchanged machine.
"""

from __future__ import annotations

import numpy as np

from machine_sound.synthetic.signals import (
    band_noise,
    db,
    gate,
    harmonic_tone,
    motor_hum,
    place,
    resonant_click,
    steady_lines,
    unit_rms,
    velocity_profile,
)

KINDS = ("rail_damage", "loose_belt", "no_grease", "rail_damage_rattle", "loose_belt_flap", "no_grease_scrape")


def parameters(rng: np.random.Generator) -> dict:
    """One slider ID's constants: stroke period (s), moving fraction, whine and band frequencies (Hz), lines."""
    u = rng.uniform
    return dict(period=u(1.2, 3.0), move_frac=u(0.55, 0.8), whine=u(300, 900), whine_amps=[1.0, u(0.2, 0.6),
                u(0.1, 0.3)], friction=u(1500, 4000), impact_freq=u(600, 3000), impact_decay=u(0.008, 0.03),
                damage_pos=u(0.3, 0.7), squeal=u(2000, 5000), belt=u(250, 600), mains=float(rng.choice([50.0, 60.0])),
                hum_db=u(-22, -14), lines=list(u(300, 6000, 4)), line_db=list(u(-30, -20, 4)))


def sound(rng, fault_rng, p, n, sr, fault, sev):
    """(running, added) for one clip: `rng` draws the healthy sound, `fault_rng` only the fault's choices."""
    t = np.arange(n) / sr
    period = p["period"] * (1 + rng.normal(0, 0.02))
    count = int(4 * n / sr / period) + 8  # enough half-period strokes even when a slack belt shortens some
    jitter, gains, first = rng.standard_normal(count), rng.uniform(0.8, 1.2, count), rng.uniform(-period, 0)
    slack = fault_rng.normal(0, 0.15 * sev, count) if fault == "loose_belt" else 0.0
    edges = first + np.concatenate([[0.0], np.cumsum(period / 2 * np.clip(1 + 0.01 * jitter + slack, 0.4, None))])
    edges = edges[:np.searchsorted(edges, n / sr) + 1]
    strokes = [(a, a + (b - a) * p["move_frac"]) for a, b in zip(edges[:-1], edges[1:])]
    velocity = velocity_profile(n, sr, strokes)
    impacts = np.zeros(n)
    impact = resonant_click(rng, sr, p["impact_freq"], p["impact_decay"])
    knock = resonant_click(rng, sr, p["impact_freq"] * 2.3, p["impact_decay"] / 2, noise_mix=0.3)
    for (_, end), gain in zip(strokes, gains):
        place(impacts, impact, int(end * sr), gain=gain)
    # Healthy parts tick now and then (cable chains), some clips often: a knock alone is not a fault.
    for start in rng.uniform(0, n / sr, int(rng.poisson(rng.uniform(0, 25)))):
        place(impacts, knock, int(start * sr), gain=rng.uniform(0.5, 1.5))
    whine = harmonic_tone(p["whine"] * (0.6 + 0.4 * velocity), n, sr, p["whine_amps"], rng) * velocity
    friction = band_noise(rng, n, sr, p["friction"], 600) * velocity
    squeal = harmonic_tone(p["squeal"] * (1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 8) * t)), n, sr, [1, 0.3], rng)
    scrape = band_noise(rng, n, sr, p["squeal"], 250)
    thrum = band_noise(rng, n, sr, p["belt"] * rng.uniform(0.95, 1.05), 120)
    impact_gain = 3.0 * db(rng.normal(0, 1.5))
    out = (db(rng.normal(-4, 1.5)) * unit_rms(whine) + db(rng.normal(-2, 1.5)) * unit_rms(friction)
           + impact_gain * impacts + rng.uniform(0.05, 0.4) * squeal * velocity ** 2
           + rng.uniform(0.0, 1.0) * scrape * velocity + rng.uniform(0.1, 2.0) * thrum
           + db(p["hum_db"]) * motor_hum(rng, n, sr, p["mains"], 15 + 10 * velocity)
           + steady_lines(rng, n, sr, p["lines"], p["line_db"]))
    return out, _added(fault_rng, p, n, sr, fault, sev, strokes, velocity, thrum, scrape, impact_gain)


def _added(fault_rng, p, n, sr, fault, sev, strokes, velocity, thrum, scrape, impact_gain):
    """The fault's sound on top of the running one; impacts at the scale of this clip's end-stop impacts."""
    added = np.zeros(n)
    if fault == "rail_damage":
        # A damaged stretch of rail, from `start` to `start + length` of the travel: the carriage grinds over it
        # in a train of short broadband impacts, on forward strokes and (mirrored) on return strokes. A half-sine
        # speed profile has covered the fraction x of the way at time fraction arccos(1 - 2x) / pi.
        start, length = fault_rng.uniform(0.15, 0.55), fault_rng.uniform(0.15, 0.3)
        for i, (a, end) in enumerate(strokes):
            if fault_rng.random() < 0.9:
                lo, hi = (start, start + length) if i % 2 == 0 else (1 - start - length, 1 - start)
                t0, t1 = (a + (end - a) * np.arccos(1 - 2 * x) / np.pi for x in (lo, hi))
                for at in fault_rng.uniform(t0, t1, int(fault_rng.poisson(300 * (t1 - t0)))):
                    hit = resonant_click(fault_rng, sr, fault_rng.uniform(1500, 7000), fault_rng.uniform(0.001, 0.003),
                                         noise_mix=0.95)
                    place(added, hit, int(at * sr), gain=impact_gain * 2.0 * sev * fault_rng.uniform(0.3, 1.0))
    if fault == "no_grease":
        dry = [(a, end) for a, end in strokes if fault_rng.random() < 0.85]
        pitch = p["squeal"] * fault_rng.uniform(0.9, 1.1) * (0.95 + 0.1 * velocity)
        stick_slip = 1 + 0.6 * np.sin(2 * np.pi * fault_rng.uniform(30, 60) * np.arange(n) / sr)
        tone = harmonic_tone(pitch, n, sr, [1.0, 0.5, 0.25], fault_rng) * stick_slip
        added = 2.0 * sev * gate(n, sr, dry, ramp_s=0.03) * np.clip(velocity / 0.3, 0, 1) * tone
    if fault == "rail_damage_rattle":
        knock = resonant_click(fault_rng, sr, p["impact_freq"] * 2.3, p["impact_decay"] / 2, noise_mix=0.3)
        for a, end in strokes[::2]:
            if fault_rng.random() < 0.8:
                at = a + (end - a) * p["damage_pos"]
                for hit in at + np.sort(fault_rng.uniform(0, 0.12, int(fault_rng.integers(4, 8)))):
                    place(added, knock, int(hit * sr), gain=impact_gain * 1.2 * sev * fault_rng.uniform(0.6, 1.0))
    if fault == "loose_belt_flap":
        flaps = [(a, a + fault_rng.uniform(0.1, 0.2)) for a, _ in strokes if fault_rng.random() < 0.35]
        flutter = 1 + np.sin(2 * np.pi * fault_rng.uniform(15, 30) * np.arange(n) / sr)
        added = 2.5 * sev * gate(n, sr, flaps, ramp_s=0.02) * flutter * thrum
    if fault == "no_grease_scrape":
        squeaks = []
        for a, end in strokes:
            if fault_rng.random() < 0.35:
                start = fault_rng.uniform(a, a + 0.7 * (end - a))
                squeaks.append((start, start + fault_rng.uniform(0.08, 0.2)))
        added = 2.0 * sev * gate(n, sr, squeaks, ramp_s=0.02) * scrape
    return added
