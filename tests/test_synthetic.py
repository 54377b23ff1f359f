"""The built-in synthetic MIMII-like dataset: layout, formats, determinism, cache invalidation."""

import hashlib

import numpy as np
import pytest
import soundfile as sf

from machine_sound.errors import ConfigError, DataError
from machine_sound.synthetic.generator import MARKER, SyntheticMimii

SMALL = dict(n_normal=4, n_abnormal=3, duration_s=1.0)


def digest(folder):
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*.wav")):
        h.update(f.relative_to(folder).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_layout_and_format_follow_mimii(tmp_path):
    gen = SyntheticMimii(**SMALL)
    folder = gen.ensure(tmp_path, "-6_dB", "valve", "id_02", progress=False)
    assert folder == tmp_path / "-6_dB_valve" / "valve" / "id_02"
    normal = sorted((folder / "normal").glob("*.wav"))
    abnormal = sorted((folder / "abnormal").glob("*.wav"))
    assert [f.name for f in normal] == ["00000000.wav", "00000001.wav", "00000002.wav", "00000003.wav"]
    assert len(abnormal) == 3
    info = sf.info(str(normal[0]))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16")


def test_eight_channels_are_written_as_wave_extensible_like_mimii(tmp_path):
    folder = SyntheticMimii(channels=8, **SMALL).ensure(tmp_path, "0_dB", "fan", "id_00", progress=False)
    info = sf.info(str(next((folder / "normal").glob("*.wav"))))
    assert (info.channels, info.format) == (8, "WAVEX")
    audio, _ = sf.read(str(next((folder / "normal").glob("*.wav"))))
    assert not np.allclose(audio[:, 0], audio[:, 7])  # the microphones hear different mixes


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = SyntheticMimii(seed=1, **SMALL).ensure(tmp_path / "a", "-6_dB", "pump", "id_00", progress=False)
    b = SyntheticMimii(seed=1, **SMALL).ensure(tmp_path / "b", "-6_dB", "pump", "id_00", progress=False,
                                               workers=1)  # one process or several: the same bytes
    c = SyntheticMimii(seed=2, **SMALL).ensure(tmp_path / "c", "-6_dB", "pump", "id_00", progress=False)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_changed_settings_regenerate_and_same_settings_reuse(tmp_path):
    gen = SyntheticMimii(**SMALL)
    folder = gen.ensure(tmp_path, "-6_dB", "slider", "id_04", progress=False)
    stamp = (folder / MARKER).stat().st_mtime_ns
    gen.ensure(tmp_path, "-6_dB", "slider", "id_04", progress=False)
    assert (folder / MARKER).stat().st_mtime_ns == stamp  # reused, not rewritten
    SyntheticMimii(**{**SMALL, "n_normal": 5}).ensure(tmp_path, "-6_dB", "slider", "id_04", progress=False)
    assert len(list((folder / "normal").glob("*.wav"))) == 5


def test_snr_folders_share_the_machine_sound_at_different_noise_levels():
    gen = SyntheticMimii(**SMALL)
    quiet = gen.clip("6_dB", "fan", "id_00", "normal", 0)[:, 0]
    noisy = gen.clip("-6_dB", "fan", "id_00", "normal", 0)[:, 0]
    assert not np.allclose(quiet, noisy)
    assert np.corrcoef(quiet, noisy)[0, 1] > 0.3  # same recording underneath


@pytest.mark.parametrize("machine, kind", [("pump", "leakage_bursts"), ("slider", "rail_damage_rattle"),
                                           ("valve", "leakage"), ("fan", "clogging")])
def test_a_fault_adds_its_events_without_making_the_rest_quieter(machine, kind, monkeypatch):
    """Levels come from the running sound alone: an added-event fault is added on top, nothing else moves."""
    from machine_sound.synthetic import generator as synthetic

    gen = SyntheticMimii(**{**SMALL, "duration_s": 5.0})
    with_fault = gen.clip("-6_dB", machine, "id_00", "abnormal", 0, fault=kind)[:, 0].astype(np.float64)
    render = synthetic.render

    def without_added_events(*args, **kwargs):
        running, added = render(*args, **kwargs)
        return running, np.zeros_like(added)

    monkeypatch.setattr(synthetic, "render", without_added_events)
    without = gen.clip("-6_dB", machine, "id_00", "abnormal", 0, fault=kind)[:, 0].astype(np.float64)
    events = np.abs(with_fault - without) > 1e-6
    assert 0.001 < events.mean() < 0.9  # the fault is there, in part of the clip
    np.testing.assert_allclose(with_fault[~events], without[~events], atol=1e-6)
    assert np.mean(with_fault**2) > np.mean(without**2)


def test_loud_valve_clicks_at_high_snr_turn_the_clip_down_instead_of_clipping():
    gen = SyntheticMimii(**{**SMALL, "duration_s": 2.0})
    peaks = [float(np.abs(gen.clip("6_dB", "valve", "id_02", "normal", i)).max()) for i in range(8)]
    assert max(peaks) == pytest.approx(0.99)  # some would exceed full scale; none is flattened at 1.0
    assert min(peaks) < 0.9


def test_machines_ids_and_clips_sound_different():
    gen = SyntheticMimii(**SMALL)
    spectra = {}
    for machine in ("fan", "pump", "slider", "valve"):
        for machine_id in ("id_00", "id_06"):
            x = gen.clip("6_dB", machine, machine_id, "normal", 0)[:, 0]
            spectra[machine, machine_id] = np.log(np.abs(np.fft.rfft(x)) ** 2 + 1e-9)
    keys = list(spectra)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert np.abs(spectra[a] - spectra[b]).mean() > 0.1, (a, b)
    first, second = (gen.clip("6_dB", "pump", "id_00", "normal", i) for i in (0, 1))
    assert not np.allclose(first, second)


def test_refuses_to_overwrite_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "-6_dB_pump" / "pump" / "id_00" / "normal").mkdir(parents=True)
    with pytest.raises(DataError, match="not written by the synthetic generator"):
        SyntheticMimii(**SMALL).ensure(tmp_path, "-6_dB", "pump", "id_00", progress=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"channels": 9}, "channels=9"), ({"channels": "8"}, "channels='8'"), ({"severity": 0}, "severity=0"),
    ({"severity": float("nan")}, "severity=nan"), ({"severity": float("inf")}, "severity=inf"),
    ({"severity": 11.0}, r"severity=11.0: choose a value in \(0, 10.0\]"), ({"severity": "abc"}, "severity='abc'"),
    ({"n_abnormal": 0}, "n_abnormal=0"), ({"n_abnormal": 2.5}, "n_abnormal=2.5"), ({"seed": -1}, "seed=-1"),
    ({"seed": "abc"}, "seed='abc'")])
