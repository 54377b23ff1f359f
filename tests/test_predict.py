"""Scoring new recordings with a trained checkpoint: one CSV row per file, decisions as in the test metrics."""

import csv
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_SAMPLES, make_cfg, make_mimii, write_wav
from machine_sound.errors import ConfigError, DataError
from machine_sound.predict import predict
from machine_sound.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """A short synthetic run (2 s clips): its result and run folder."""
    run = tmp_path_factory.mktemp("trained")
    result = train(make_cfg(run, data_dir, ["trainer.max_epochs=2"]))
    return result, run


def test_decisions_on_the_test_split_agree_with_the_test_metrics(trained, tmp_path):
    result, run = trained
    with open(run / "split.csv") as f:
        test = [row for row in csv.DictReader(f) if row["split"] == "test"]
    for i, row in enumerate(test):  # the test clips, gathered into one folder
        (tmp_path / "clips").mkdir(exist_ok=True)
        (tmp_path / "clips" / f"{i:03d}_{row['class']}.wav").symlink_to(row["path"])
    output, rows = predict(result["best_checkpoint"], tmp_path / "clips", tmp_path / "out.csv")
    assert len(rows) == len(test) and output.exists()
    truth = ["abnormal" if name.endswith("_abnormal.wav") else "normal" for name in (r["path"] for r in rows)]
    said = [r["decision"] for r in rows]
    counts = {"tp": ("abnormal", "abnormal"), "fp": ("normal", "abnormal"), "fn": ("abnormal", "normal"),
              "tn": ("normal", "normal")}
    for key, (actual, decided) in counts.items():
        assert sum(t == actual and d == decided for t, d in zip(truth, said)) == result["metrics"][key], key
    assert all(r["threshold"] == pytest.approx(result["threshold"], abs=1e-6) for r in rows)


def test_long_short_and_multichannel_recordings_are_scored_in_windows(cfg_factory, tmp_path):
    make_mimii(tmp_path / "mimii", channels=2, seconds=1.0)
    result = train(cfg_factory("data=mimii", f"data.root={tmp_path / 'mimii'}", "machine=pump", "id=id_00",
                               "data.clip_seconds=1.0", "data.channel=[0,1]", "trainer.max_epochs=1",
                               "model.backbone=mobilenetv3_small_050"))
    inputs = tmp_path / "new"
    write_wav(inputs / "short.wav", seconds=0.3, channels=4)
    write_wav(inputs / "long.wav", seconds=2.5, channels=4, seed=5)
    write_wav(inputs / "exact.wav", seconds=1.0, channels=2, seed=6)
    _, mean_rows = predict(result["best_checkpoint"], inputs, tmp_path / "mean.csv")
    _, max_rows = predict(result["best_checkpoint"], inputs, tmp_path / "max.csv", aggregate="max")
    windows = {r["path"].rsplit("/", 1)[1]: r["windows"] for r in mean_rows}
    assert windows == {"exact.wav": 1, "long.wav": 3, "short.wav": 1}  # 0-1, 1-2 and 1.5-2.5 s
    for mean, top in zip(mean_rows, max_rows):
        assert top["p_abnormal"] >= mean["p_abnormal"] - 1e-6
        assert (top["p_abnormal"] == pytest.approx(mean["p_abnormal"])) == (mean["windows"] == 1)
    write_wav(inputs / "mono.wav", seconds=1.0, channels=1)
    with pytest.raises(DataError, match=r"mono.wav has 1 channel\(s\) but data.channel=\(0, 1\)"):
        predict(result["best_checkpoint"], inputs, tmp_path / "bad.csv")


def test_an_unreadable_file_gets_a_row_with_its_error_and_the_rest_are_scored(trained, tmp_path):
    result, _ = trained
    write_wav(tmp_path / "in" / "good.wav", seconds=2.0)
    (tmp_path / "in" / "broken.wav").write_bytes(b"not audio at all")
    _, rows = predict(result["best_checkpoint"], tmp_path / "in", tmp_path / "out.csv")
    by_name = {r["path"].rsplit("/", 1)[1]: r for r in rows}
    assert "cannot read" in by_name["broken.wav"]["error"] and "decision" not in by_name["broken.wav"]
    assert by_name["good.wav"]["decision"] in ("normal", "abnormal")


