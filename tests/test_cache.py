"""The decoded-audio cache: exact, reused, invalidated by a changed file or setting, safe to build in parallel."""

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from conftest import make_mimii, setup_mimii, write_wav
from machine_sound.data import audio
from machine_sound.data.audio import Decoding, decode
from machine_sound.data.cache import DecodedCache
from machine_sound.errors import DataError


def test_16_bit_files_are_stored_as_int16_and_read_back_exactly(tmp_path):
    path = write_wav(tmp_path / "a.wav", channels=3)
    cache = DecodedCache(tmp_path / "cache")
    entry = cache.ensure(path, Decoding(16000, [2, 0]))
    assert np.load(entry).dtype == np.int16
    expected = sf.read(path, dtype="float32")[0][:, [2, 0]].T
    assert np.array_equal(cache.load(entry, 8000), expected)
    assert entry.stat().st_size < path.stat().st_size  # 2 of 3 channels


def test_float_files_are_stored_as_float32(tmp_path):
    path = write_wav(tmp_path / "a.wav", subtype="FLOAT")
    cache = DecodedCache(tmp_path / "cache")
    entry = cache.ensure(path, Decoding())
    assert np.load(entry).dtype == np.float32
    assert np.array_equal(cache.load(entry, 8000), decode(path, Decoding())[0])


def test_an_entry_is_decoded_once_and_reused_by_later_runs(cfg_factory, tmp_path, monkeypatch):
    make_mimii(tmp_path / "mimii")
    calls = []
    real_decode = audio.decode
    monkeypatch.setattr("machine_sound.data.cache.decode", lambda *a: calls.append(a[0]) or real_decode(*a))
    cache = ["data.cache_dir=" + str(tmp_path / "cache")]
    first = setup_mimii(cfg_factory, tmp_path / "mimii", *cache)
    assert len(calls) == 7
    second = setup_mimii(cfg_factory, tmp_path / "mimii", *cache)
    assert len(calls) == 7  # nothing decoded again
    assert first.sources == second.sources
    clip = second.dataset("train")[0][0]
    path = second.splits["train"][0].path
    assert np.allclose(clip.numpy(), decode(path, second.decoding)[0], atol=1 / 32768)


def test_a_changed_file_or_setting_misses_and_is_decoded_afresh(tmp_path):
    path = write_wav(tmp_path / "a.wav", channels=2, seed=1)
    cache = DecodedCache(tmp_path / "cache")
    old = cache.ensure(path, Decoding())
    assert cache.entry(path, Decoding(channel=1)) != old
    assert cache.entry(path, Decoding(channel="mean")) != old
    write_wav(path, channels=2, seed=2)  # same size, new content and mtime
    os.utime(path, ns=(old.stat().st_mtime_ns + 10**9,) * 2)
    new = cache.ensure(path, Decoding())
    assert new != old
    assert np.array_equal(cache.load(new, 8000), decode(path, Decoding())[0])


def _build(args):
    directory, paths = args
    cache = DecodedCache(directory)
    return [str(cache.ensure(p, Decoding(channel=[0, 1]))) for p in paths]


def test_parallel_jobs_building_the_same_entries_leave_whole_files_and_no_debris(tmp_path):
    paths = [write_wav(tmp_path / f"{i}.wav", seconds=2.0, channels=2, seed=i) for i in range(12)]
    with ProcessPoolExecutor(4) as pool:
        results = list(pool.map(_build, [(tmp_path / "cache", paths)] * 8))
    assert all(r == results[0] for r in results)
    cache = DecodedCache(tmp_path / "cache")
    for path, entry in zip(paths, results[0]):
        assert np.array_equal(cache.load(entry, 32000), decode(path, Decoding(channel=[0, 1]))[0])
    assert not [f for f in (tmp_path / "cache").rglob("*") if f.is_file() and f.name.startswith(".")]


def test_an_unwritable_cache_folder_is_a_clear_error(tmp_path):
    path = write_wav(tmp_path / "a.wav")
    (tmp_path / "blocked").write_text("a file where the cache folder should be")
    with pytest.raises(DataError, match=r"cannot write the decoded-audio cache in .*blocked.*data.cache_dir"):
        DecodedCache(tmp_path / "blocked").ensure(path, Decoding())
