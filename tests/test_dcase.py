"""DCASE 2021-2025 Task 2: names, layouts, the evaluators' metrics and official score, the challenge's files,
domain-aware kNN, the synthetic DCASE-like tree, and the genuine DCASE 2023 samples end to end."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from conftest import REAL_SAMPLES, write_wav
from machine_sound.challenge import official_score, section_metrics, summary_metrics
from machine_sound.data.readers.dcase import DcaseReader, parse_name
from machine_sound.data.sampler import domain_share_weights
from machine_sound.errors import ConfigError, DataError
from machine_sound.models.knn import KnnMemory, knn_distance
from machine_sound.predict import predict
from machine_sound.train import train

DCASE2023 = REAL_SAMPLES / "dcase2023"
needs_samples = pytest.mark.skipif(not DCASE2023.exists(), reason="needs ../shared/real-samples")
SMALL_TREE = ["data.generator.n_source_train=12", "data.generator.n_target_train=3", "data.generator.n_test=6",
              "data.clip_seconds=2.0", "data.batch_size=4", "model.norm_clips=8", "trainer.max_epochs=1"]

# Every genuine DCASE 2023 sample: (section, domain, split, condition, number, attributes as parsed).
SHARED = {
    "ToyCar/test/section_00_source_test_normal_0028_car_C2_spd_34V_mic_1.wav":
        ("section_00", "source", "test", "normal", "0028", {"car": "C2", "spd": "34V", "mic": "1"}),
    "ToyCar/test/section_00_source_test_normal_0029_car_C2_spd_34V_mic_1.wav":
        ("section_00", "source", "test", "normal", "0029", {"car": "C2", "spd": "34V", "mic": "1"}),
    "ToyCar/train/section_00_source_train_normal_0362_car_C2_spd_31V_mic_1.wav":
        ("section_00", "source", "train", "normal", "0362", {"car": "C2", "spd": "31V", "mic": "1"}),
    "ToyCar/train/section_00_source_train_normal_0835_car_D2_spd_34V_mic_1.wav":
        ("section_00", "source", "train", "normal", "0835", {"car": "D2", "spd": "34V", "mic": "1"}),
    "fan/test/section_00_source_test_anomaly_0022_m-n_W.wav":
        ("section_00", "source", "test", "anomaly", "0022", {"m-n": "W"}),
    "fan/test/section_00_target_test_normal_0021_m-n_Y.wav":
        ("section_00", "target", "test", "normal", "0021", {"m-n": "Y"}),
    "fan/train/section_00_source_train_normal_0040_m-n_X.wav":
        ("section_00", "source", "train", "normal", "0040", {"m-n": "X"}),
    "fan/train/section_00_source_train_normal_0397_m-n_X.wav":
        ("section_00", "source", "train", "normal", "0397", {"m-n": "X"}),
    "valve/test/section_00_target_test_anomaly_0044_pat_03.wav":
        ("section_00", "target", "test", "anomaly", "0044", {"pat": "03"}),
    "valve/test/section_00_target_test_normal_0044_pat_03.wav":
        ("section_00", "target", "test", "normal", "0044", {"pat": "03"}),
    "valve/train/section_00_source_train_normal_0095_pat_01.wav":
        ("section_00", "source", "train", "normal", "0095", {"pat": "01"}),
    "valve/train/section_00_source_train_normal_0206_pat_01.wav":
        ("section_00", "source", "train", "normal", "0206", {"pat": "01"}),
}


@needs_samples
def test_every_shared_dcase2023_name_is_parsed():
    found = sorted(str(p.relative_to(DCASE2023)) for p in DCASE2023.rglob("*.wav"))
    assert found == sorted(SHARED)
    for path, (section, domain, split, condition, number, attributes) in SHARED.items():
        name = parse_name(Path(path).name)
        assert (name.section, name.domain, name.split, name.condition, name.number) == (
            section, domain, split, condition, number)
        assert name.attribute_values == attributes


def test_names_of_other_years_and_of_evaluation_sets():
    hidden = parse_name("section_00_source_train_normal_0001_noAttribute.wav")  # DCASE 2024: attributes withheld
    assert hidden.attributes == "" and hidden.attribute_values == {}
    bare = parse_name("section_02_target_test_anomaly_0012.wav")  # DCASE 2021 test clips carry none
    assert (bare.section, bare.domain, bare.condition, bare.attributes) == ("section_02", "target", "anomaly", "")
    anonymous = parse_name("section_03_0012.wav")  # an evaluation set's test clip
    assert (anonymous.section, anonymous.domain, anonymous.condition) == ("section_03", "", "")
    assert parse_name("section_00_source_train_normal_0001_vel_6_loc.wav").attribute_values == {
        "attributes": "vel_6_loc"}
    assert parse_name("normal_id_00_00000000.wav") is None


def _tree(root: Path, machine: str = "fan", year: int = 2023, evaluation: bool = False) -> Path:
    folder = root / machine
    for i in range(4):
        write_wav(folder / "train" / f"section_00_source_train_normal_{i:04d}_a_{i % 2}.wav", 1.0, seed=i)
    write_wav(folder / "train" / "section_00_target_train_normal_0004_a_9.wav", 1.0, seed=4)
    tests = ["section_00_source_test_normal_0000_a_0.wav", "section_00_source_test_anomaly_0001_a_0.wav",
             "section_00_target_test_normal_0002_a_9.wav", "section_00_target_test_anomaly_0003_a_9.wav"]
    for i, name in enumerate(tests):
        if year == 2021:
            domain = name.split("_")[2]
            name = name if not evaluation else f"section_00_{i:04d}.wav"
            write_wav(folder / f"{domain}_test" / name, 1.0, seed=10 + i)
        else:
            write_wav(folder / "test" / (f"section_00_{i:04d}.wav" if evaluation else name), 1.0, seed=10 + i)
    return root


def test_the_reader_takes_each_years_layout_and_says_what_cannot_be_tested(tmp_path):
    write_wav(tmp_path / "y2023" / "fan" / "train" / "section_00_source_train_normal_0009_a_0.wav", 2.0)
    index = DcaseReader(str(_tree(tmp_path / "y2023")), "fan").read()
    assert index.class_names == ("section_00",)
    assert index.aux_names == ("section_00_a_0", "section_00_a_1", "section_00_a_9")
    assert index.clip_seconds == 2.0  # the longest training file
    assert sorted((r.domain, r.anomalous) for r in index.records if r.split == "test") == [
        ("source", 0), ("source", 1), ("target", 0), ("target", 1)]

    index = DcaseReader(str(_tree(tmp_path / "y2021", year=2021)), "fan").read()
    assert {r.domain for r in index.records if r.split == "test"} == {"source", "target"}
    assert index.evaluator == "dcase2021"

    index = DcaseReader(str(_tree(tmp_path / "eval", evaluation=True)), "fan").read()
    assert not [r for r in index.records if r.split == "test"] and index.evaluator == "dcase2022"
    assert index.untested.startswith("the 4 test clip(s) are anonymised evaluation clips without labels; score them "
                                     "with machine_sound.predict")


def test_attributes_come_from_the_csv_where_the_dataset_has_one(tmp_path):
    root = _tree(tmp_path)
    with open(root / "fan" / "attributes_00.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "d1p", "d1v", "d2p", "d2v"])
        for path in sorted((root / "fan" / "train").iterdir()):
            writer.writerow([f"fan/train/{path.name}", "speed", "7", "load", ""])
    assert DcaseReader(str(root), "fan").read().aux_names == ("section_00_speed_7",)
    assert DcaseReader(str(root), "fan", aux_labels="section").read().aux_names == ("section_00",)
    text = (root / "fan" / "attributes_00.csv").read_text()  # Excel's "CSV UTF-8" starts with a byte-order mark
    (root / "fan" / "attributes_00.csv").write_text("\ufeff" + text.replace(",speed,7,", ",speed,,"))
    assert DcaseReader(str(root), "fan").read().aux_names == (  # empty values: the names' attributes stand
        "section_00_a_0", "section_00_a_1", "section_00_a_9")
    pump = _tree(tmp_path / "two", "pump")  # with machine=all, one type's table does not reach another type
    _tree(pump, "fan")
    shutil.copy(root / "fan" / "attributes_00.csv", pump / "pump" / "attributes_00.csv")
    (pump / "pump" / "attributes_00.csv").write_text(text.replace("fan/", "pump/"))
    assert DcaseReader(str(pump), "all").read().aux_names == (
        "fan_section_00_a_0", "fan_section_00_a_1", "fan_section_00_a_9", "pump_section_00_speed_7")


def test_bad_dcase_data_is_named(tmp_path):
    (tmp_path / "y2021").mkdir()
    both = _tree(tmp_path / "y2021", year=2021)
    shutil.copytree(both / "fan" / "source_test", both / "fan" / "test")
    with pytest.raises(DataError, match="holds both test/ .* and source_test/ .*keep one year's layout"):
        DcaseReader(str(both), "fan").read()
    shutil.rmtree(both / "fan" / "test")
    moved = both / "fan" / "source_test" / "section_00_target_test_normal_0002_a_9.wav"
    shutil.copy(both / "fan" / "target_test" / moved.name, moved)
    with pytest.raises(DataError, match=f"{moved.name}: a clip of the other domain in source_test/"):
        DcaseReader(str(both), "fan").read()
    (tmp_path / "y2021" / "pump").mkdir()
    with pytest.raises(DataError, match="machine=pump: .*pump has no train/ folder"):
        DcaseReader(str(both), "pump").read()

    root = _tree(tmp_path)
    (root / "fan" / "attributes_00.csv").write_bytes("file_name,d1p,d1v\nx.wav,caf\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="attributes_00.csv: cannot be read as DCASE's attributes table"):
        DcaseReader(str(root), "fan").read()
    (root / "fan" / "attributes_00.csv").unlink()
    with pytest.raises(ConfigError, match="machine=pump: no such machine type .*found fan"):
        DcaseReader(str(root), "pump").read()
    bad = write_wav(root / "fan" / "train" / "section_00_source_train_anomaly_0009_a_0.wav", 1.0)
    with pytest.raises(DataError, match=f"{bad.name}: not a normal training clip"):
        DcaseReader(str(root), "fan").read()
    bad.unlink()
    odd = write_wav(root / "fan" / "test" / "clip.wav", 1.0)
    with pytest.raises(DataError, match=f"{odd}: the name is not section_XX"):
        DcaseReader(str(root), "fan").read()


def _evaluator_2022(scores, y, domain):
    """One section's values as dcase2023_task2_evaluator computes them (sklearn, its masks)."""
    out = {"pauc": roc_auc_score(y, scores, max_fpr=0.1)}
    for d, name in enumerate(("source", "target")):
        keep = (domain == d) | (y != 0)
        out[f"auroc_{name}"] = roc_auc_score(y[keep], scores[keep])
    return out