def test_predict_errors_are_one_line(trained, tmp_path):
    result, _ = trained
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .wav/.flac files in"):
        predict(result["best_checkpoint"], tmp_path / "empty", tmp_path / "made" / "scores.csv")
    assert not (tmp_path / "made").exists()  # a prediction that failed leaves no empty output folder
    with pytest.raises(DataError, match="input .*nowhere does not exist"):
        predict(result["best_checkpoint"], tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="aggregate=median"):
        predict(result["best_checkpoint"], tmp_path / "empty", aggregate="median")
    with pytest.raises(DataError, match="no checkpoint at"):
        predict(tmp_path / "missing.ckpt", tmp_path / "empty")
    refused = {"data.sample_rate=44100": "but the model's front end hears 16000 Hz audio",
               "data.task=multiclass": "data.task: only data.channel, data.resample, data.clip_seconds",
               "model.threshold=0.1": "the model and its settings are the checkpoint's",
               "data.resample=maybe": "data.resample='maybe': true or false"}
    write_wav(tmp_path / "in" / "a.wav", seconds=2.0)
    for override, message in refused.items():
        with pytest.raises(ConfigError, match=message):
            predict(result["best_checkpoint"], tmp_path / "in", tmp_path / "out.csv", overrides=[override])
    with pytest.raises(ConfigError, match=f"output={tmp_path / 'in' / 'a.wav'}: give the path of a .csv file"):
        predict(result["best_checkpoint"], tmp_path / "in", tmp_path / "in" / "a.wav")  # it would overwrite a recording
    with pytest.raises(ConfigError, match=f"output={tmp_path / 'in'}: a folder receives the DCASE challenge's result "
                                          "files, for a model trained with data=dcase; give the path of a .csv file"):
        predict(result["best_checkpoint"], tmp_path / "in", tmp_path / "in")
    command = [sys.executable, "-m", "machine_sound.predict", f"ckpt_path={tmp_path / 'missing.ckpt'}",
               f"input={tmp_path}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().startswith("error: no checkpoint at")


@pytest.mark.skipif(not REAL_SAMPLES.exists(), reason="needs ../shared/real-samples")
def test_real_8_channel_mimii_files_get_a_row_each(trained, tmp_path):
    result, _ = trained
    output, rows = predict(result["best_checkpoint"], REAL_SAMPLES / "mimii", tmp_path / "real.csv")
    assert len(rows) == 2 and all(r["windows"] == 5 for r in rows)  # 10 s recordings, 2 s windows
    assert all(0 <= r["p_abnormal"] <= 1 and not r.get("error") for r in rows)
    assert np.isfinite([r["p_abnormal"] for r in rows]).all()


def test_a_model_scored_by_machine_id_gives_each_clip_its_id_fit_anomaly_score(cfg_factory, tmp_path, caplog):
    from test_layouts import make_dcase

    root = make_dcase(tmp_path / "dcase")
    result = train(cfg_factory("data=dcase2020", f"data.root={root}", "machine=fan", "data.clip_seconds=1.0",
                               "model=id_classifier", "model.backbone=mobilenetv3_small_050"))
    _, rows = predict(result["best_checkpoint"], root / "fan" / "test", tmp_path / "out.csv")
    assert len(rows) == 12
    scores = {r["path"]: r for r in csv.DictReader(open(result["best_checkpoint"].split("/checkpoints/")[0]
                                                        + "/test_scores.csv"))}
    for row in rows:
        own = "id_00" if "_id_00_" in row["path"] else "id_02"
        assert row["machine_id"] == own and row["threshold"] == pytest.approx(result["threshold"][own], abs=1e-5)
        assert row["anomaly_score"] == pytest.approx(float(scores[row["path"]]["anomaly_score"]), abs=1e-5)
        assert row["decision"] == ("anomalous" if row["anomaly_score"] > row["threshold"] else "normal")
    for i in range(5):  # IDs the model does not know: nothing can be scored, which is a failure
        write_wav(tmp_path / "other" / f"normal_id_07_{i:08d}.wav", seconds=1.0, seed=i)
    with pytest.raises(DataError, match=r"^no anomaly score for any of the 5 file\(s\) under .*other: none names one "
                                        r"of the model's machine IDs \(id_00, id_02\); name files like "
                                        r"normal_id_00_00000000.wav or put them under an id_00/ folder$"):
        predict(result["best_checkpoint"], tmp_path / "other", tmp_path / "other.csv")
    assert not (tmp_path / "other.csv").exists()
    command = [sys.executable, "-m", "machine_sound.predict", f"ckpt_path={result['best_checkpoint']}",
               f"input={tmp_path / 'other'}", f"output={tmp_path / 'other.csv'}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: no anomaly score for any")
    write_wav(tmp_path / "other" / "id_02" / "clip.wav", seconds=1.0)  # one clip whose folder names its ID
    with caplog.at_level(logging.WARNING, logger="machine_sound.predict"):
        _, rows = predict(result["best_checkpoint"], tmp_path / "other", tmp_path / "other.csv")
    assert "5 of 6 readable file(s) under" in caplog.text and "name none of the model's machine IDs" in caplog.text
    unknown = [r for r in rows if "_id_07_" in r["path"]]
    assert len(unknown) == 5 and all("anomaly_score" not in r for r in unknown)
    assert all("no anomaly score: neither the name nor a folder names" in r["error"] for r in unknown)
    (known,) = [r for r in rows if r["path"].endswith("clip.wav")]
    assert known["machine_id"] == "id_02" and known["decision"] in ("normal", "anomalous") and not known.get("error")
    command = [sys.executable, "-m", "machine_sound.predict", f"ckpt_path={result['best_checkpoint']}",
               f"input={tmp_path / 'other'}", f"output={tmp_path / 'other.csv'}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "scored 1 of 6 files (" in done.stdout and "; 5 name no machine ID)" in done.stdout


def test_console_scripts_take_paths_with_equals_signs_commas_and_spaces(trained, tmp_path):
    """A sweep job's checkpoint (`.../seed=2,lr=0.1/checkpoints/...`) and odd input and output folders work as
    typed; other arguments are overrides of the stored config, and an unknown key is refused in one line."""
    result, _ = trained
    ckpt = tmp_path / "sweep=1" / "seed=2,lr=0.1 run" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    shutil.copy(result["best_checkpoint"], ckpt)
    inputs = tmp_path / "in, a=b"
    write_wav(inputs / "x y.wav", seconds=2.0)
    output = tmp_path / "out=1, c" / "scores.csv"
    scripts = Path(sys.executable).parent

    def run(*args):
        return subprocess.run([str(a) for a in args], cwd=tmp_path, capture_output=True, text=True, timeout=300)

    done = run(scripts / "machine-sound-predict", f"ckpt_path={ckpt}", f"input={inputs}", f"output={output}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "scored 1 of 1 files" in done.stdout
    with open(output) as f:
        assert [r["path"] for r in csv.DictReader(f)] == [str(inputs / "x y.wav")]
    done = run(scripts / "machine-sound-eval", f"ckpt_path={ckpt}")
    assert done.returncode == 0, done.stderr[-2000:]
    (metrics,) = (tmp_path / "outputs" / "evals").rglob("metrics.json")
    assert json.loads(metrics.read_text())["metrics"] == pytest.approx(result["metrics"])
    done = run(scripts / "machine-sound-predict", f"ckpt_path={ckpt}", f"input={inputs}", "dta.root=/x")
    assert done.returncode == 2 and done.stderr.strip() == ("error: unknown setting 'dta.root' (the run's config "
                                                            "has no such key)")
    done = run(scripts / "machine-sound-eval")
    assert done.returncode == 2 and "give ckpt_path=..." in done.stderr


def test_predict_finds_recordings_by_the_readers_rule(trained, tmp_path, caplog):
    """Upper-case suffixes and linked folders are scored; macOS `._*` files and other hidden files are not."""
    result, _ = trained
    inputs = tmp_path / "in"
    write_wav(inputs / "a.wav", seconds=2.0)
    write_wav(inputs / "B.WAV", seconds=2.0, seed=1)
    (inputs / "._a.wav").write_bytes(b"\x00\x05\x16\x07" + bytes(80))
    write_wav(tmp_path / "elsewhere" / "c.wav", seconds=2.0, seed=2)
    (inputs / "batch2").symlink_to(tmp_path / "elsewhere")
    with caplog.at_level(logging.INFO):
        _, rows = predict(result["best_checkpoint"], inputs, tmp_path / "out.csv")
    assert [r["path"] for r in rows] == [str(inputs / "B.WAV"), str(inputs / "a.wav"), str(inputs / "batch2" / "c.wav")]
    assert all(r["decision"] in ("normal", "abnormal") and not r.get("error") for r in rows)
    assert f"found 3 recordings under {inputs}" in caplog.text


def test_predict_fails_when_no_file_can_be_scored(trained, tmp_path):
    result, _ = trained
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.wav").write_bytes(b"not audio at all")
    with pytest.raises(DataError, match=r"none of the 1 file\(s\) could be read; the first: cannot read"):
        predict(result["best_checkpoint"], tmp_path / "in", tmp_path / "out.csv")


def test_a_recordings_own_machine_id_comes_from_its_name_first_then_its_nearest_folder():
    from machine_sound.predict import own_id

    ids = ["id_00", "id_02", "id_04"]
    assert own_id(Path("test/normal_id_02_00000001.wav"), ids) == "id_02"  # DCASE
    assert own_id(Path("x/id_02/id_04_0002.wav"), ids) == "id_04"  # the name says so, whatever the folder
    assert own_id(Path("-6_dB_pump/pump/id_00/normal/00000001.wav"), ids) == "id_00"  # MIMII
    assert own_id(Path("line3/pump_0001.wav"), ids) is None
