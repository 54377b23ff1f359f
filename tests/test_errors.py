"""Every bad input ends in a clear error that names the setting or file and says what to do."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import REAL_SAMPLES, REPO
from machine_sound.data.audio import probe, read_clip
from machine_sound.errors import ConfigError, DataError
from machine_sound.train import instantiate, train


def make_mimii(root, n_normal=4, n_abnormal=3, sample_rate=16000, seconds=0.5):
    folder = root / "-6_dB_pump" / "pump" / "id_00"
    for label, count in (("normal", n_normal), ("abnormal", n_abnormal)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            audio = np.random.default_rng(i).normal(0, 0.1, int(sample_rate * seconds)).astype(np.float32)
            sf.write(folder / label / f"{i:08d}.wav", audio, sample_rate, subtype="PCM_16")
    return folder


def setup_mimii(cfg_factory, root, *overrides):
    cfg = cfg_factory("data=mimii", f"data.root={root}", "machine=pump", "id=id_00", "data.clip_seconds=0.5",
                      *overrides)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return datamodule


def test_unknown_machine_lists_the_valid_ones(cfg_factory):
    with pytest.raises(ConfigError, match="unknown machine 'pmp'; valid: fan, pump, slider, valve"):
        train(cfg_factory("machine=pmp"))


def test_unknown_id_lists_the_valid_ones(cfg_factory):
    with pytest.raises(ConfigError, match="unknown id 'id_05' for pump; valid: id_00, id_02, id_04, id_06"):
        train(cfg_factory("id=id_05"))


def test_bad_snr_is_named(cfg_factory):
    with pytest.raises(ConfigError, match="snr '-6dB'"):
        train(cfg_factory("snr=-6dB"))


def test_missing_data_root_says_how_to_get_mimii(cfg_factory, tmp_path):
    with pytest.raises(DataError, match=r"does not exist: download MIMII .* or use the built-in data=synthetic"):
        setup_mimii(cfg_factory, tmp_path / "nowhere")


def test_unset_data_root_says_how_to_get_mimii(cfg_factory):
    with pytest.raises(DataError, match="data.root is not set"):
        setup_mimii(cfg_factory, "null")


def test_missing_snr_folder_lists_what_is_there(cfg_factory, tmp_path):
    make_mimii(tmp_path)
    with pytest.raises(DataError, match=r"no folder 0_dB_pump .*found: -6_dB_pump"):
        setup_mimii(cfg_factory, tmp_path, "snr=0_dB")


def test_folder_without_wav_files_is_named(cfg_factory, tmp_path):
    folder = make_mimii(tmp_path)
    for f in (folder / "abnormal").glob("*.wav"):
        f.unlink()
    with pytest.raises(DataError, match=r"no \.wav files in .*id_00/abnormal"):
        setup_mimii(cfg_factory, tmp_path)


@pytest.mark.parametrize("content", [b"", b"this is not audio", b"RIFF\x24\x00\x00\x00WAVEfmt "])
def test_corrupt_file_is_named(cfg_factory, tmp_path, content):
    folder = make_mimii(tmp_path)
    bad = folder / "normal" / "00000002.wav"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=f"cannot read {bad}"):
        setup_mimii(cfg_factory, tmp_path)


def test_truncated_file_is_named(cfg_factory, tmp_path):
    folder = make_mimii(tmp_path)
    bad = folder / "abnormal" / "00000001.wav"
    bad.write_bytes(bad.read_bytes()[:3000])
    with pytest.raises(DataError, match=f"{bad} is truncated"):
        setup_mimii(cfg_factory, tmp_path)


def test_wrong_sample_rate_names_both_rates(cfg_factory, tmp_path):
    folder = make_mimii(tmp_path)
    sf.write(folder / "normal" / "00000001.wav", np.zeros(11025, np.float32), 22050)
    with pytest.raises(DataError, match="00000001.wav has sample rate 22050 Hz but data.sample_rate is 16000 Hz"):
        setup_mimii(cfg_factory, tmp_path)


def test_too_few_files_for_a_split_says_how_many_are_needed(cfg_factory, tmp_path):
    make_mimii(tmp_path, n_abnormal=2)
    with pytest.raises(DataError, match=r"only 2 'abnormal' file\(s\).*at least 3 per class"):
        setup_mimii(cfg_factory, tmp_path)


def test_float_wav_with_nan_is_named(tmp_path):
    path = tmp_path / "nan.wav"
    sf.write(path, np.array([0.0, np.nan, 0.1] * 100, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(DataError, match="nan.wav contains NaN"):
        read_clip(path, 0, 300)


def test_short_clip_is_zero_padded_and_long_clip_cropped(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, np.full(100, 0.5, np.float32), 16000)
    short = read_clip(path, 0, 160)
    assert short.shape == (1, 160) and np.allclose(short[0, :100], 0.5, atol=1e-3) and not short[0, 100:].any()
    assert read_clip(path, 0, 50).shape == (1, 50)


@pytest.mark.skipif(not REAL_SAMPLES.exists(), reason="needs ../shared/real-samples")
def test_real_mimii_files_read_and_too_few_give_the_split_error(cfg_factory):
    files = sorted((REAL_SAMPLES / "mimii").rglob("*.wav"))
    info = probe(files[0], 16000, channel=7)
    assert (info.channels, info.frames) == (8, 160000)
    assert read_clip(files[0], 7, 160000).shape == (1, 160000)
    with pytest.raises(DataError, match="data.channel=8"):
        probe(files[0], 16000, channel=8)
    with pytest.raises(DataError, match=r"only 1 'normal' file\(s\)"):
        datamodule = instantiate(cfg_factory("data=mimii", f"data.root={REAL_SAMPLES / 'mimii'}", "snr=6_dB",
                                             "machine=fan", "id=id_04").data)
        datamodule.setup("fit")


def test_command_line_prints_one_line_not_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "train.py", "machine=pmp", f"hydra.run.dir={tmp_path}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown machine 'pmp'; valid: fan, pump, slider, valve"
