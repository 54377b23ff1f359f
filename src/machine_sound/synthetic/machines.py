"""Synthetic machine sound models, one recipe per MIMII machine type.

Each ID draws its own constants (speed, period, timbre) from `id_parameters`; each clip varies them a little
(speed jitter, component levels, timing). Anomalies follow MIMII's recorded kinds. Most add short, distinct
events to the spectrogram (bursts, rattles, squeaks, flaps, leak hiss, surges), and healthy clips carry a steady
or scattered version of the same sound at a level that varies from clip to clip, so the clip's average spectrum
moves little while the events themselves show the fault. Two lessons from training the default CNN on them:
a fault that differs from normal only by *when* a familiar sound happens, and a fault that is a thin spectral
line under a masking tone, were not learned from a few hundred clips; a band of noise a few hundred Hz wide was.

Each model returns `(running, added)`: the machine's own running sound and the fault's added events (zeros
when healthy). Levels are set from the running sound alone, so a fault makes a clip louder rather than making
everything else quieter. `severity` scales how strong the faults are (1.0 is the default task).
"""

from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

from machine_sound.synthetic.signals import (
    band_noise,
    coloured_noise,
    db,
    gate,
    harmonic_tone,
    place,
    random_bursts,
    resonant_click,
    smooth_random,
    unit_rms,
)

ANOMALY_KINDS: dict[str, tuple[str, ...]] = {
    "fan": ("unbalance", "voltage_change", "clogging"),
    "pump": ("leakage", "contamination", "clogging"),
    "slider": ("rail_damage", "loose_belt", "no_grease"),
    "valve": ("contamination", "leakage"),
}


def stable_seed(*parts: object) -> int:
    """A seed from names and numbers that is the same in every process (Python's hash() is salted)."""
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def id_parameters(machine: str, machine_id: str) -> dict[str, float]:
    """The constants of one machine ID: the same for every clip and every seed."""
    rng = np.random.default_rng(stable_seed("id", machine, machine_id))
    u = rng.uniform
    if machine == "fan":
        return dict(f_rot=u(12, 24), blades=int(rng.integers(5, 10)), harm_decay=u(0.4, 0.8),
                    noise_cut=u(800, 3000), res_freq=u(1000, 4000), tone_db=u(2, 8), wobble=u(0.7, 2.0))
    if machine == "pump":
        return dict(mains=float(rng.choice([50.0, 60.0])), f_shaft=u(24, 48), vanes=int(rng.integers(5, 8)),
                    flow_center=u(400, 1500), flow_width=u(150, 500), pulse_rate=u(0.8, 2.5),
                    pulse_depth=u(0.2, 0.35), leak_center=u(2500, 5500), hum_db=u(-6, 0),
                    crackle=u(3000, 6000))
    if machine == "slider":
        return dict(period=u(0.7, 1.6), move_frac=u(0.55, 0.8), whine=u(300, 900), friction=u(1500, 4000),
                    impact_freq=u(600, 3000), impact_decay=u(0.008, 0.03), damage_pos=u(0.3, 0.7),
                    squeal=u(2000, 5000), belt=u(250, 600))
    if machine == "valve":
        return dict(period=u(0.6, 1.8), open_frac=u(0.3, 0.6), click_freq=u(1000, 5000),
                    click_decay=u(0.003, 0.012), hiss_center=u(2000, 6000), hiss_db=u(-18, -10))
    raise KeyError(machine)