def test_the_section_metrics_and_official_score_are_the_evaluators():
    rng = np.random.default_rng(0)
    n = 120
    labels = np.repeat([0, 1], n // 2)
    y, domain = rng.integers(0, 2, n), rng.integers(0, 2, n)
    scores = rng.normal(size=n) + y * np.where(labels == 0, 0.8, 0.2)
    args = [torch.tensor(a) for a in (scores, y, labels, domain)]
    per_section = section_metrics(*args, ["section_00", "section_01"], "dcase2022")
    expected_terms = []
    for k, name in enumerate(["section_00", "section_01"]):
        own = labels == k
        expected = _evaluator_2022(scores[own], y[own], domain[own])
        for key, value in expected.items():
            assert per_section[name][key] == pytest.approx(value, abs=1e-6)
        expected_terms += [expected["auroc_source"], expected["auroc_target"], expected["pauc"]]
    score, why = official_score(per_section, "dcase2022")
    assert why == "" and score == pytest.approx(stats.hmean(np.maximum(expected_terms, sys.float_info.epsilon)))
    assert summary_metrics(per_section)["official_score"] == score

    # 2021: each domain's own clips, AUROC and pAUC of every section and domain in the harmonic mean
    per_section = section_metrics(*args, ["section_00", "section_01"], "dcase2021")
    terms = []
    for k, name in enumerate(["section_00", "section_01"]):
        for d, dom in enumerate(("source", "target")):
            keep = (labels == k) & (domain == d)
            auroc, pauc = roc_auc_score(y[keep], scores[keep]), roc_auc_score(y[keep], scores[keep], max_fpr=0.1)
            assert per_section[name][f"auroc_{dom}"] == pytest.approx(auroc, abs=1e-6)
            assert per_section[name][f"pauc_{dom}"] == pytest.approx(pauc, abs=1e-6)
            terms += [auroc, pauc]
    assert official_score(per_section, "dcase2021")[0] == pytest.approx(stats.hmean(terms))


def test_a_zero_is_floored_and_a_missing_term_is_said():
    y, domain = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 1])
    inverted = section_metrics(torch.tensor([1.0, 0.0, 1.0, 0.0]), y, torch.zeros(4), domain, ["s"])
    assert inverted["s"]["auroc_source"] == 0.0
    score, _ = official_score(inverted)
    assert 0 < score < 1e-15  # the evaluators' floor (sys.float_info.epsilon) keeps the harmonic mean defined
    no_target_normal = section_metrics(torch.tensor([0.1, 0.9, 0.8]), torch.tensor([0, 1, 1]), torch.zeros(3),
                                       torch.tensor([0, 0, 1]), ["s"])
    assert no_target_normal["s"]["auroc_target"] is None
    assert no_target_normal["s"]["missing"] == {"auroc_target": "no target-domain normal test clip"}
    assert official_score(no_target_normal) == (None, "missing auroc_target of s (no target-domain normal test clip)")


