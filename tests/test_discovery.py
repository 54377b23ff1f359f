"""Finding recordings: one rule (`records.find_audio`) for every reader and for predict. Suffixes in any case,
linked folders followed (each folder once), hidden files such as macOS `._*.wav` ignored, results sorted."""

import logging

import pytest

from conftest import make_mimii, setup_mimii, write_wav
from machine_sound.config import instantiate
from machine_sound.data.readers.mimii import list_id
from machine_sound.data.records import find_audio
from test_layouts import make_dcase, make_folder

APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64)  # what macOS leaves as ._<name>


def touch(*paths):
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_suffixes_in_any_case_linked_folders_followed_hidden_files_ignored_and_sorted(tmp_path, caplog):
    root = tmp_path / "in"
    touch(*(root / name for name in ("b/2.WAV", "b/1.wav", "a/3.Flac", "a/deep/4.wav", "a/notes.txt",
                                     "a/._3.wav", ".Trash/5.wav")))
    touch(tmp_path / "elsewhere" / "6.wav")
    (root / "b" / "batch2").symlink_to(tmp_path / "elsewhere")
    with caplog.at_level(logging.INFO, logger="machine_sound.data.records"):
        found = find_audio(root)
    assert found == [root / "a" / "3.Flac", root / "a" / "deep" / "4.wav", root / "b" / "1.wav",
                     root / "b" / "2.WAV", root / "b" / "batch2" / "6.wav"]
    assert f"ignored 2 hidden recording(s) or folder(s) in {root}" in caplog.text  # ._3.wav and .Trash/
    assert find_audio(root / "a", recursive=False) == [root / "a" / "3.Flac"]
    assert find_audio(root / "b", [".WAV"], recursive=False) == [root / "b" / "1.wav", root / "b" / "2.WAV"]
    assert find_audio(tmp_path / "missing") == []


def test_a_link_loop_or_a_second_link_to_a_folder_is_searched_once(tmp_path):
    root = tmp_path / "in"
    touch(root / "normal" / "a.wav")
    (root / "normal" / "loop").symlink_to(root)  # back up to the root: a loop
    (root / "normal" / "again").symlink_to(root / "normal")
    (root / "zz").symlink_to(root / "normal")
    assert find_audio(root) == [root / "normal" / "a.wav"]


def test_a_link_to_a_missing_recording_is_kept_so_that_reading_it_names_it(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    assert find_audio(tmp_path / "in") == [tmp_path / "in" / "gone.wav"]


def test_mimii_counts_upper_case_wav_files_and_logs_what_it_found(cfg_factory, tmp_path, caplog):
    folder = make_mimii(tmp_path / "mimii", n_normal=6, n_abnormal=2)
    for i in range(2, 5):
        write_wav(folder / "abnormal" / f"{i:08d}.WAV", seconds=0.5, seed=10 + i)
    (folder / "abnormal" / "._00000000.wav").write_bytes(APPLE_DOUBLE)
    with caplog.at_level(logging.INFO):
        files = list_id(tmp_path / "mimii", "-6_dB", "pump", "id_00")
    assert [p.name for p in files["abnormal"]] == ["00000000.wav", "00000001.wav", "00000002.WAV",
                                                   "00000003.WAV", "00000004.WAV"]
    assert f"found 11 recordings in {folder}: 6 normal, 5 abnormal" in caplog.text
    datamodule = setup_mimii(cfg_factory, tmp_path / "mimii")
    used = [r for part in datamodule.splits.values() for r in part]
    assert len(used) == 11 and sum(r.anomalous for r in used) == 5


def test_dcase_anomaly_clips_ending_in_upper_case_wav_stay_in_the_test(cfg_factory, tmp_path, caplog):
    root = make_dcase(tmp_path / "dcase", n_train=4, n_test=3)
    test = root / "fan" / "test"
    for path in test.glob("anomaly_id_02_*.wav"):
        path.rename(path.with_suffix(".WAV"))
    datamodule = instantiate(cfg_factory("data=dcase2020", f"data.root={root}", "machine=fan").data)
    with caplog.at_level(logging.INFO):
        tested = [r for r in datamodule.index.records if r.split == "test"]
    assert len(tested) == 12
    assert sorted(r.path.name for r in tested if r.anomalous and r.machine_id == "id_02") == [
        f"anomaly_id_02_{i:08d}.WAV" for i in range(3)]
    assert f"found 12 recordings in {test}: 6 normal, 6 anomaly" in caplog.text
    assert f"found 8 recordings in {root / 'fan' / 'train'}: 8 normal, 0 anomaly" in caplog.text


@pytest.mark.parametrize("on_bad_file", ["skip", "raise"])
def test_a_macos_appledouble_file_in_a_dcase_folder_is_ignored(cfg_factory, tmp_path, on_bad_file):
    root = make_dcase(tmp_path / "dcase", n_train=4, n_test=2)
    for folder in ("train", "test"):
        (root / "fan" / folder / "._normal_id_00_00000000.wav").write_bytes(APPLE_DOUBLE)
    datamodule = instantiate(cfg_factory("data=dcase2020", f"data.root={root}", "machine=fan",
                                         "data.clip_seconds=1.0", f"data.on_bad_file={on_bad_file}").data)
    datamodule.setup("fit")
    used = [r.path for part in datamodule.splits.values() for r in part]
    assert len(used) == 8 + 8 and not any(p.name.startswith(".") for p in used)
    assert datamodule.bad_files == []


def test_class_folders_follow_a_linked_sub_folder_and_log_what_they_found(cfg_factory, tmp_path, caplog):
    root = make_folder(tmp_path / "sounds", {"normal": 4, "abnormal": 4})
    make_folder(tmp_path / "elsewhere", {"batch": 3})
    (root / "normal" / "batch2").symlink_to(tmp_path / "elsewhere" / "batch")
    (root / "abnormal" / "._000.wav").write_bytes(APPLE_DOUBLE)
    datamodule = instantiate(cfg_factory("data=folder", f"data.root={root}", "data.clip_seconds=0.25").data)
    with caplog.at_level(logging.INFO):
        records = datamodule.index.records
    normal = sorted(str(r.path.relative_to(root)) for r in records if r.label == 0)
    assert normal == ["normal/000.wav", "normal/001.wav", "normal/002.wav", "normal/003.wav",
                      "normal/batch2/000.wav", "normal/batch2/001.wav", "normal/batch2/002.wav"]
    assert len(records) == 11
    assert f"found 11 recordings in {root}: 7 normal, 4 abnormal" in caplog.text