def _fan(rng, p, n, sr, anomaly, sev):
    t = np.arange(n) / sr
    # Healthy fans also drift in speed by a few percent over a clip (supply and load wander slowly), so a
    # voltage change differs by its abrupt steps, not by how much the tones smear in the average spectrum.
    speed = p["f_rot"] * (1 + rng.normal(0, 0.015)) * (1 + rng.uniform(0.0, 0.02) * smooth_random(rng, n, sr, 0.15))
    if anomaly == "voltage_change":
        # Supply voltage steps: the fan speeds up and slows down during the clip.
        steps = np.sort(rng.uniform(0.5, 9.5, 3))
        factor = np.ones(n)
        for s in steps:
            factor[int(s * sr):] *= 1 + rng.choice([-1, 1]) * rng.uniform(0.06, 0.12) * sev
        speed = speed * factor
    bpf = speed * p["blades"]
    amps = [p["harm_decay"] ** k for k in range(5)]
    tones = unit_rms(harmonic_tone(bpf, n, sr, amps, rng) + 0.3 * harmonic_tone(speed, n, sr, [1, 0.5], rng))
    tones *= 1 + 0.05 * np.sin(2 * np.pi * speed * t)
    air = coloured_noise(rng, n, sr, 6.0, lo=p["noise_cut"]) + 0.4 * band_noise(rng, n, sr, p["res_freq"], 300)
    air = unit_rms(air) * db(rng.normal(0, 2.0)) * (1 + 0.1 * smooth_random(rng, n, sr, 0.5))
    rumble = coloured_noise(rng, n, sr, 9.0, lo=60)
    air = air + rng.uniform(0.3, 2.0) * rumble  # steady low rumble of varying level; clogging makes it surge
    level = p["tone_db"] + rng.normal(0, 1.5)
    added = np.zeros(n)
    if anomaly == "unbalance":
        # Rotor unbalance: the tonal part wobbles (beats) at a few Hz and rattles once per revolution.
        wobble = p["wobble"] * rng.uniform(0.8, 1.2)
        tones *= 1 + 0.7 * min(sev, 1.4) * np.sin(2 * np.pi * wobble * t + rng.uniform(0, 6.3))
        tones *= 1 + 0.3 * sev * np.sign(np.sin(2 * np.pi * speed * t))
    if anomaly == "clogging":
        # Clogged intake: intermittent stall surges, a roar of turbulent air while the blade tone sags.
        surge = gate(n, sr, random_bursts(rng, n / sr, int(rng.integers(3, 6)), 0.3, 0.7), ramp_s=0.05)
        tones *= 1 - 0.6 * min(sev, 1.5) * surge / 1.5
        roar = unit_rms(coloured_noise(rng, n, sr, 3.0, lo=p["noise_cut"] / 2))
        added = 2.0 * sev * surge * roar
    return db(level) * tones + air, added


def _pump(rng, p, n, sr, anomaly, sev):
    t = np.arange(n) / sr
    shaft = p["f_shaft"] * (1 + rng.normal(0, 0.01))
    hum = harmonic_tone(2 * p["mains"], n, sr, [1, 0.5, 0.3], rng)
    vane = harmonic_tone(shaft * p["vanes"], n, sr, [1, 0.4, 0.2], rng)
    rate = p["pulse_rate"] * (1 + rng.normal(0, 0.05))
    depth = p["pulse_depth"]
    pulsation = 1 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.3))
    vane_env = np.ones(n)
    if anomaly == "clogging":
        # Clogging: pulsation becomes deep and irregular and the pump starves (vane tone drops) now and then.
        wander = np.cumsum(rate * (1 + 0.6 * smooth_random(rng, n, sr, 0.4))) / sr
        pulsation = 1 + min(0.35 + 0.5 * sev, 0.95) * np.sin(2 * np.pi * wander)
        starve = gate(n, sr, random_bursts(rng, n / sr, int(rng.integers(3, 6)), 0.4, 0.8), ramp_s=0.05)
        vane_env = 1 - 0.8 * min(sev, 1.2) * starve
    flow = band_noise(rng, n, sr, p["flow_center"], p["flow_width"]) * pulsation
    # Healthy pumps also hiss a little in the leak band, steadily and at a level that varies from clip to clip:
    # a leak differs by coming in bursts, not by its average spectrum.
    hiss = band_noise(rng, n, sr, p["leak_center"], 500)
    out = (db(p["hum_db"] + rng.normal(0, 1.5)) * unit_rms(hum)
           + db(rng.normal(0, 1.5)) * unit_rms(vane) * vane_env * pulsation
           + db(rng.normal(-2, 1.5)) * flow
           + rng.uniform(0.3, 1.6) * hiss)
    added = np.zeros(n)
    if anomaly == "leakage":
        # Leakage: short loud bursts of high-frequency hiss.
        bursts = random_bursts(rng, n / sr, int(rng.integers(3, 6)), 0.25, 0.6)
        added = 2.0 * sev * gate(n, sr, bursts, ramp_s=0.02) * hiss
    if anomaly == "contamination":
        # Contamination: clusters of particles hitting the impeller, a dense high-pitched crackle.
        for a, b in random_bursts(rng, n / sr, int(rng.integers(2, 5)), 0.3, 0.8):
            for start in rng.uniform(a, b, int(rng.poisson(150 * (b - a)))):
                freq = p["crackle"] * rng.uniform(0.85, 1.15)
                click = resonant_click(rng, sr, freq, rng.uniform(0.001, 0.003), noise_mix=0.3)
                place(added, click, int(start * sr), gain=12.0 * sev * rng.uniform(0.5, 1.0))
    return out, added