def test_domain_aware_knn_takes_the_nearer_domain_and_kmeans_shrinks_the_source():
    rng = np.random.default_rng(1)
    memory_rows, queries = rng.normal(size=(40, 8)), rng.normal(size=(5, 8))
    domains = np.array([0] * 36 + [1] * 4)
    memory = KnnMemory(k=2, metric="euclidean", by_domain=True)
    memory.store(torch.tensor(memory_rows), torch.zeros(40), torch.tensor(domains))
    expected = np.minimum(*(NearestNeighbors(n_neighbors=2).fit(memory_rows[domains == d]).kneighbors(queries)[0]
                            .mean(1) for d in (0, 1)))
    assert memory.id_distances(torch.tensor(queries), 1)[:, 0].numpy() == pytest.approx(expected, abs=1e-5)
    plain = KnnMemory(k=2, metric="euclidean")
    plain.store(torch.tensor(memory_rows), torch.zeros(40), torch.tensor(domains))
    everything = NearestNeighbors(n_neighbors=2).fit(memory_rows).kneighbors(queries)[0].mean(1)
    assert plain.id_distances(torch.tensor(queries), 1)[:, 0].numpy() == pytest.approx(everything, abs=1e-5)

    means = KnnMemory(k=1, by_domain=True, source_means=4)
    means.store(torch.tensor(memory_rows), torch.zeros(40), torch.tensor(domains))
    assert (means.domains == 0).sum() == 4 and (means.domains == 1).sum() == 4
    reloaded = KnnMemory(k=1, by_domain=True, source_means=4)
    reloaded.load_state_dict(means.state_dict())
    assert torch.equal(reloaded.embeddings, means.embeddings) and torch.equal(reloaded.domains, means.domains)
    old = {"embeddings": torch.ones(3, 2), "labels": torch.zeros(3, dtype=torch.long)}  # stored before domains
    KnnMemory().load_state_dict(old)
    with pytest.raises(ConfigError, match="source_means=4 .*by_domain=true"):
        KnnMemory(source_means=4)
    assert knn_distance(torch.ones(1, 2), torch.ones(2, 2)).item() == pytest.approx(0.0, abs=1e-6)


