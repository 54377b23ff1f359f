"""Bad recordings: every kind is named when `data.on_bad_file=raise`, and left out, logged and listed with `skip`."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from conftest import make_mimii, setup_mimii, write_wav
from machine_sound.data.audio import BadFileError, Decoding, decode, fit_length
from machine_sound.errors import DataError
from machine_sound.train import train


def spoil(path, kind):
    """Turn a good 16-bit WAV into one of the bad files a long sweep meets."""
    if kind == "zero-length":
        path.write_bytes(b"")
    elif kind == "not a wav":
        path.write_bytes(b"<html>404 Not Found</html>" * 40)
    elif kind == "header only":
        path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[:3000])
    elif kind in ("nan", "inf"):
        audio = np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32)
        audio[100] = np.nan if kind == "nan" else np.inf
        sf.write(path, audio, 16000, subtype="FLOAT")
    else:
        raise ValueError(kind)
    return path


KINDS = {"zero-length": "cannot read", "not a wav": "cannot read", "header only": "cannot read",
         "truncated": "is truncated", "nan": "contains NaN or infinite", "inf": "contains NaN or infinite"}


@pytest.mark.parametrize("cache", ["cache", "no cache"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_of_bad_file_is_named(cfg_factory, tmp_path, kind, cache):
    folder = make_mimii(tmp_path / "mimii")
    bad = spoil(folder / "normal" / "00000002.wav", kind)
    overrides = [] if cache == "cache" else ["data.cache_dir=null"]
    with pytest.raises(BadFileError, match=f"{bad}.*{KINDS[kind]}|{KINDS[kind]} {bad}") as raised:
        setup_mimii(cfg_factory, tmp_path / "mimii", *overrides)
    assert raised.value.path == bad
    assert "data.on_bad_file=skip" in str(raised.value)


def test_raise_counts_the_other_bad_files(cfg_factory, tmp_path):
    folder = make_mimii(tmp_path / "mimii", n_normal=6)
    spoil(folder / "normal" / "00000001.wav", "zero-length")
    spoil(folder / "normal" / "00000004.wav", "truncated")
    with pytest.raises(BadFileError, match=r"00000001\.wav.*\(1 more bad file\(s\) in this dataset\)"):
        setup_mimii(cfg_factory, tmp_path / "mimii")


def test_skip_trains_on_the_good_files_and_lists_the_bad_ones(cfg_factory, tmp_path):
    """The issue's case: a 100-file folder with 3 bad files trains on 97 and lists the 3."""
    folder = make_mimii(tmp_path / "mimii", n_normal=70, n_abnormal=30, seconds=0.25)
    bad = [spoil(folder / "normal" / "00000005.wav", "truncated"),
           spoil(folder / "abnormal" / "00000007.wav", "not a wav"),
           spoil(folder / "normal" / "00000011.wav", "zero-length")]
    run = tmp_path / "run"
    result = train(cfg_factory("data=mimii", f"data.root={tmp_path / 'mimii'}", "machine=pump", "id=id_00",
                               "data.clip_seconds=0.25", "data.on_bad_file=skip", "trainer.fast_dev_run=true",
                               "model.backbone=mobilenetv3_small_050", output_dir=run))
    with open(run / "split.csv") as f:
        used = [row["path"] for row in csv.DictReader(f)]
    assert len(used) == 97 and not set(map(str, bad)) & set(used)
    with open(run / "bad_files.csv") as f:
        listed = list(csv.DictReader(f))
    assert sorted(row["path"] for row in listed) == sorted(map(str, bad))
    assert all(row["reason"] for row in listed)
    assert result["bad_files_skipped"] == 3
    assert json.loads((run / "metrics.json").read_text())["bad_files_skipped"] == 3


def test_a_clip_shorter_than_the_crop_is_zero_padded(cfg_factory, tmp_path):
    folder = make_mimii(tmp_path / "mimii", seconds=0.5)
    write_wav(folder / "abnormal" / "00000000.wav", seconds=0.1)
    datamodule = setup_mimii(cfg_factory, tmp_path / "mimii")
    waves = {str(record.path): datamodule.dataset(name)[i][0] for name, part in datamodule.splits.items()
             for i, record in enumerate(part)}
    short = waves[str(folder / "abnormal" / "00000000.wav")]
    assert short.shape == (1, 8000)
    assert short[0, :1600].abs().sum() > 0 and not short[0, 1600:].any()


def test_fit_length_crops_from_the_start_and_pads_at_the_end():
    wave = np.arange(10, dtype=np.float32)[None, :]
    assert fit_length(wave, 4).tolist() == [[0, 1, 2, 3]]
    assert fit_length(wave, 12).tolist() == [[*range(10), 0, 0]]


def test_a_wrong_sample_rate_is_a_setting_error_naming_both_rates(cfg_factory, tmp_path):
    folder = make_mimii(tmp_path / "mimii")
    write_wav(folder / "normal" / "00000001.wav", sample_rate=22050)
    with pytest.raises(DataError, match="00000001.wav has sample rate 22050 Hz but data.sample_rate is 16000 Hz"):
        setup_mimii(cfg_factory, tmp_path / "mimii", "data.on_bad_file=skip")  # not a bad file: a setting


def test_resample_true_brings_other_rates_to_the_configured_one(tmp_path):
    path = write_wav(tmp_path / "a.wav", seconds=1.0, sample_rate=22050)
    wave, _ = decode(path, Decoding(16000, 0, resample=True))
    assert wave.shape == (1, 16000)
    with pytest.raises(DataError, match="data.resample=true"):
        decode(path, Decoding(16000, 0))