def _slider(rng, p, n, sr, anomaly, sev):
    period = p["period"] * (1 + rng.normal(0, 0.02))
    jitter = 0.2 * sev if anomaly == "loose_belt" else 0.01
    # Stroke boundaries: each half period one stroke (forward, back), with timing jitter.
    edges = [rng.uniform(-period, 0)]
    while edges[-1] < n / sr:
        edges.append(edges[-1] + period / 2 * (1 + rng.normal(0, jitter)))
    velocity = np.zeros(n)
    impacts = np.zeros(n)
    impact = resonant_click(rng, sr, p["impact_freq"], p["impact_decay"])
    knock = resonant_click(rng, sr, p["impact_freq"] * 2.3, p["impact_decay"] / 2, noise_mix=0.3)
    rattles = np.zeros(n)
    squeaks, flaps = [], []
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        move_end = a + (b - a) * p["move_frac"]
        i0, i1 = int(a * sr), int(move_end * sr)
        if i1 > 0 and i0 < n:
            shape = np.sin(np.linspace(0, np.pi, i1 - i0))
            lo, hi = max(i0, 0), min(i1, n)
            velocity[lo:hi] = shape[lo - i0:hi - i0]
        place(impacts, impact, i1, gain=rng.uniform(0.8, 1.2))
        if anomaly == "rail_damage" and i % 2 == 0 and rng.random() < 0.8:
            # A damaged spot on the rail: the carriage rattles over it at the same place of most forward strokes.
            at = a + (move_end - a) * p["damage_pos"]
            for hit in at + np.sort(rng.uniform(0, 0.12, int(rng.integers(4, 8)))):
                place(rattles, knock, int(hit * sr), gain=1.2 * sev * rng.uniform(0.6, 1.0))
        if anomaly == "loose_belt" and rng.random() < 0.35:
            # A loose belt flaps as the stroke starts: its thrum flutters and swells.
            flaps.append((a, a + rng.uniform(0.1, 0.2)))
        if anomaly == "no_grease" and rng.random() < 0.35:
            # A dry rail squeaks in short scrapes while the carriage moves.
            start = rng.uniform(a, a + 0.7 * (move_end - a))
            squeaks.append((start, start + rng.uniform(0.08, 0.2)))
    # Healthy parts also tick now and then (cable chains), some clips often: a knock alone is not a fault, a
    # rattle at the same place of the stroke is.
    for start in rng.uniform(0, n / sr, int(rng.poisson(rng.uniform(0, 25)))):
        place(impacts, knock, int(start * sr), gain=rng.uniform(0.5, 1.5))
    whine = harmonic_tone(p["whine"] * (0.6 + 0.4 * velocity), n, sr, [1, 0.4], rng) * velocity
    friction = band_noise(rng, n, sr, p["friction"], 600) * velocity
    # Healthy rails sing and scrape faintly while moving, at levels that vary from clip to clip; a dry rail
    # scrapes loudly in short squeaks.
    t = np.arange(n) / sr
    squeal_freq = p["squeal"] * (1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 8) * t))
    squeal = harmonic_tone(squeal_freq, n, sr, [1, 0.3], rng)
    scrape = band_noise(rng, n, sr, p["squeal"], 250)
    # The drive belt thrums steadily, at a level that varies from clip to clip.
    thrum = band_noise(rng, n, sr, p["belt"] * rng.uniform(0.95, 1.05), 120)
    impact_gain = 3.0 * db(rng.normal(0, 1.5))
    out = (db(rng.normal(-4, 1.5)) * unit_rms(whine) + db(rng.normal(-2, 1.5)) * unit_rms(friction)
           + impact_gain * impacts + rng.uniform(0.05, 0.4) * squeal * velocity ** 2
           + rng.uniform(0.0, 1.0) * scrape * velocity + rng.uniform(0.1, 2.0) * thrum)
    added = impact_gain * rattles
    if flaps:
        flutter = 1 + np.sin(2 * np.pi * rng.uniform(15, 30) * t)
        added = added + 2.5 * sev * gate(n, sr, flaps, ramp_s=0.02) * flutter * thrum
    if squeaks:
        added = added + 2.0 * sev * gate(n, sr, squeaks, ramp_s=0.02) * scrape
    return out, added