def test_bad_generator_settings_are_named(kwargs, match):
    with pytest.raises(ConfigError, match=f"data.generator.{match}"):
        SyntheticMimii(**kwargs)


def test_the_clip_api_refuses_what_it_cannot_render_and_renders_a_faulty_clip_without_its_fault():
    gen = SyntheticMimii(**SMALL)
    with pytest.raises(ValueError, match="unknown machine 'Fan'"):
        gen.clip("-6_dB", "Fan", "id_00", "normal", 0)
    with pytest.raises(ValueError, match="label='Abnormal'"):
        gen.clip("-6_dB", "fan", "id_00", "Abnormal", 0)
    drawn = gen.clip("6_dB", "fan", "id_00", "abnormal", 0)
    kind = gen.fault_kind("fan", "id_00", 0)
    np.testing.assert_array_equal(drawn, gen.clip("6_dB", "fan", "id_00", "abnormal", 0, fault=kind))
    healthy = gen.clip("6_dB", "fan", "id_00", "abnormal", 0, fault=None)
    assert not np.allclose(drawn, healthy)
    assert np.corrcoef(drawn[:, 0], healthy[:, 0])[0, 1] > 0.3  # the same recording underneath


def test_a_second_writer_of_the_same_tree_keeps_the_first_ones_files(tmp_path):
    """Two sweep jobs that generate the same folder at once: the one that finishes second must not pull the
    first one's files from under the jobs already reading them."""
    from machine_sound.synthetic.generator import write_once

    def write(staging, text):
        staging.mkdir()
        (staging / "clip.txt").write_text(text)
        (staging / ".synthetic.json").write_text('{"a": 1}')

    target = tmp_path / "tree"
    write_once(target, {"a": 1}, lambda staging: write(staging, "first"))
    inode = (target / "clip.txt").stat().st_ino
    from machine_sound.synthetic import generator

    staging = tmp_path / "second"
    write(staging, "second")
    generator._publish(staging, target, {"a": 1})  # as a job that generated in parallel would
    assert (target / "clip.txt").read_text() == "first" and (target / "clip.txt").stat().st_ino == inode
