"""Synthetic pump: the motor's electrical hum with its speed sidebands, the vane-pass tone and its harmonics, the
shaft's orders, flow noise that pulsates with the pressure cycle, a faint steady leak-band hiss and a few steady
structural lines; the ID sets the speed, vane count, harmonic balance and lines.

Faults, after MIMII's recorded kinds (Purohit et al. 2019, arXiv 1909.09347):
- `clogging`: the impeller labours, so the speed sags and recovers slowly and irregularly (every speed-locked
  tone wanders in frequency), the vane tone's upper harmonics grow against its fundamental, the flow pulsates
  deeply and the pump starves now and then.
- `contamination`: particles rub in the impeller, so the speed wavers quickly and irregularly and the shaft's
  orders grow (rubbing excites the once-per-revolution harmonics).
- `leakage`: fluid forced out through a leak hisses louder at every pressure peak: a high hiss that follows the
  pressure cycle.
- `leakage_bursts`, `contamination_crackle`: generator v7's added events (short loud hiss bursts; clusters of
  particle impacts), kept so that detectors also meet faults that are events on top of an unchanged machine.
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
    random_bursts,
    resonant_click,
    smooth_random,
    steady_lines,
    unit_rms,
)

KINDS = ("clogging", "contamination", "leakage", "leakage_bursts", "contamination_crackle")


def parameters(rng: np.random.Generator) -> dict:
    """One pump ID's constants: mains and shaft rate (Hz), vanes, harmonic balance, flow and leak bands, lines."""
    u = rng.uniform
    return dict(mains=float(rng.choice([50.0, 60.0])), f_shaft=u(24, 48), vanes=int(rng.integers(5, 8)),
                vane_amps=[1.0, u(0.2, 0.5), u(0.1, 0.3), u(0.05, 0.15)], orders=list(u(0.05, 0.3, 4)),
                flow_center=u(400, 1500), flow_width=u(150, 500), pulse_rate=u(0.8, 2.5), pulse_depth=u(0.2, 0.35),
                leak_center=u(2500, 5500), hum_db=u(-6, 0), crackle=u(3000, 6000),
                lines=list(u(300, 6000, 4)), line_db=list(u(-26, -16, 4)))


def sound(rng, fault_rng, p, n, sr, fault, sev):
    """(running, added) for one clip: `rng` draws the healthy sound, `fault_rng` only the fault's choices."""
    t = np.arange(n) / sr
    shaft = p["f_shaft"] * (1 + rng.normal(0, 0.01)) * (1 + 0.002 * smooth_random(rng, n, sr, 0.3))
    pressure = np.sin(2 * np.pi * p["pulse_rate"] * (1 + rng.normal(0, 0.05)) * t + rng.uniform(0, 6.3))
    pulsation = 1 + p["pulse_depth"] * pressure
    vane_amps, order_amps, vane_env = np.array(p["vane_amps"]), np.array(p["orders"]), np.ones(n)
    if fault == "clogging":
        shaft = shaft * (1 - 0.03 * min(sev, 3.0) * (0.5 + 0.5 * smooth_random(fault_rng, n, sr, 0.4)))
        vane_amps[1:] *= 1 + 2.0 * sev
        wander = np.cumsum(p["pulse_rate"] * (1 + 0.6 * smooth_random(fault_rng, n, sr, 0.4))) / sr
        pulsation = 1 + min(0.35 + 0.5 * sev, 0.95) * np.sin(2 * np.pi * wander)
        starve = gate(n, sr, random_bursts(fault_rng, n / sr, int(fault_rng.integers(3, 6)), 0.4, 0.8), ramp_s=0.05)
        vane_env = 1 - 0.8 * min(sev, 1.2) * starve
    if fault == "contamination":
        shaft = shaft * (1 + 0.012 * min(sev, 3.0) * smooth_random(fault_rng, n, sr, 4.0))
        order_amps *= 1 + 4.0 * sev
    hum = motor_hum(rng, n, sr, p["mains"], shaft)
    vane = harmonic_tone(shaft * p["vanes"], n, sr, vane_amps, rng)
    orders = harmonic_tone(shaft, n, sr, order_amps, rng)
    flow = band_noise(rng, n, sr, p["flow_center"], p["flow_width"]) * pulsation
    # Healthy pumps hiss a little in the leak band, steadily and at a level that varies from clip to clip.
    hiss = band_noise(rng, n, sr, p["leak_center"], 500)
    vane_level = db(rng.normal(0, 1.5))
    out = (db(p["hum_db"] + rng.normal(0, 1.5)) * hum + vane_level * unit_rms(vane) * vane_env * pulsation
           + 0.5 * vane_level * orders + db(rng.normal(-2, 1.5)) * flow + rng.uniform(0.1, 0.5) * hiss
           + steady_lines(rng, n, sr, p["lines"], p["line_db"]))
    added = np.zeros(n)
    if fault == "leakage":
        leak = band_noise(fault_rng, n, sr, p["leak_center"] * fault_rng.uniform(0.9, 1.1), 700)
        added = 1.5 * sev * np.clip(pressure, 0, None) ** 2 * leak
    if fault == "leakage_bursts":
        bursts = random_bursts(fault_rng, n / sr, int(fault_rng.integers(3, 6)), 0.25, 0.6)
        added = 2.0 * sev * gate(n, sr, bursts, ramp_s=0.02) * hiss
    if fault == "contamination_crackle":
        for a, b in random_bursts(fault_rng, n / sr, int(fault_rng.integers(2, 5)), 0.3, 0.8):
            for start in fault_rng.uniform(a, b, int(fault_rng.poisson(150 * (b - a)))):
                freq = p["crackle"] * fault_rng.uniform(0.85, 1.15)
                click = resonant_click(fault_rng, sr, freq, fault_rng.uniform(0.001, 0.003), noise_mix=0.3)
                place(added, click, int(start * sr), gain=12.0 * sev * fault_rng.uniform(0.5, 1.0))
    return out, added
