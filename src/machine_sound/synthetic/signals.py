"""Signal building blocks for the synthetic machine sounds (numpy, float64, mono).

Kept separate from the machine models so each machine reads as a recipe: tones, shaped noise, envelopes and
short events placed in time.
"""

from __future__ import annotations

import numpy as np


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x)))


def unit_rms(x: np.ndarray) -> np.ndarray:
    """Scale to unit RMS so components can be mixed by level in dB."""
    level = rms(x)
    return x / level if level > 0 else x


def db(level_db: float) -> float:
    return float(10.0 ** (level_db / 20.0))


def shaped_noise(rng: np.random.Generator, n: int, sr: int, gain_fn) -> np.ndarray:
    """White noise filtered in the frequency domain by `gain_fn(freqs_hz) -> amplitude`; unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    return unit_rms(np.fft.irfft(spectrum * gain_fn(freqs), n))


def band_noise(rng: np.random.Generator, n: int, sr: int, center: float, width: float) -> np.ndarray:
    """Noise with a Gaussian band around `center` Hz (`width` is the standard deviation in Hz)."""
    return shaped_noise(rng, n, sr, lambda f: np.exp(-0.5 * ((f - center) / width) ** 2))


def coloured_noise(rng: np.random.Generator, n: int, sr: int, slope_db_oct: float, lo: float = 20.0) -> np.ndarray:
    """Noise whose spectrum falls by `slope_db_oct` dB per octave above `lo` Hz (3 dB/oct is pink)."""
    exponent = -slope_db_oct / (20.0 * np.log10(2.0))
    return shaped_noise(rng, n, sr, lambda f: np.maximum(f, lo) ** exponent)


def smooth_random(rng: np.random.Generator, n: int, sr: int, rate_hz: float) -> np.ndarray:
    """Zero-mean, unit-std random curve that varies at about `rate_hz` (low-passed noise), drawn on a coarse grid
    of 20 points per `rate_hz` period (at least 50 per second) and interpolated to `n` samples at `sr` Hz."""
    coarse_sr = max(20.0 * rate_hz, 50.0)
    m = int(np.ceil(n * coarse_sr / sr)) + 2
    x = shaped_noise(rng, m, coarse_sr, lambda f: np.exp(-0.5 * (f / rate_hz) ** 2))
    x = np.interp(np.arange(n) * (coarse_sr / sr), np.arange(m), x)
    return (x - x.mean()) / (x.std() + 1e-12)


def harmonic_tone(freq: np.ndarray | float, n: int, sr: int, amps, rng: np.random.Generator) -> np.ndarray:
    """Sum of harmonics k*freq(t) with amplitudes `amps`, random phases; `freq` may vary per sample.

    Harmonic k is the imaginary part of z**k with z = exp(i*phase): one complex exponential serves them all.
    """
    freq = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    z = np.exp(1j * (2.0 * np.pi * np.cumsum(freq) / sr))
    top = float(np.max(freq))
    phases = rng.uniform(0, 2 * np.pi, len(amps))  # drawn for every harmonic, so a speed change moves no later draw
    out = np.zeros(n)
    zk = np.ones(n, dtype=np.complex128)
    for k, (amp, phase) in enumerate(zip(amps, phases), start=1):
        zk *= z
        if top * k < sr / 2 * 0.95:
            out += amp * (zk * np.exp(1j * phase)).imag
    return out


def steady_lines(rng: np.random.Generator, n: int, sr: int, freqs, levels_db, drift: float = 0.001) -> np.ndarray:
    """Fine steady tonal lines (structural resonances, other machines' tones): one sine per frequency in Hz at
    its level in dB, each drifting by about `drift` (relative) over seconds, as real lines do."""
    out = np.zeros(n)
    for freq, level in zip(freqs, levels_db):
        out += db(level) * harmonic_tone(freq * (1 + drift * smooth_random(rng, n, sr, 0.2)), n, sr, [1.0], rng)
    return out


def motor_hum(rng: np.random.Generator, n: int, sr: int, mains: float, shaft: np.ndarray | float) -> np.ndarray:
    """An induction motor's electrical hum: twice the mains frequency and its harmonics, with sidebands at
    2*mains +- the shaft rate (rotor eccentricity), which move when the speed does; unit RMS."""
    hum = harmonic_tone(2 * mains, n, sr, [1.0, 0.5, 0.3, 0.15], rng)
    upper = harmonic_tone(2 * mains + shaft, n, sr, [0.25], rng)
    lower = harmonic_tone(2 * mains - shaft, n, sr, [0.2], rng)
    return unit_rms(hum + upper + lower)


def velocity_profile(n: int, sr: int, strokes) -> np.ndarray:
    """Speed of a carriage (0..1) that moves in half-sine pulses over the (start_s, end_s) `strokes`."""
    velocity = np.zeros(n)
    for start_s, end_s in strokes:
        i0, i1 = int(start_s * sr), int(end_s * sr)
        if i1 > 0 and i0 < n and i1 > i0:
            shape = np.sin(np.linspace(0, np.pi, i1 - i0))
            lo, hi = max(i0, 0), min(i1, n)
            velocity[lo:hi] = shape[lo - i0:hi - i0]
    return velocity


def resonant_click(rng: np.random.Generator, sr: int, freq: float, decay_s: float,
                   noise_mix: float = 0.5) -> np.ndarray:
    """A short impact: a damped resonance plus a noise burst with the same exponential decay; peak about 1."""
    length = int(sr * decay_s * 6)
    t = np.arange(length) / sr
    envelope = np.exp(-t / decay_s)
    ring = np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    burst = rng.standard_normal(length)
    return envelope * ((1 - noise_mix) * ring + noise_mix * burst / 2.0)


def place(signal: np.ndarray, event: np.ndarray, start: int, gain: float = 1.0) -> None:
    """Add `event` into `signal` from sample `start` on, cut at the end of the signal."""
    if start >= len(signal) or start + len(event) <= 0:
        return
    begin = max(start, 0)
    end = min(start + len(event), len(signal))
    signal[begin:end] += gain * event[begin - start:end - start]


def gate(n: int, sr: int, intervals, ramp_s: float = 0.01) -> np.ndarray:
    """Envelope that is 1 inside the (start_s, end_s) intervals and 0 outside, with short linear ramps."""
    env = np.zeros(n)
    ramp = max(1, int(ramp_s * sr))
    for start_s, end_s in intervals:
        a, b = int(start_s * sr), int(end_s * sr)
        a, b = max(a, 0), min(b, n)
        if b <= a:
            continue
        env[a:b] = 1.0
        r = min(ramp, (b - a) // 2)
        if r > 0:
            env[a:a + r] *= np.linspace(0, 1, r)
            env[b - r:b] *= np.linspace(1, 0, r)
    return env


def random_bursts(rng: np.random.Generator, duration_s: float, count: int, min_s: float, max_s: float):
    """`count` random (start_s, end_s) intervals inside the clip."""
    lengths = rng.uniform(min_s, max_s, count)
    starts = rng.uniform(0, duration_s - lengths)
    return list(zip(starts, starts + lengths))