def test_target_clips_get_their_share_of_training_draws():
    labels = np.array([0] * 99 + [0] + [1] * 10)
    target = np.array([False] * 99 + [True] + [False] * 10)
    weights = domain_share_weights(np.ones(len(labels)), labels, target, 0.2)
    assert weights[target].sum() / weights[labels == 0].sum() == pytest.approx(0.2)
    assert weights[labels == 1].sum() == pytest.approx(10) and weights[labels == 0].sum() == pytest.approx(100)


def test_the_synthetic_dcase_tree_trains_tests_and_writes_the_challenges_files(cfg_factory, tmp_path):
    cfg = cfg_factory("data=synthetic_dcase", "machine=fan", "model=embedding_knn", *SMALL_TREE,
                      "model.source_means=2")
    result = train(cfg)
    root = Path(cfg.data.root) / "fan"
    names = sorted(p.name for p in (root / "train").iterdir())
    assert len(names) == 15 and sum("_target_" in n for n in names) == 3
    assert names[0] == "section_00_source_train_normal_0000_spd_090_bg_0dB.wav"
    assert (root / "attributes_00.csv").read_text().splitlines()[1] == (
        "fan/train/section_00_source_train_normal_0000_spd_090_bg_0dB.wav,spd,090,bg,0dB")
    m = result["metrics"]
    assert {"auroc_source", "auroc_target", "pauc", "official_score"} <= set(m)
    assert m["official_score"] == pytest.approx(stats.hmean([m["auroc_source"], m["auroc_target"], m["pauc"]]))
    assert result["evaluator"] == "dcase2022" and set(result["per_id"]) == {"section_00"}

    checkpoint = next(Path(cfg.paths.output_dir, "checkpoints").glob("*.ckpt"))
    out = tmp_path / "submission"
    _, rows = predict(checkpoint, root / "test", out)
    tested = sorted(p.name for p in (root / "test").iterdir())
    scores = list(csv.reader(open(out / "anomaly_score_fan_section_00_test.csv")))
    decisions = list(csv.reader(open(out / "decision_result_fan_section_00_test.csv")))
    assert [r[0] for r in scores] == tested == [r[0] for r in decisions]
    assert {r[1] for r in decisions} <= {"0", "1"}
    by_name = {Path(r["path"]).name: r for r in rows}
    assert all(float(s) == pytest.approx(by_name[n]["anomaly_score"], rel=1e-6) for n, s in scores)
    with open(cfg.paths.output_dir + "/test_scores.csv") as f:
        test_scores = {Path(r["path"]).name: float(r["anomaly_score"]) for r in csv.DictReader(f)}
    assert all(test_scores[n] == pytest.approx(float(s), rel=1e-4, abs=1e-6) for n, s in scores)