def _valve(rng, p, n, sr, anomaly, sev):
    period = p["period"] * (1 + rng.normal(0, 0.02))
    jitter = 0.15 * sev if anomaly == "contamination" else 0.03
    open_click = resonant_click(rng, sr, p["click_freq"], p["click_decay"])
    close_click = resonant_click(rng, sr, p["click_freq"] * 0.8, p["click_decay"] * 1.5)
    clicks, chatter = np.zeros(n), np.zeros(n)
    open_intervals, leaks = [], []
    bounce_rate = rng.uniform(0, 0.2)
    start = rng.uniform(0, period)
    while start < n / sr:
        open_len = period * p["open_frac"] * (1 + rng.normal(0, jitter))
        end = start + max(open_len, 0.05)
        open_intervals.append((start, end))
        place(clicks, open_click, int(start * sr), gain=0.6 * rng.uniform(0.9, 1.1))
        place(clicks, close_click, int(end * sr), gain=rng.uniform(0.9, 1.1))
        next_start = start + period * (1 + rng.normal(0, jitter))
        if rng.random() < bounce_rate:
            # Healthy valves bounce once now and then as they close; chatter is a cluster of bounces.
            place(clicks, close_click, int((end + rng.uniform(0.02, 0.15)) * sr), gain=0.9 * rng.uniform(0.7, 1.0))
        if anomaly == "contamination" and rng.random() < 0.6:
            # Debris in the seat: the valve chatters as it closes (2-4 bounces within 150 ms).
            for bounce_at in end + np.sort(rng.uniform(0.02, 0.15, int(rng.integers(2, 5)))):
                place(chatter, close_click, int(bounce_at * sr), gain=0.9 * sev * rng.uniform(0.7, 1.0))
        if anomaly == "leakage" and rng.random() < 0.6:
            # A leaking seat hisses loudly through part of the closed phase.
            gap = next_start - end
            leak_start = end + rng.uniform(0.05, 0.4) * gap
            leaks.append((leak_start, leak_start + rng.uniform(0.3, 0.6) * gap))
        start = next_start
    open_env = gate(n, sr, open_intervals, ramp_s=0.005)
    hiss = band_noise(rng, n, sr, p["hiss_center"], 900)
    hiss_level = db(p["hiss_db"] + rng.normal(0, 3.0))  # the flow, and so the hiss, varies between clips
    click_gain = 4.0 * db(rng.normal(0, 2.0))
    out = click_gain * clicks + hiss_level * hiss * open_env
    # Every seat seeps a little, steadily and at a level that varies from clip to clip: a leak differs by
    # hissing loudly in spells while closed, not by its average spectrum.
    seep = band_noise(rng, n, sr, p["hiss_center"] * rng.uniform(0.9, 1.1), 400)
    out = out + hiss_level * rng.uniform(0.0, 1.5) * seep
    added = click_gain * chatter
    if leaks:
        added = added + 4.0 * sev * hiss_level * gate(n, sr, leaks, ramp_s=0.03) * seep
    return out, added


MACHINE_MODELS: dict[str, Callable] = {"fan": _fan, "pump": _pump, "slider": _slider, "valve": _valve}


def factory_background(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Non-stationary factory noise: pinkish broadband with drifting level, mains hum, distant impacts."""
    broadband = coloured_noise(rng, n, sr, rng.uniform(2.0, 5.0)) * np.exp(0.25 * smooth_random(rng, n, sr, 0.3))
    hum = unit_rms(harmonic_tone(rng.choice([50.0, 60.0]), n, sr, [1, 0.6, 0.3, 0.2], rng))
    impacts = np.zeros(n)
    for start in rng.uniform(0, n / sr, int(rng.poisson(3))):
        thud = resonant_click(rng, sr, rng.uniform(80, 400), rng.uniform(0.02, 0.08), noise_mix=0.1)
        place(impacts, thud, int(start * sr), gain=rng.uniform(1.0, 4.0))
    drone = unit_rms(harmonic_tone(rng.uniform(150, 600) * (1 + 0.02 * smooth_random(rng, n, sr, 0.1)),
                                   n, sr, [1, 0.5], rng))
    return unit_rms(broadband + db(rng.uniform(-20, -10)) * hum + db(rng.uniform(-25, -12)) * drone + impacts)
