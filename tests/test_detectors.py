"""The normal-only detectors: the DCASE 2020 baseline as published, the kNN memory, the threshold from normal
clips, a fault scoring above the same clip without it, and one machine of your own end to end."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from machine_sound.config import instantiate
from machine_sound.errors import ConfigError
from machine_sound.metrics import gamma_threshold
from machine_sound.models.autoencoder import DenseAutoencoder
from machine_sound.models.knn import KnnMemory, knn_distance
from machine_sound.predict import predict
from machine_sound.synthetic.generator import SyntheticMimii
from machine_sound.train import train

BASELINE = ["data.reader.protocol=baseline"]


def keras_parameter_count(model: torch.nn.Module) -> int:
    """Parameters as Keras' `model.summary()` counts them: weights, biases and batch norm's gamma, beta, moving mean
    and moving variance (torch keeps the last two as buffers)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    return sum(p.numel() for p in model.parameters()) + sum(2 * m.num_features for m in norms)


def test_the_autoencoder_has_the_published_layers_and_parameter_count():
    model = DenseAutoencoder(class_names=["id_00"])
    linear = [(m.in_features, m.out_features) for m in model.net if isinstance(m, torch.nn.Linear)]
    assert linear == [(320, 128), (128, 128), (128, 128), (128, 128), (128, 8), (8, 128), (128, 128), (128, 128),
                      (128, 128), (128, 320)]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.net) == 9
    assert keras_parameter_count(model.net) == 187_752  # keras_model.get_model(320).summary()
    # The same network on 128 mels (the DCASE 2021-2022 baselines' 640 inputs) has their summary's 269,992.
    wide = DenseAutoencoder(class_names=["id_00"], frontend={"n_mels": 128})
    assert keras_parameter_count(wide.net) == 269_992
    assert model.hparams.vector_batch == 512


def test_the_autoencoders_vectors_are_the_baselines_file_to_vector_array(tmp_path):
    """common.file_to_vector_array of the DCASE 2020 baseline: librosa's mel power, 10·log10(mel + eps), 5 frames
    stacked frame-major."""
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal(16000) + 0.2 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000))
    y = y.astype(np.float32)
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=512, n_mels=64, power=2.0,
                                         pad_mode="reflect")
    log_mel = 20.0 / 2.0 * np.log10(mel + sys.float_info.epsilon)
    n = log_mel.shape[1] - 5 + 1
    expected = np.zeros((n, 320))
    for t in range(5):
        expected[:, 64 * t: 64 * (t + 1)] = log_mel[:, t: t + n].T
    vectors = DenseAutoencoder(class_names=["id_00"]).vectors(torch.from_numpy(y)[None, None])[0].numpy()
    assert vectors.shape == expected.shape
    assert np.abs(vectors - expected).max() < 0.05  # dB; float32 STFT against librosa's float64


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 3])
def test_knn_distance_equals_scikit_learns_brute_force_neighbours(metric, k):
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(1)
    memory, queries = rng.normal(size=(50, 16)), rng.normal(size=(7, 16))
    expected = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(memory).kneighbors(queries)[0]
    got = knn_distance(torch.from_numpy(queries), torch.from_numpy(memory), k, metric)
    np.testing.assert_allclose(got.numpy(), expected.mean(axis=1), rtol=1e-5, atol=1e-5)


def test_the_knn_memory_searches_each_ids_rows_and_travels_in_the_state_dict():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(2)
    embeddings, labels = torch.from_numpy(rng.normal(size=(30, 8))), torch.tensor([0] * 10 + [1] * 20)
    memory = KnnMemory(k=2)
    memory.store(embeddings, labels)
    queries = torch.from_numpy(rng.normal(size=(4, 8)))
    got = memory.id_distances(queries, 2)
    for k in (0, 1):
        rows = embeddings[labels == k].numpy()
        expected = NearestNeighbors(n_neighbors=2, algorithm="brute", metric="cosine").fit(rows).kneighbors(queries)
        np.testing.assert_allclose(got[:, k].numpy(), expected[0].mean(axis=1), rtol=1e-5, atol=1e-5)
    restored = KnnMemory(k=2)  # empty, as a model is before its checkpoint loads
    restored.load_state_dict(memory.state_dict())
    assert torch.equal(restored.id_distances(queries, 2), got)
    with pytest.raises(ConfigError, match="model.k=0"):
        KnnMemory(k=0)


