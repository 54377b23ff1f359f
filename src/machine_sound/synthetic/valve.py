"""Synthetic solenoid valve: open and close clicks in a cycle, flow hiss and the coil's buzz while open, a faint
steady seep, an occasional single bounce on closing and a few steady lines of the rig around it; the ID sets the
period, the click and hiss timbre and the lines.

Faults, after MIMII's recorded kind (contamination; Purohit et al. 2019, arXiv 1909.09347):
- `contamination`: debris in the valve: the plunger sticks and frees, so the clicks come at irregular times, and
  in most cycles the seat does not close fully: a softer closing click and flow hiss going on, lower, through the
  closed phase.
- `contamination_chatter`, `leakage`: generator v7's added events (the valve chattering as it closes; loud hiss
  spells through the closed phase), kept so that detectors also meet faults that are events on top of an
  unchanged machine.
"""

from __future__ import annotations

import numpy as np

from machine_sound.synthetic.signals import (
    band_noise,
    db,
    gate,
    harmonic_tone,
    place,
    resonant_click,
    steady_lines,
)

KINDS = ("contamination", "contamination_chatter", "leakage")


def parameters(rng: np.random.Generator) -> dict:
    """One valve ID's constants: cycle period (s), open fraction, click and hiss timbre, coil buzz, lines."""
    u = rng.uniform
    return dict(period=u(0.6, 1.8), open_frac=u(0.3, 0.6), click_freq=u(1000, 5000), click_decay=u(0.003, 0.012),
                hiss_center=u(2000, 6000), hiss_db=u(-32, -24), mains=float(rng.choice([50.0, 60.0])),
                buzz_db=u(-30, -20), lines=list(u(300, 6000, 3)), line_db=list(u(-36, -26, 3)))


def sound(rng, fault_rng, p, n, sr, fault, sev):
    """(running, added) for one clip: `rng` draws the healthy sound, `fault_rng` only the fault's choices."""
    period = p["period"] * (1 + rng.normal(0, 0.02))
    count = int(2 * n / sr / period) + 8  # enough cycles even when debris shortens some
    z_open, z_next = rng.standard_normal(count), rng.standard_normal(count)
    open_gain, close_gain = rng.uniform(0.9, 1.1, count), rng.uniform(0.9, 1.1, count)
    bounce, bounce_at, bounce_gain = rng.random(count), rng.uniform(0.02, 0.15, count), rng.uniform(0.7, 1.0, count)
    bounce_rate, start = rng.uniform(0, 0.2), rng.uniform(0, period)
    open_click = resonant_click(rng, sr, p["click_freq"], p["click_decay"])
    close_click = resonant_click(rng, sr, p["click_freq"] * 0.8, p["click_decay"] * 1.5)
    dirty = fault == "contamination"
    timing = fault_rng.normal(0, 0.12 * sev, (2, count)) if dirty else np.zeros((2, count))
    stuck = fault_rng.random(count) < 0.7 if dirty else np.zeros(count, dtype=bool)
    clicks, cycles = np.zeros(n), []
    for i in range(count):
        if start >= n / sr:
            break
        end = start + max(period * p["open_frac"] * (1 + 0.03 * z_open[i] + timing[0, i]), 0.05)
        next_start = max(start + period * (1 + 0.03 * z_next[i] + timing[1, i]), end + 0.05)
        cycles.append((start, end, next_start))
        place(clicks, open_click, int(start * sr), gain=0.6 * open_gain[i])
        place(clicks, close_click, int(end * sr), gain=close_gain[i] * (0.3 if stuck[i] else 1.0))
        if bounce[i] < bounce_rate:  # healthy valves bounce once now and then as they close
            place(clicks, close_click, int((end + bounce_at[i]) * sr), gain=0.9 * bounce_gain[i])
        start = next_start
    open_env = gate(n, sr, [(a, b) for a, b, _ in cycles], ramp_s=0.005)
    ajar = gate(n, sr, [(b, c) for (_, b, c), s in zip(cycles, stuck) if s], ramp_s=0.02)
    hiss = band_noise(rng, n, sr, p["hiss_center"], 900)
    hiss_level = db(p["hiss_db"] + rng.normal(0, 3.0))  # the flow, and so the hiss, varies between clips
    click_gain = 4.0 * db(rng.normal(0, 2.0))
    # Every seat seeps a little, steadily and at a level that varies from clip to clip.
    seep = band_noise(rng, n, sr, p["hiss_center"] * rng.uniform(0.9, 1.1), 400)
    buzz = harmonic_tone(2 * p["mains"], n, sr, [1.0, 0.6, 0.4, 0.2], rng)  # an AC coil buzzes while energised
    out = (click_gain * clicks + hiss_level * hiss * (open_env + 0.5 * min(sev, 1.6) * ajar)
           + hiss_level * rng.uniform(0.0, 1.5) * seep + db(p["buzz_db"]) * buzz * open_env
           + steady_lines(rng, n, sr, p["lines"], p["line_db"]))
    added = np.zeros(n)
    if fault == "contamination_chatter":
        for _, end, _ in cycles:
            if fault_rng.random() < 0.6:  # debris in the seat: 2-4 bounces within 150 ms of closing
                for at in end + np.sort(fault_rng.uniform(0.02, 0.15, int(fault_rng.integers(2, 5)))):
                    place(added, close_click, int(at * sr), gain=click_gain * 0.9 * sev * fault_rng.uniform(0.7, 1.0))
    if fault == "leakage":
        leaks = []
        for _, end, next_start in cycles:
            if fault_rng.random() < 0.6:  # a leaking seat hisses loudly through part of the closed phase
                gap = next_start - end
                leak_start = end + fault_rng.uniform(0.05, 0.4) * gap
                leaks.append((leak_start, leak_start + fault_rng.uniform(0.3, 0.6) * gap))
        # A jet through a nearly closed seat: louder than the open valve's flow (14 dB above it).
        added = 4.0 * sev * db(14.0) * hiss_level * gate(n, sr, leaks, ramp_s=0.03) * seep
    return out, added
