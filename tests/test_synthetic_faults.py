"""Each synthetic fault kind changes the clip in the way its kind says, measured on the generated waveform: the
same clip (same key, same healthy draws) rendered with and without the fault."""

import numpy as np
import pytest
from scipy.signal import hilbert
from scipy.stats import kurtosis

from machine_sound.synthetic.generator import FAULT_LIST, SyntheticMimii
from machine_sound.synthetic.machines import ANOMALY_KINDS, id_parameters, render

SR, N = 16000, 10 * 16000


def pair(machine, fault, machine_id="id_00", index=0):
    """The healthy and the faulty version of one clip, each running sound + added events, float64 (N,)."""
    healthy = render(machine, machine_id, N, SR, None, 1.0, key=(0, "abnormal", index))
    faulty = render(machine, machine_id, N, SR, fault, 1.0, key=(0, "abnormal", index))
    return sum(healthy), sum(faulty)


def bandpass(x, lo, hi):
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    spectrum[(freqs < lo) | (freqs > hi)] = 0
    return np.fft.irfft(spectrum, len(x))


def energies(x, frame):
    """Mean square of consecutive frames of `frame` samples."""
    m = len(x) // frame
    return (x[:m * frame] ** 2).reshape(m, frame).mean(1)


def modulation(x, rate, lo, hi):
    """How deeply the envelope of the lo..hi Hz band is modulated at `rate` Hz (+-7 %), relative to its mean."""
    envelope = np.abs(hilbert(bandpass(x, lo, hi)))
    spectrum = np.abs(np.fft.rfft(envelope - envelope.mean())) * 2 / len(envelope)
    freqs = np.fft.rfftfreq(len(envelope), 1 / SR)
    return spectrum[(freqs > rate * 0.93) & (freqs < rate * 1.07)].max() / envelope.mean()


def instantaneous_frequency(x, f0, width=0.06):
    """The frequency (Hz) of the tone near f0 over time: phase slope of the analytic band, smoothed over 50 ms."""
    phase = np.unwrap(np.angle(hilbert(bandpass(x, f0 * (1 - width), f0 * (1 + width)))))
    k = SR // 20
    return np.convolve(np.diff(phase) * SR / (2 * np.pi), np.ones(k) / k, "valid")


def stroke_starts(x, p):
    """Times (s) at which the slider starts to move: rises of the friction band's 10 ms energy."""
    e = np.convolve(energies(bandpass(x, p["friction"] - 900, p["friction"] + 900), 160), np.ones(5) / 5, "same")
    moving = e > 0.25 * np.percentile(e, 95)
    return (np.flatnonzero(moving[1:] & ~moving[:-1]) + 1) * 0.01, moving


def cv(values):
    return values.std() / values.mean()


def periodicity(x, period):
    """Autocorrelation peak of the log energy envelope near one cycle `period` (s): 1 is perfectly regular."""
    e = np.log(energies(bandpass(x, 500, 8000), 32) + 1e-9)
    e = e - e.mean()
    ac = np.correlate(e, e, "full")[len(e) - 1:]
    lag = np.arange(len(ac)) * 0.002
    return (ac / ac[0])[(lag > 0.8 * period) & (lag < 1.2 * period)].max()


@pytest.mark.parametrize("machine_id", ["id_00", "id_04"])
def test_fan_unbalance_modulates_the_sound_at_the_rotation_rate(machine_id):
    p = id_parameters("fan", machine_id)
    healthy, faulty = pair("fan", "unbalance", machine_id)
    assert modulation(faulty, p["f_rot"], 200, 8000) > 3 * modulation(healthy, p["f_rot"], 200, 8000)


@pytest.mark.parametrize("index", [0, 1])
def test_fan_voltage_change_moves_every_speed_locked_tone(index):
    p = id_parameters("fan", "id_00")
    healthy, faulty = pair("fan", "voltage_change", "id_00", index)
    for harmonic in (1, 2):  # the blade-pass tone and its second harmonic move by the same factor
        f0 = harmonic * p["f_rot"] * p["blades"]
        ratio = np.median(instantaneous_frequency(faulty, f0, 0.2)) / np.median(instantaneous_frequency(healthy, f0,
                                                                                                       0.2))
        assert 0.04 < abs(ratio - 1) < 0.15, (harmonic, ratio)


def test_fan_clogging_brings_surges_of_broadband_roar():
    p = id_parameters("fan", "id_02")
    healthy, faulty = pair("fan", "clogging", "id_02")
    roar = [cv(energies(bandpass(x, p["noise_cut"] / 2, 7000), 1600)) for x in (healthy, faulty)]
    assert roar[1] > 2 * roar[0]