def test_the_gamma_threshold_is_scipys_percentile_and_falls_back_on_too_few_values():
    from scipy import stats

    scores = torch.from_numpy(np.random.default_rng(3).gamma(4.0, 2.0, size=300))
    shape, loc, scale = stats.gamma.fit(scores.numpy())
    assert gamma_threshold(scores, 90) == pytest.approx(stats.gamma.ppf(0.9, shape, loc=loc, scale=scale))
    assert gamma_threshold(torch.tensor([2.0, 2.0, 2.0]), 90) == 2.0
    with pytest.raises(ValueError, match="at least one normal clip"):
        gamma_threshold(torch.tensor([]), 90)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_threshold_is_fitted_on_normal_validation_clips_only(cfg_factory, tmp_path):
    run = tmp_path / "run"
    result = train(cfg_factory(*BASELINE, "model=autoencoder", "trainer.max_epochs=2", "data.generator.n_normal=46",
                               f"paths.data_dir={tmp_path / 'data'}", output_dir=run))
    split = read_rows(run / "split.csv")
    val = [r for r in split if r["split"] == "val"]
    assert val and all(r["anomalous"] == "0" for r in val)  # no anomalous clip outside the test set
    assert {r["anomalous"] for r in split if r["split"] == "test"} == {"0", "1"}
    model = DenseAutoencoder.load_from_checkpoint(result["best_checkpoint"], weights_only=True).eval()
    waves = [sf.read(r["path"], dtype="float32")[0][:32000] for r in val]
    with torch.no_grad():
        scores = model(torch.from_numpy(np.stack(waves))[:, None])[:, 0]
    assert len(val) == 4 and result["threshold"] == {"id_04": pytest.approx(gamma_threshold(scores, 90), rel=1e-4)}
    assert result["checkpoint_rule"] == "lowest val/loss on normal validation clips"
    assert result["model"] == "autoencoder" and result["threshold_percentile"] == 90


DETECTORS = {
    "autoencoder": ["model=autoencoder", "trainer.max_epochs=40"],
    "embedding_knn": ["model=embedding_knn"],
    # Its default: ArcFace and the kNN scorer. The other scorer, 1 - p(own ID), is not monotone in a fault's
    # loudness on data this small (a softmax is confident far from its training clips).
    "id_classifier": ["model=id_classifier", "trainer.max_epochs=3", "data.reader.machines.pump=[id_00,id_02]"],
}


def loud_fault(clean: np.ndarray, seed: int) -> np.ndarray:
    """`clean` with a loud fault added: eight 100 ms bursts of broadband knocking, each 10x the clip's RMS."""
    rng = np.random.default_rng(seed)
    fault = np.zeros_like(clean)
    length = int(0.1 * 16000)
    for start in rng.integers(0, len(clean) - length, 8):
        fault[start:start + length] += rng.normal(0, 1, length) * np.hanning(length)
    return clean + 10 * np.sqrt(np.mean(clean ** 2)) * fault


@pytest.mark.parametrize("detector", DETECTORS)
def test_a_loud_fault_scores_higher_than_the_same_clip_without_it(cfg_factory, tmp_path, detector):
    """Normal recordings the detector has not heard, each with a loud fault added and without it: every detector
    must score the faulty one higher."""
    settings = [*BASELINE, "machine=pump", "id=id_00", *DETECTORS[detector]]
    result = train(cfg_factory(*settings, output_dir=tmp_path / "run"))
    from hydra.utils import get_class

    model = get_class(cfg_factory(*settings).model._target_).load_from_checkpoint(
        result["best_checkpoint"], weights_only=True).eval()
    generator = SyntheticMimii(n_normal=15, n_abnormal=6, duration_s=2.0)
    clean = np.stack([generator.clip("-6_dB", "pump", "id_00", "normal", 100 + i)[:, 0] for i in range(4)])
    faulty = np.stack([loud_fault(wave, seed=i) for i, wave in enumerate(clean)])
    own = torch.zeros(len(clean), dtype=torch.long)
    with torch.no_grad():
        with_fault = model.anomaly_score(torch.from_numpy(faulty).float()[:, None], own)
        without = model.anomaly_score(torch.from_numpy(clean).float()[:, None], own)
    assert (with_fault > without).all()


def make_machine_folder(root, n_train=12, n_test=4, seconds=1.0):
    """<root>/train/*.wav, test/normal/*.wav, test/anomaly/*.wav: a hum in noise; the anomalies add loud knocks."""
    t = np.arange(int(16000 * seconds)) / 16000
    for folder, count, fault in (("train", n_train, False), ("test/normal", n_test, False),
                                 ("test/anomaly", n_test, True)):
        for i in range(count):
            rng = np.random.default_rng([i, int(fault), len(folder)])
            wave = 0.3 * np.sin(2 * np.pi * 120 * t) + rng.normal(0, 0.05, t.size)
            if fault:
                wave = loud_fault(wave, seed=i)
            path = root / folder / f"{i:03d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, np.clip(wave, -1, 1).astype(np.float32), 16000, subtype="PCM_16")
    return root