def test_an_evaluation_set_trains_untested_and_predict_writes_each_domains_files(cfg_factory, tmp_path):
    root = _tree(tmp_path / "eval2021", year=2021, evaluation=True)
    cfg = cfg_factory("data=dcase", f"data.root={root}", "machine=fan", "model=embedding_knn", "data.cache_dir=null",
                      "data.clip_seconds=null", "model.norm_clips=2", "data.batch_size=2")
    result = train(cfg)
    assert result["metrics"] == {} and "anonymised evaluation clips without labels" in result["untested"]
    assert json.loads(Path(cfg.paths.output_dir, "metrics.json").read_text())["untested"] == result["untested"]
    checkpoint = next(Path(cfg.paths.output_dir, "checkpoints").glob("*.ckpt"))
    predict(checkpoint, root / "fan", tmp_path / "submission")
    assert sorted(p.name for p in (tmp_path / "submission").iterdir()) == [
        "anomaly_score_fan_section_00_source_test.csv", "anomaly_score_fan_section_00_target_test.csv",
        "decision_result_fan_section_00_source_test.csv", "decision_result_fan_section_00_target_test.csv",
        "predictions_fan.csv"]
    rows = list(csv.reader(open(tmp_path / "submission" / "anomaly_score_fan_section_00_target_test.csv")))
    assert [r[0] for r in rows] == sorted(p.name for p in (root / "fan" / "target_test").iterdir())


def test_predict_checks_dcase_inputs_before_scoring_and_writes_one_line_errors(cfg_factory, tmp_path):
    root = _tree(tmp_path / "data")
    cfg = cfg_factory("data=dcase", f"data.root={root}", "machine=fan", "model=embedding_knn", "data.cache_dir=null",
                      "data.clip_seconds=null", "model.norm_clips=2", "data.batch_size=2")
    train(cfg)
    checkpoint = next(Path(cfg.paths.output_dir, "checkpoints").glob("*.ckpt"))
    out = tmp_path / "submission"
    other = write_wav(tmp_path / "valve" / "test" / "section_00_source_test_normal_0000_a_0.wav", 1.0)
    with pytest.raises(DataError, match=f"{other} is in a valve/ folder, but the model learned fan"):
        predict(checkpoint, tmp_path / "valve", out)
    twice = tmp_path / "twice"
    for sub in ("a", "b"):
        write_wav(twice / sub / "section_00_0000.wav", 1.0)
    with pytest.raises(DataError, match="have the same name, which the challenge's files cannot tell apart"):
        predict(checkpoint, twice, out)
    mixed = tmp_path / "mixed"
    shutil.copytree(root / "fan" / "test", mixed)
    write_wav(mixed / "recording_A.wav", 1.0)
    with pytest.raises(DataError, match="recording_A.wav: not a DCASE 2021-2025 file name"):
        predict(checkpoint, mixed, out)
    assert not out.exists()  # refused before anything was scored or written
    unlearned = tmp_path / "s1" / "section_01_0000.wav"
    write_wav(unlearned, 1.0)
    with pytest.raises(DataError, match="none names one of the model's machine IDs .*section_XX"):
        predict(checkpoint, unlearned.parent, out)
    out.mkdir()
    (out / "decision_result_fan_section_00_test.csv").mkdir()  # a file that cannot be written
    with pytest.raises(DataError, match="cannot write .*decision_result_fan_section_00_test.csv: something that is"):
        predict(checkpoint, root / "fan" / "test", out)
    assert [p.name for p in out.iterdir()] == ["decision_result_fan_section_00_test.csv"]  # nothing written