@pytest.mark.parametrize("kind", ["clogging", "contamination"])
def test_pump_clogging_and_contamination_make_the_vane_tone_wander(kind):
    for machine_id in ("id_00", "id_04"):
        p = id_parameters("pump", machine_id)
        healthy, faulty = pair("pump", kind, machine_id)
        vane = p["f_shaft"] * p["vanes"]
        assert instantaneous_frequency(faulty, vane).std() > 3 * instantaneous_frequency(healthy, vane).std()


def test_pump_clogging_shifts_the_harmonic_balance_towards_the_upper_vane_harmonics():
    p = id_parameters("pump", "id_02")
    vane = p["f_shaft"] * p["vanes"]

    def upper_to_fundamental(x):
        power = [np.sum(bandpass(x, k * vane * 0.9, k * vane * 1.1) ** 2) for k in (1, 2, 3)]
        return (power[1] + power[2]) / power[0]

    healthy, faulty = pair("pump", "clogging", "id_02")
    assert upper_to_fundamental(faulty) > 3 * upper_to_fundamental(healthy)


def test_pump_contamination_strengthens_the_shaft_orders():
    p = id_parameters("pump", "id_02")
    healthy, faulty = pair("pump", "contamination", "id_02")
    orders = [np.sum(bandpass(x, p["f_shaft"] * 0.9, p["f_shaft"] * 3.1) ** 2) for x in (healthy, faulty)]
    assert orders[1] > 2 * orders[0]


def test_pump_leakage_hisses_with_the_pressure_cycle():
    for machine_id in ("id_00", "id_02"):
        p = id_parameters("pump", machine_id)
        band = (p["leak_center"] - 1000, p["leak_center"] + 1000)
        healthy, faulty = pair("pump", "leakage", machine_id)
        assert modulation(faulty, p["pulse_rate"], *band) > 5 * modulation(healthy, p["pulse_rate"], *band)


def test_pump_leakage_bursts_are_short_loud_spells_of_hiss():
    p = id_parameters("pump", "id_00")
    healthy, faulty = pair("pump", "leakage_bursts")
    peak = [(lambda e: e.max() / np.median(e))(energies(bandpass(x, p["leak_center"] - 1000, p["leak_center"] + 1000),
                                                        1600)) for x in (healthy, faulty)]
    assert peak[1] > 3 * peak[0]


def test_pump_contamination_crackle_is_impulsive():
    p = id_parameters("pump", "id_04")
    healthy, faulty = pair("pump", "contamination_crackle", "id_04")
    band = [kurtosis(bandpass(x, p["crackle"] * 0.7, p["crackle"] * 1.3)) for x in (healthy, faulty)]
    assert band[0] < 1 < 5 < band[1]


@pytest.mark.parametrize("machine_id", ["id_00", "id_04", "id_06"])
def test_slider_loose_belt_makes_the_stroke_timing_irregular(machine_id):
    p = id_parameters("slider", machine_id)
    healthy, faulty = pair("slider", "loose_belt", machine_id)
    spread = [cv(np.diff(stroke_starts(x, p)[0])) for x in (healthy, faulty)]
    assert spread[0] < 0.04 and spread[1] > 3 * spread[0]


def test_slider_rail_damage_grinds_in_broadband_impacts_once_per_stroke():
    p = id_parameters("slider", "id_00")
    healthy, faulty = pair("slider", "rail_damage")
    impacts = faulty - healthy  # the running sound is unchanged: the difference is the impacts alone
    assert kurtosis(impacts) > 5  # impulsive, not a steady noise
    e = energies(impacts, 160)  # 10 ms
    active = np.convolve(e > 0.01 * e.max(), np.ones(5), "same") > 0  # spells, gaps under 50 ms bridged
    spells = np.flatnonzero(active[1:] & ~active[:-1]) + 1
    starts, moving = stroke_starts(healthy, p)
    assert 0.7 * len(starts) <= len(spells) <= len(starts) + 1  # a spell in most strokes
    assert moving[e > 0.01 * e.max()].mean() > 0.95  # while the carriage moves
    power = np.abs(np.fft.rfft(impacts)) ** 2
    freqs = np.fft.rfftfreq(N, 1 / SR)
    octaves = np.array([power[(freqs > lo) & (freqs < 2 * lo)].mean() for lo in (500, 1000, 2000, 4000)])
    assert octaves.min() > octaves.max() / 10  # broadband: every octave from 500 Hz to 8 kHz within 10 dB