@pytest.mark.parametrize("detector, settings", [
    ("autoencoder", ["trainer.max_epochs=30", "model.vector_batch=64"]),  # about 300 steps: its dB need them
    ("embedding_knn", []),
])
def test_one_machine_of_your_own_trains_tests_and_predicts(cfg_factory, tmp_path, detector, settings):
    root = make_machine_folder(tmp_path / "my_pump")
    run = tmp_path / "run"
    result = train(cfg_factory("data=machine_folder", f"data.root={root}", f"model={detector}",
                               "data.clip_seconds=1.0", *settings, output_dir=run))
    assert result["classes"] == ["my_pump"] and result["layout"] == "machine_folder"
    assert result["metrics"]["auroc"] > 0.9 and set(result["threshold"]) == {"my_pump"}
    output, rows = predict(result["best_checkpoint"], root / "test" / "anomaly", tmp_path / "p.csv")
    assert [r["decision"] for r in rows].count("anomalous") >= 3
    assert all(r["machine_id"] == "my_pump" and float(r["anomaly_score"]) > r["threshold"] for r in rows[:1])
    scores = {r["path"]: r for r in read_rows(run / "test_scores.csv")}
    assert {r["decision"] for r in scores.values()} <= {"normal", "anomalous"}


def test_a_machine_folder_without_anomalous_test_clips_is_named(cfg_factory, tmp_path):
    from machine_sound.errors import DataError

    root = make_machine_folder(tmp_path / "m")
    for path in (root / "test" / "anomaly").iterdir():
        path.unlink()
    with pytest.raises(DataError, match=r"no .* files in .*test/anomaly \(anomalous test recordings\)"):
        instantiate(cfg_factory("data=machine_folder", f"data.root={root}", "model=embedding_knn").data).setup()


def test_the_id_classifier_with_one_id_and_the_classifier_without_faults_name_what_works(cfg_factory):
    with pytest.raises(ConfigError, match="model=id_classifier learns to tell machine IDs .*apart, but the data has "
                                          "one .*use model=autoencoder or model=embedding_knn"):
        instantiate(cfg_factory(*BASELINE, "model=id_classifier").model, class_names=["id_00"])
    with pytest.raises(ConfigError, match="model=classifier cannot learn from; choose model=autoencoder, "
                                          "model=embedding_knn, model=id_classifier"):
        instantiate(cfg_factory(*BASELINE).model)


@pytest.mark.parametrize("detector, own, epochs", [("autoencoder", True, 100), ("embedding_knn", True, 1),
                                                   ("id_classifier", False, 20)])
def test_each_detector_brings_its_recipe_and_the_ids_it_learns(detector, own, epochs):
    from machine_sound.config import compose

    cfg = compose([*BASELINE, f"model={detector}"])
    assert cfg.data.reader.train_ids == ("own" if own else "all")  # MIMII: this ID's normal files, or every ID's
    assert cfg.data.split.val == 0.1 and cfg.trainer.max_epochs == epochs
    assert compose([*BASELINE, f"model={detector}", "trainer.max_epochs=5"]).trainer.max_epochs == 5


def test_dcase2020_with_a_single_machine_id_trains_a_detector(cfg_factory, tmp_path):
    from test_layouts import make_dcase

    root = make_dcase(tmp_path / "dcase", ids=("id_00",), n_train=10, n_test=3)
    result = train(cfg_factory("data=dcase2020", f"data.root={root}", "machine=fan", "model=embedding_knn",
                               "data.clip_seconds=1.0"))
    assert result["classes"] == ["id_00"] and set(result["per_id"]) == {"id_00"}
    assert result["metrics"]["auroc"] == result["metrics"]["auroc_id_00"]


def test_id_all_tests_every_id_with_one_model_of_the_machine_type(cfg_factory, tmp_path):
    from conftest import make_mimii

    for machine_id in ("id_00", "id_02"):
        make_mimii(tmp_path / "mimii", n_normal=9, n_abnormal=3, machine_id=machine_id, seconds=1.0)
    cfg = cfg_factory("data=mimii", f"data.root={tmp_path / 'mimii'}", "machine=pump", "id=all", *BASELINE,
                      "data.reader.machines.pump=[id_00,id_02]", "model=autoencoder", "data.clip_seconds=1.0")
    assert cfg.data.reader.train_ids == "all"  # one model per machine type, whatever the detector
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    test = datamodule.splits["test"]
    assert sorted({(r.label, r.anomalous) for r in test}) == [(0, 0), (0, 1), (1, 0), (1, 1)] and len(test) == 12
    with pytest.raises(ConfigError, match="id=all tests every ID of the machine type: it needs "
                                          "data.reader.protocol=baseline"):
        instantiate(cfg_factory("id=all").data)