def test_sweep_dcase_without_machine_types_is_one_line(tmp_path):
    import subprocess

    command = [sys.executable, "train.py", "-m", "sweep=dcase", f"data.root={tmp_path / 'nowhere'}",
               f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert done.returncode == 2 and done.stderr.strip().startswith("error: sweep=dcase: data.root=")
    assert "Traceback" not in done.stderr and not (tmp_path / "sweep").exists()


def test_a_folder_output_is_refused_for_a_model_of_other_data(cfg_factory, tmp_path):
    cfg = cfg_factory("data.reader.protocol=baseline", "model=embedding_knn")
    train(cfg)
    checkpoint = next(Path(cfg.paths.output_dir, "checkpoints").glob("*.ckpt"))
    with pytest.raises(ConfigError, match="a folder receives the DCASE challenge's result files"):
        predict(checkpoint, cfg.data.root, tmp_path / "folder")


@needs_samples
def test_the_genuine_dcase2023_samples_train_test_and_predict(cfg_factory, tmp_path):
    root = tmp_path / "dcase2023"
    shutil.copytree(DCASE2023, root)
    cfg = cfg_factory("data=dcase", f"data.root={root}", "machine=all", "model=id_classifier", "data.batch_size=2",
                      "model.norm_clips=2", "data.cache_dir=null", "data.clip_seconds=null")
    result = train(cfg)
    assert cfg.data.clip_seconds == 12.0  # ToyCar's clips; fan and valve are zero-padded
    assert result["per_id"]["ToyCar_section_00"]["missing"]["auroc"] == "no anomalous test clip"
    assert result["per_id"]["fan_section_00"]["missing"] == {"auroc_source": "no source-domain normal test clip"}
    assert result["per_id"]["fan_section_00"]["auroc_target"] is not None
    assert "official_score" not in result["metrics"] and "ToyCar_section_00" in result["official_score_missing"]
    stored = json.loads(Path(cfg.paths.output_dir, "metrics.json").read_text())
    assert stored["evaluator"] == "dcase2022"

    checkpoint = next(Path(cfg.paths.output_dir, "checkpoints").glob("*.ckpt"))
    out = tmp_path / "submission"
    predict(checkpoint, root, out)
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([f"{kind}_{m}_section_00_test.csv" for kind in ("anomaly_score", "decision_result")
                              for m in ("ToyCar", "fan", "valve")] + ["predictions_all.csv"])
    rows = list(csv.reader(open(out / "anomaly_score_valve_section_00_test.csv")))
    assert [r[0] for r in rows] == sorted(p.name for p in (root / "valve" / "test").iterdir())
    evaluation = tmp_path / "evaluation"  # anonymised names repeat across machine types, not within one file
    for machine in ("fan", "valve"):
        (evaluation / machine / "test").mkdir(parents=True)
        shutil.copy(next((root / machine / "test").iterdir()), evaluation / machine / "test" / "section_00_0000.wav")
    predict(checkpoint, evaluation, tmp_path / "evaluated")
    for machine in ("fan", "valve"):
        rows = list(csv.reader(open(tmp_path / "evaluated" / f"anomaly_score_{machine}_section_00_test.csv")))
        assert [r[0] for r in rows] == ["section_00_0000.wav"]

    one = cfg_factory("data=dcase", f"data.root={root}", "machine=ToyCar", "model=embedding_knn",
                      "data.cache_dir=null", "model.norm_clips=2", output_dir=tmp_path / "toycar")
    with pytest.raises(DataError, match="no section of machine=ToyCar has both normal and anomalous test clips"):
        train(one)  # refused before training
    assert not (tmp_path / "toycar" / "checkpoints").exists()
