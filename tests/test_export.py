"""Export to ONNX and predict from the ONNX file alone: the same scores and decisions as PyTorch, no torch imported,
and a timeline of a long recording that shows when a fault came and went."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import REAL_SAMPLES, make_cfg, write_wav
from machine_sound.data.audio import decode, fit_length
from machine_sound.errors import ConfigError, DataError
from machine_sound.export import export
from machine_sound.predict import predict
from machine_sound.predict_checkpoint import CheckpointModel
from machine_sound.predict_onnx import FORMAT, METADATA_KEY, OnnxModel
from machine_sound.predict_rows import score_row
from machine_sound.train import train

MODELS = {
    "supervised": ["trainer.max_epochs=1"],
    "normal_only": ["data.reader.protocol=baseline", "model=id_classifier", "trainer.max_epochs=1",
                    "id=id_00", "data.reader.machines.pump=[id_00,id_02]", "model.backbone=mobilenetv3_small_050"],
}


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, tmp_path_factory, data_dir):
    """A short synthetic run of a classifier (normal vs abnormal) or a normal-only detector with a kNN memory,
    exported: (run result, run folder, ONNX file)."""
    run = tmp_path_factory.mktemp(request.param)
    result = train(make_cfg(run, data_dir, MODELS[request.param]))
    onnx_path, difference = export(result["best_checkpoint"], run / "model.onnx")
    assert difference <= 1e-4
    return result, run, onnx_path


def read_rows(path):
    """A CSV's rows as dicts."""
    with open(path) as f:
        return list(csv.DictReader(f))


def split_clips(run: Path, count: int = 8) -> list[Path]:
    """The first test clips of a run's split."""
    with open(run / "split.csv") as f:
        return [Path(row["path"]) for row in csv.DictReader(f) if row["split"] == "test"][:count]


def test_onnx_runtime_scores_real_and_synthetic_clips_as_pytorch_does(exported):
    result, run, onnx_path = exported
    torch_model = CheckpointModel(result["best_checkpoint"])
    onnx_model = OnnxModel(onnx_path)
    assert onnx_model.class_names == torch_model.class_names and onnx_model.num_frames == torch_model.num_frames
    assert np.allclose(onnx_model.threshold, torch_model.threshold)
    paths = split_clips(run)
    real = sorted(REAL_SAMPLES.glob("*/*/*/*.wav"))[:6] + sorted(REAL_SAMPLES.glob("*/*/*/*/*/*.wav"))[:2]
    waves = np.stack([fit_length(decode(p, onnx_model.decoding)[0], onnx_model.num_frames) for p in paths + real])
    with torch.no_grad():
        expected = torch_model.model.predict_step((torch.from_numpy(waves),), 0).numpy()
    got = onnx_model(waves)
    assert got.shape == expected.shape == (len(waves), len(torch_model.class_names))
    assert np.abs(got - expected).max() <= 1e-4
    assert np.abs(onnx_model(waves[:1]) - expected[:1]).max() <= 1e-4  # any batch size


def test_predict_from_the_onnx_file_decides_as_the_checkpoint_on_the_test_split(exported, tmp_path):
    result, run, onnx_path = exported
    for i, path in enumerate(split_clips(run, 40)):  # the test clips with their machine ID and class in the name
        (tmp_path / "clips").mkdir(exist_ok=True)
        (tmp_path / "clips" / f"{path.parts[-3]}_{path.parts[-2]}_{i:03d}.wav").symlink_to(path)
    _, from_checkpoint = predict(result["best_checkpoint"], tmp_path / "clips", tmp_path / "ckpt.csv")
    _, from_onnx = predict(onnx_path, tmp_path / "clips", tmp_path / "onnx.csv")
    assert [r["path"] for r in from_onnx] == [r["path"] for r in from_checkpoint]
    assert [r["decision"] for r in from_onnx] == [r["decision"] for r in from_checkpoint]
    score = "anomaly_score" if "anomaly_score" in from_onnx[0] else "p_abnormal"
    assert np.allclose([r[score] for r in from_onnx], [r[score] for r in from_checkpoint], atol=1e-4)
    assert read_rows(tmp_path / "onnx.csv")[0].keys() == read_rows(tmp_path / "ckpt.csv")[0].keys()