def test_slider_no_grease_squeals_tonally_while_moving():
    p = id_parameters("slider", "id_02")
    healthy, faulty = pair("slider", "no_grease", "id_02")
    squeal = faulty - healthy
    spectrum = np.abs(np.fft.rfft(squeal))[(np.fft.rfftfreq(N, 1 / SR) > 1500) & (np.fft.rfftfreq(N, 1 / SR) < 7000)]
    assert spectrum.max() > 100 * np.median(spectrum)  # a tone, not a band of noise
    motion = energies(bandpass(healthy, p["friction"] - 900, p["friction"] + 900), 160)
    assert np.corrcoef(energies(squeal, 160), motion)[0, 1] > 0.3


def test_slider_rail_damage_rattle_is_a_cluster_of_knocks():
    healthy, faulty = pair("slider", "rail_damage_rattle", "id_04")
    assert kurtosis(faulty - healthy) > 10 and np.abs(faulty - healthy).max() > 0


def test_slider_loose_belt_flap_flutters_the_belt_band():
    p = id_parameters("slider", "id_04")
    healthy, faulty = pair("slider", "loose_belt_flap", "id_04")
    flap = faulty - healthy
    assert np.sum(bandpass(flap, p["belt"] - 400, p["belt"] + 400) ** 2) > 0.8 * np.sum(flap ** 2)
    e = energies(flap, 160)
    assert 0.02 < np.mean(e > 0.05 * e.max()) < 0.5  # in spells, not throughout


def test_slider_no_grease_scrape_adds_spells_in_the_squeal_band():
    p = id_parameters("slider", "id_04")
    healthy, faulty = pair("slider", "no_grease_scrape", "id_04")
    scrape = faulty - healthy
    assert np.sum(bandpass(scrape, p["squeal"] - 700, p["squeal"] + 700) ** 2) > 0.9 * np.sum(scrape ** 2)


@pytest.mark.parametrize("machine_id", ["id_00", "id_02", "id_04", "id_06"])
def test_valve_contamination_makes_the_cycle_irregular(machine_id):
    p = id_parameters("valve", machine_id)
    healthy, faulty = pair("valve", "contamination", machine_id)
    assert periodicity(faulty, p["period"]) < 0.7 * periodicity(healthy, p["period"])


def test_valve_contamination_leaves_the_seat_ajar_so_the_closing_clicks_are_softer():
    def click_energy(x):  # the 2 ms frames of the 1-8 kHz band that stand out: the clicks
        e = energies(bandpass(x, 1000, 8000), 32)
        return e[e > 10 * np.median(e)].sum()

    ratios = []
    for machine_id in ("id_00", "id_02", "id_04", "id_06"):
        for index in (0, 1):
            healthy, faulty = pair("valve", "contamination", machine_id, index)
            ratios.append(click_energy(faulty) / click_energy(healthy))
    assert np.median(ratios) < 0.7


def test_valve_contamination_chatter_adds_clicks_after_closing():
    healthy, faulty = pair("valve", "contamination_chatter", "id_02")
    chatter = faulty - healthy
    assert kurtosis(chatter) > 10
    e = energies(chatter, 32)
    assert np.sum(e > 0.05 * e.max()) >= 5


def test_valve_leakage_hisses_loudly_while_closed():
    p = id_parameters("valve", "id_02")
    healthy, faulty = pair("valve", "leakage", "id_02")
    loud = [np.percentile(energies(bandpass(x, p["hiss_center"] - 1000, p["hiss_center"] + 1000), 1600), 90)
            for x in (healthy, faulty)]
    assert loud[1] > 2 * loud[0]


def test_every_kind_is_tested_and_drawn():
    """Each machine's kinds are all drawn over its abnormal clips, and the list names each clip's kind."""
    tested = {name for name in globals() if name.startswith("test_")}
    for machine, kinds in ANOMALY_KINDS.items():
        for kind in kinds:
            assert any(machine in t and (kind.split("_")[0] in t) for t in tested), (machine, kind)
        drawn = {SyntheticMimii().fault_kind(machine, "id_00", i) for i in range(60)}
        assert drawn == set(kinds)


def test_the_fault_list_names_each_abnormal_clips_kind(tmp_path):
    gen = SyntheticMimii(n_normal=2, n_abnormal=4, duration_s=1.0)
    folder = gen.ensure(tmp_path, "-6_dB", "pump", "id_00", progress=False, workers=1)
    rows = (folder / FAULT_LIST).read_text().splitlines()
    assert rows[0] == "file,fault"
    assert rows[1:] == [f"abnormal/{i:08d}.wav,{gen.fault_kind('pump', 'id_00', i)}" for i in range(4)]
    with pytest.raises(ValueError, match="unknown pump fault 'unbalance'"):
        gen.clip("-6_dB", "pump", "id_00", "abnormal", 0, fault="unbalance")
    with pytest.raises(ValueError, match="a normal clip has no fault"):
        gen.clip("-6_dB", "pump", "id_00", "normal", 0, fault="leakage")