def test_the_comparison_table_summarises_seeds_and_compares_with_the_autoencoder(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import compare_detectors

    values = {("autoencoder", 0): 0.60, ("autoencoder", 1): 0.64, ("embedding_knn", 0): 0.80,
              ("embedding_knn", 1): 0.84}
    for (model, seed), auroc in values.items():
        job = tmp_path / "sweep" / "-6_dB_pump" / "all" / f"seed={seed},model={model}"
        (job / ".hydra").mkdir(parents=True)
        per_id = {"id_00": {"auroc": auroc, "pauc": auroc - 0.1}, "id_02": {"auroc": auroc + 0.02, "pauc": 0.5}}
        (job / "metrics.json").write_text(json.dumps({"task": "id_anomaly", "model": model, "machine": "pump",
                                                      "snr": "-6_dB", "seed": seed, "per_id": per_id}))
    compare_detectors.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "table.md")])
    text = (tmp_path / "table.md").read_text()
    assert "| pump | id_02 | 0.640 ± 0.028 | 0.840 ± 0.028 |" in text  # mean ± std over the two seeds
    assert "| **all** | **mean** | **0.630 ± 0.028** | **0.830 ± 0.028** |" in text
    assert "Best detector: embedding_knn, mean AUROC +0.200 against the autoencoder (2 seeds; beyond" in text
    assert "Target (+0.15 beyond the spread): met." in text

    def job(folder, model, seed, machine, auroc):
        path = folder / f"-6_dB_{machine}" / "all" / f"seed={seed},model={model}"
        (path / ".hydra").mkdir(parents=True)
        (path / "metrics.json").write_text(json.dumps({
            "task": "id_anomaly", "model": model, "machine": machine, "snr": "-6_dB", "seed": seed,
            "per_id": {"id_00": {"auroc": auroc, "pauc": 0.5}}}))

    lower = tmp_path / "lower"
    for seed, shift in ((0, 0.0), (1, 0.02)):
        for machine in ("fan", "pump"):
            job(lower, "autoencoder", seed, machine, 0.70 + shift)
            job(lower, "id_classifier", seed, machine, 0.60 + shift)
    job(lower, "autoencoder", 2, "pump", 0.10)  # a seed still running: pump done, fan not yet
    compare_detectors.main([str(lower), "--out", str(tmp_path / "lower.md")])
    text = (tmp_path / "lower.md").read_text()
    assert "| **all** | **mean** | **0.710 ± 0.014** | **0.610 ± 0.014** |" in text  # seed 2 is not in it yet
    assert ("mean AUROC -0.100 against the autoencoder (2 seeds; beyond the sum of their standard deviations over "
            "seeds, 0.028). The autoencoder is the best detector. Target (+0.15 beyond the spread): not met.") in text
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no finished detector run under"):
        compare_detectors.main([str(tmp_path / "empty")])


def test_eval_of_a_detector_reproduces_its_run(cfg_factory, tmp_path):
    from machine_sound.eval import evaluate

    result = train(cfg_factory(*BASELINE, "model=embedding_knn", output_dir=tmp_path / "run"))
    again = evaluate(result["best_checkpoint"], output_dir=tmp_path / "eval")
    assert again["metrics"] == pytest.approx(result["metrics"]) and again["threshold"] == result["threshold"]
    assert (tmp_path / "eval" / "test_scores.csv").read_text() == (tmp_path / "run" / "test_scores.csv").read_text()


def test_clips_too_short_for_one_autoencoder_vector_are_refused_in_one_line(cfg_factory):
    from machine_sound.runs import check_fits

    cfg = cfg_factory(*BASELINE, "model=autoencoder", "data.clip_seconds=0.1")
    model = instantiate(cfg.model, class_names=["id_04"])
    assert model.min_samples == 4 * 512  # 5 frames, one per hop
    with pytest.raises(ConfigError, match=r"data.clip_seconds=0.1 gives 1600 samples, fewer than one of the model's "
                                          r"vectors needs \(2048: model.frames STFT frames\); use longer clips"):
        check_fits(cfg, model)


def test_a_detector_reports_only_the_ids_it_tested_and_id_all_refuses_train_ids_own(cfg_factory, tmp_path):
    result = train(cfg_factory(*BASELINE, "model=id_classifier", "data.reader.machines.pump=[id_00,id_02]",
                               "machine=pump", "id=id_02", output_dir=tmp_path / "run"))
    assert set(result["per_id"]) == {"id_02"} and "auroc_id_00" not in result["metrics"]
    with pytest.raises(ConfigError, match="id=all learns one model from the normal files of every ID"):
        instantiate(cfg_factory(*BASELINE, "id=all", "data.reader.train_ids=own").data)