def test_predict_from_onnx_imports_neither_torch_nor_lightning_nor_hydra(exported, tmp_path):
    _, run, onnx_path = exported
    inputs = tmp_path / "in"
    write_wav(inputs / "id_00" / "clip.wav", seconds=3.0)
    code = ("import sys; from machine_sound.predict import main; "
            f"main(['model_path={onnx_path}', 'input={inputs}', 'output={tmp_path / 'p.csv'}', 'timeline=true']); "
            "print('loaded:', sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchaudio', 'lightning', "
            "'pytorch_lightning', 'hydra', 'omegaconf', 'timm', 'torchmetrics'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout and "scored 1 of 1 files" in done.stdout
    assert (tmp_path / "p_timeline.csv").exists() and (tmp_path / "p_timeline" / "id_00__clip.wav.png").exists()


def loudness_model(path: Path, threshold: float, samples: int) -> Path:
    """An ONNX detector whose answer is known: a window's anomaly score is 100 x its mean power."""

    class Loudness(torch.nn.Module):
        def forward(self, wave):
            return 100 * wave.square().mean(dim=(1, 2))[:, None]

    program = torch.onnx.export(Loudness(), (torch.zeros(2, 1, samples),), dynamo=True, verbose=False,
                                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    meta = {"format": FORMAT, "task": "id_anomaly", "class_names": ["machine"], "threshold": [threshold],
            "threshold_fitted": True, "sample_rate": 16000, "clip_seconds": samples / 16000, "samples": samples,
            "channel": 0, "in_chans": 1, "resample": False, "batch_size": 8, "outputs": "anomaly score per machine ID"}
    program.model.metadata_props[METADATA_KEY] = json.dumps(meta)
    program.save(str(path), external_data=False)
    return path


def test_a_timeline_of_a_five_minute_recording_shows_when_the_fault_came_and_went(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(300 * 16000) / 16000
    wave = 0.3 * np.sin(2 * np.pi * 120 * t) + rng.normal(0, 0.05, t.size)  # score 100 x 0.0475 = 4.75
    fault = (t >= 140) & (t < 165)  # 25 s of loud knocking: windows 140-150, 150-160 and half of 160-170
    wave[fault] += rng.normal(0, 0.5, fault.sum())
    (tmp_path / "pump").mkdir()
    sf.write(tmp_path / "pump" / "long.wav", np.clip(wave, -1, 1).astype(np.float32), 16000, subtype="PCM_16")
    model = loudness_model(tmp_path / "loudness.onnx", threshold=10.0, samples=10 * 16000)
    output, rows = predict(model, tmp_path / "pump", tmp_path / "out.csv", timeline=True)
    assert rows[0]["windows"] == 30 and rows[0]["decision"] == "normal"  # averaged over 5 minutes: about 6.8
    _, loudest = predict(model, tmp_path / "pump", tmp_path / "max.csv", aggregate="max")
    assert loudest[0]["decision"] == "anomalous"
    windows = read_rows(tmp_path / "out_timeline.csv")
    assert [(float(w["start_s"]), float(w["end_s"])) for w in windows] == [(10.0 * i, 10.0 * i + 10) for i in
                                                                           range(30)]
    scores = [float(w["anomaly_score"]) for w in windows]
    assert set(np.argsort(scores)[-3:]) == {14, 15, 16} and min(scores[14], scores[15]) > scores[16]
    assert [i for i, w in enumerate(windows) if w["decision"] == "anomalous"] == [14, 15, 16]
    picture = tmp_path / "out_timeline" / "long.wav.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_and_onnx_predict_refuse_what_cannot_work_in_one_line(exported, tmp_path, monkeypatch):
    result, _, onnx_path = exported
    checkpoint = result["best_checkpoint"]
    with pytest.raises(ConfigError, match=r"^opset=12: an ONNX opset from 18 to 23"):
        export(checkpoint, tmp_path / "m.onnx", opset=12)
    with pytest.raises(ConfigError, match=r"output=.*m\.txt: give the path of a \.onnx file"):
        export(checkpoint, tmp_path / "m.txt")
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(DataError, match=r"text\.onnx is not an ONNX model that ONNX Runtime can load"):
        OnnxModel(tmp_path / "text.onnx")
    with pytest.raises(DataError, match=r"^no ONNX model at .*missing\.onnx"):
        OnnxModel(tmp_path / "missing.onnx")
    inputs = tmp_path / "in"
    write_wav(inputs / "id_00" / "clip.wav", seconds=3.0)
    with pytest.raises(ConfigError, match=r"^data\.clip_seconds=5: for an ONNX model only data\.channel, "
                                          r"data\.resample, data\.batch_size can be set"):
        predict(onnx_path, inputs, tmp_path / "p.csv", overrides=["data.clip_seconds=5"])
    with pytest.raises(ConfigError, match=r"^data\.channel=\(0, 1\) gives 2 channel\(s\), but the model was trained "
                                          r"on 1"):
        predict(onnx_path, inputs, tmp_path / "p.csv", overrides=["data.channel=[0,1]"])
    assert not (tmp_path / "p.csv").exists()

    def unsupported(*args, **kwargs):  # what torch's exporter raises for an operator ONNX lacks
        raise RuntimeError("Failed to convert the exported program to an ONNX model.\n<class 'DispatchError'>: No "
                           "ONNX function found for <OpOverload(op='aten.fancy_pool', overload='default')>.")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    with pytest.raises(ConfigError, match=r"^model=\w+ with model\.backbone=mobilenetv3_small_\d+ cannot be exported "
                                          r"to ONNX \(opset 18\): ONNX has no translation of the operator "
                                          r"aten\.fancy_pool; backbones that export: mobilenetv3_small_100, "):
        export(checkpoint, tmp_path / "m.onnx")
    assert not list(tmp_path.glob("*m.onnx*"))


def test_the_export_command_writes_the_file_or_says_why_not_in_one_line(exported, tmp_path):
    result, _, _ = exported
    command = [sys.executable, "-m", "machine_sound.export", f"ckpt_path={result['best_checkpoint']}",
               f"output={tmp_path / 'a b=c' / 'model.onnx'}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ONNX Runtime matches PyTorch to" in done.stdout and (tmp_path / "a b=c" / "model.onnx").is_file()
    done = subprocess.run([sys.executable, "-m", "machine_sound.export", f"ckpt_path={tmp_path / 'none.ckpt'}"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: no checkpoint at ")


def test_the_autoencoders_onnx_file_scores_silence_and_short_recordings_as_pytorch_does(tmp_path, data_dir):
    """The DCASE front end's dB floor (10 log10(mel power + 2.2e-16)) must survive the ONNX optimiser, or digital
    silence scores NaN."""
    result = train(make_cfg(tmp_path / "run", data_dir, ["data.reader.protocol=baseline", "model=autoencoder",
                                                         "trainer.max_epochs=1", "id=id_00"]))
    onnx_path, _ = export(result["best_checkpoint"], tmp_path / "ae.onnx")
    inputs = tmp_path / "in" / "id_00"
    inputs.mkdir(parents=True)
    sf.write(inputs / "silence.wav", np.zeros(32000, dtype=np.float32), 16000, subtype="PCM_16")
    write_wav(inputs / "short.wav", seconds=0.7)
    _, from_checkpoint = predict(result["best_checkpoint"], inputs, tmp_path / "ckpt.csv")
    _, from_onnx = predict(onnx_path, inputs, tmp_path / "onnx.csv")
    for onnx_row, checkpoint_row in zip(from_onnx, from_checkpoint):
        assert np.isfinite(onnx_row["anomaly_score"]) and onnx_row["decision"] == checkpoint_row["decision"]
        assert onnx_row["anomaly_score"] == pytest.approx(checkpoint_row["anomaly_score"], rel=1e-4)


def test_a_score_that_is_not_finite_gets_an_error_and_no_decision(tmp_path):
    model = loudness_model(tmp_path / "loud.onnx", threshold=1.0, samples=16000)
    onnx_model = OnnxModel(model)
    rows = score_row({"path": "a.wav"}, Path("a.wav"), np.array([float("nan")]), onnx_model)
    assert "decision" not in rows and "not a finite number" in rows["error"]


def test_timeline_pictures_of_files_with_one_name_stay_apart_and_a_rerun_replaces_them(tmp_path, monkeypatch):
    model = loudness_model(tmp_path / "loud.onnx", threshold=1.0, samples=16000)
    inputs = tmp_path / "in"
    for name in ("x.wav", "x.flac", "sub/x.wav", "sub__x.wav"):
        write_wav(inputs / name, seconds=2.5)
    predict(model, inputs, tmp_path / "out.csv", timeline=True)
    pictures = sorted(p.name for p in (tmp_path / "out_timeline").iterdir())
    assert pictures == ["sub__x.wav.png", "sub__x.wav_2.png", "x.flac.png", "x.wav.png"]
    (inputs / "x.flac").unlink()
    predict(model, inputs / "sub", tmp_path / "out.csv", timeline=True)
    assert sorted(p.name for p in (tmp_path / "out_timeline").iterdir()) == ["x.wav.png"]
    write_wav(tmp_path / "mine_timeline" / "rec.wav", seconds=2.5)  # a folder of the user's, in the timeline's place
    with pytest.raises(ConfigError, match=r"replaces the folder .*mine_timeline, which holds files that are not "
                                          r"timeline pictures \(rec\.wav\)"):
        predict(model, tmp_path / "mine_timeline", tmp_path / "mine.csv", timeline=True)
    assert (tmp_path / "mine_timeline" / "rec.wav").exists() and not (tmp_path / "mine.csv").exists()

    def no_matplotlib():
        raise ConfigError("timeline=true draws its pictures with matplotlib: pip install matplotlib")

    monkeypatch.setattr("machine_sound.timeline.pyplot", no_matplotlib)
    with pytest.raises(ConfigError, match="matplotlib"):
        predict(model, inputs, tmp_path / "new" / "p.csv", timeline=True)
    assert not (tmp_path / "new").exists()  # refused before anything was scored or written


def test_an_onnx_file_with_damaged_metadata_or_another_graph_is_refused_in_one_line(tmp_path):
    import onnx

    model = onnx.load(loudness_model(tmp_path / "loud.onnx", threshold=1.0, samples=16000))
    meta = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    good = json.loads(meta.value)
    for name, value in (("text", "{not json"), ("missing", json.dumps({**good, "sample_rate": None})),
                        ("two_ids", json.dumps({**good, "class_names": ["a", "b"], "threshold": [1, 1]})),
                        ("nan", json.dumps({**good, "threshold": [float("nan")]})),
                        ("scalar", json.dumps({**good, "threshold": 168.0})),
                        ("extra", json.dumps({**good, "threshold": [1.0, 2.0]})),
                        ("task", json.dumps({**good, "task": "multiclass"}))):
        meta.value = value
        onnx.save(model, tmp_path / f"{name}.onnx")
        with pytest.raises(DataError, match=rf"{name}\.onnx: its (machine_sound metadata is damaged|graph takes)"):
            OnnxModel(tmp_path / f"{name}.onnx")
