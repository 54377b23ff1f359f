"""Data layouts and decode settings: MIMII channel choices, class folders, cross-SNR testing, real files."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from conftest import REAL_SAMPLES, make_mimii, setup_mimii, write_wav
from machine_sound.config import instantiate
from machine_sound.data.audio import Decoding, decode
from machine_sound.errors import ConfigError, DataError
from machine_sound.train import shape_from_data, train

FAST = ["trainer.fast_dev_run=true", "model.backbone=mobilenetv3_small_050"]


@pytest.mark.parametrize("channel, expected", [("0", [0]), ("5", [5]), ("[1,6,3]", [1, 6, 3])])
def test_a_channel_or_a_list_of_channels_is_picked_in_order(tmp_path, channel, expected):
    path = write_wav(tmp_path / "a.wav", channels=8)
    everything = sf.read(path, dtype="float32")[0].T
    decoding = Decoding(16000, json.loads(channel))
    wave, _ = decode(path, decoding)
    assert np.array_equal(wave, everything[expected]) and decoding.out_channels == len(expected)


def test_mean_averages_every_channel(tmp_path):
    path = write_wav(tmp_path / "a.wav", channels=8)
    wave, _ = decode(path, Decoding(16000, "mean"))
    assert wave.shape == (1, 8000)
    assert np.allclose(wave[0], sf.read(path, dtype="float32")[0].mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("channel", ["-1", "left", "[]", "[0,0]"])
def test_a_bad_channel_setting_is_named(channel):
    with pytest.raises(ConfigError, match="data.channel"):
        Decoding(16000, json.loads(channel) if channel[0] in "[-" else channel)


def test_a_channel_the_files_lack_is_named(cfg_factory, tmp_path):
    make_mimii(tmp_path / "mimii", channels=2)
    with pytest.raises(DataError, match=r"has 2 channel\(s\) but data.channel=\(0, 3\)"):
        setup_mimii(cfg_factory, tmp_path / "mimii", "data.channel=[0,3]")


def test_stacked_channels_become_the_backbones_input_channels(cfg_factory, tmp_path):
    make_mimii(tmp_path / "mimii", channels=4)
    data = ["data=mimii", f"data.root={tmp_path / 'mimii'}", "machine=pump", "id=id_00", "data.clip_seconds=0.5",
            "data.channel=[0,1,3]"]
    train(cfg_factory(*data, *FAST))  # end to end: a mismatch between image and stem channels would fail here
    cfg = cfg_factory(*data)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model, **shape_from_data(cfg.model, datamodule))
    wave, label = next(iter(datamodule.train_dataloader()))[:2]
    spec = model.frontend(wave)
    assert wave.shape[1] == spec.shape[1] == model.hparams.in_chans == 3
    assert model(wave).shape == (len(label), 2)
    with pytest.raises(ConfigError, match=r"model.in_chans=1 but the data gives 3"):
        train(cfg_factory(*data, "model.in_chans=1", *FAST, output_dir=tmp_path / "run2"))


def make_folder(root, counts, seconds=0.25):
    """`<root>/<class>/<n>.wav`, each class with its own tone so the classes can be learned."""
    for k, (name, count) in enumerate(counts.items()):
        for i in range(count):
            t = np.arange(int(16000 * seconds)) / 16000
            tone = 0.3 * np.sin(2 * np.pi * (300 + 900 * k) * t)
            noise = np.random.default_rng(100 * k + i).normal(0, 0.05, t.size)
            path = root / name / f"{i:03d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, (tone + noise).astype(np.float32), 16000, subtype="PCM_16")
    return root


def test_class_folders_train_a_multiclass_model_with_multiclass_metrics(cfg_factory, tmp_path):
    root = make_folder(tmp_path / "sounds", {"drill": 12, "hammer": 9, "saw": 10})
    run = tmp_path / "run"
    result = train(cfg_factory("data=folder", f"data.root={root}", "data.clip_seconds=0.25", *FAST,
                               output_dir=run))
    assert result["classes"] == ["drill", "hammer", "saw"] and result["positive_class"] is None
    assert {"accuracy", "balanced_accuracy", "precision", "recall", "f1", "auroc"} <= set(result["metrics"])
    assert "pauc" not in result["metrics"] and result["threshold"] is None
    assert np.array(result["confusion"]).shape == (3, 3)
    with open(run / "split.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["class"] for r in rows if r["split"] == "test"} == {"drill", "hammer", "saw"}


def test_a_class_folder_run_is_named_by_its_root_and_classes_not_by_a_machine(cfg_factory, tmp_path):
    from test_sweep import hparams_of

    root = make_folder(tmp_path / "sounds", {"ok": 6, "worn": 6})
    run = tmp_path / "run"
    train(cfg_factory("data=folder", f"data.root={root}", "data.clip_seconds=0.25", *FAST, output_dir=run))
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["root"] == str(root) and saved["classes"] == ["ok", "worn"] and saved["layout"] == "folder"
    assert not {"machine", "id", "snr"} & set(saved)
    hparams = hparams_of(run / "tensorboard")
    assert hparams["root"] == str(root) and hparams["classes"] == "ok,worn" and hparams["task"] == "multiclass"
    assert not {"machine", "id", "snr"} & set(hparams)
    with pytest.raises(Exception, match="Could not override 'machine'"):  # the layout has no machine key
        cfg_factory("data=folder", f"data.root={root}", "machine=pump")


def test_two_class_folders_as_a_binary_task_get_a_threshold_and_pauc(cfg_factory, tmp_path):
    root = make_folder(tmp_path / "sounds", {"normal": 8, "abnormal": 8})
    result = train(cfg_factory("data=folder", f"data.root={root}", "data.clip_seconds=0.25", "data.task=binary",
                               "data.reader.classes=[normal,abnormal]", *FAST))
    assert result["task"] == "binary" and result["positive_class"] == "abnormal" and result["threshold"] is not None
    assert {"auroc", "pauc", "tp", "fn"} <= set(result["metrics"])


def test_a_binary_task_on_folders_makes_the_fault_named_folder_positive_whatever_the_sort_order(cfg_factory,
                                                                                                tmp_path):
    root = make_folder(tmp_path / "sounds", {"abnormal": 3, "normal": 3})  # sorted, abnormal would come first
    datamodule = instantiate(cfg_factory("data=folder", f"data.root={root}", "data.task=binary").data)
    assert datamodule.class_names == ("normal", "abnormal")
    datamodule.setup("fit")
    assert {r.anomalous for r in datamodule.splits["test"] if r.path.parent.name == "abnormal"} == {1}
    compound = make_folder(tmp_path / "compound", {"abnormal_pump": 3, "normal_pump": 3})  # 'normal' in both
    datamodule = instantiate(cfg_factory("data=folder", f"data.root={compound}", "data.task=binary").data)
    assert datamodule.class_names == ("normal_pump", "abnormal_pump")
    given = ["data=folder", f"data.root={root}", "data.task=binary", "data.reader.classes=[abnormal,normal]"]
    assert instantiate(cfg_factory(*given).data).class_names == ("abnormal", "normal")  # as given, with a warning


def test_two_class_folders_put_normal_first_for_the_default_multiclass_task_too(cfg_factory, tmp_path, caplog):
    root = make_folder(tmp_path / "sounds", {"abnormal": 3, "normal": 3})  # sorted, abnormal would come first
    with caplog.at_level("WARNING"):
        assert instantiate(cfg_factory("data=folder", f"data.root={root}").data).class_names == ("normal",
                                                                                                  "abnormal")
        anomaly = make_folder(tmp_path / "ids", {"anomaly_id_00": 3, "normal_id_00": 3})
        assert instantiate(cfg_factory("data=folder", f"data.root={anomaly}").data).class_names == (
            "normal_id_00", "anomaly_id_00")
        tools = make_folder(tmp_path / "tools", {"hammer": 3, "drill": 3})  # names that say neither: sorted, quietly
        assert instantiate(cfg_factory("data=folder", f"data.root={tools}").data).class_names == ("drill", "hammer")
    assert not caplog.records


@pytest.fixture(scope="module")
def folder_model(tmp_path_factory, data_dir):
    """A tiny binary model trained on <root>/{normal,abnormal}: its checkpoint and its data root."""
    from conftest import make_cfg

    root = make_folder(tmp_path_factory.mktemp("sounds"), {"normal": 8, "abnormal": 8}, seconds=2.0)
    run = tmp_path_factory.mktemp("folder_run")
    result = train(make_cfg(run, data_dir, ["data=folder", f"data.root={root}", "data.task=binary",
                                            "data.clip_seconds=2.0", "model.backbone=mobilenetv3_small_050"]))
    return result["best_checkpoint"], root


def test_eval_maps_classes_by_name_so_another_order_gives_the_same_metrics(folder_model, tmp_path):
    from machine_sound.eval import evaluate

    ckpt, _ = folder_model
    plain = evaluate(ckpt, output_dir=tmp_path / "plain")
    swapped = evaluate(ckpt, ["data.reader.classes=[abnormal,normal]"], output_dir=tmp_path / "swapped")
    assert swapped["classes"] == plain["classes"] == ["normal", "abnormal"]
    assert swapped["metrics"] == pytest.approx(plain["metrics"]) and swapped["confusion"] == plain["confusion"]
    scores = [sorted((tmp_path / name / "test_scores.csv").read_text().splitlines()) for name in ("plain", "swapped")]
    assert scores[0] == scores[1]  # every test file with the same class, flag and score


def test_eval_refuses_data_whose_class_names_differ_naming_both_lists(folder_model, tmp_path):
    from machine_sound.data.records import Index, Record, relabel
    from machine_sound.eval import evaluate

    ckpt, _ = folder_model
    other = make_folder(tmp_path / "other", {"ok": 6, "worn": 6}, seconds=0.5)
    with pytest.raises(ConfigError, match=r"^the checkpoint's model tells normal, abnormal apart, but this data has "
                                          r"ok, worn; evaluate it on data with the same class names$"):
        evaluate(ckpt, [f"data.root={other}"], output_dir=tmp_path / "eval")
    three = make_folder(tmp_path / "three", {"normal": 6, "abnormal": 6, "worn": 6}, seconds=0.5)
    with pytest.raises(ConfigError, match=r"^the checkpoint's model tells normal, abnormal apart, but this data does "
                                          r"not fit: .* has 3 \(abnormal, normal, worn\)"):
        evaluate(ckpt, [f"data.root={three}"], output_dir=tmp_path / "eval")
    index = Index([Record(tmp_path / "a.wav", 2)], ("normal", "abnormal", "worn"))  # a multiclass model's case
    with pytest.raises(ConfigError, match="tells normal, abnormal apart, but this data has normal, abnormal, worn"):
        relabel(index, ["normal", "abnormal"])
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("classes", ["ok", "[ok,worn,ok]", "{ok:1}"])
def test_classes_must_be_a_list_of_distinct_names(cfg_factory, tmp_path, classes):
    root = make_folder(tmp_path / "sounds", {"ok": 3, "worn": 3})
    with pytest.raises(ConfigError, match="data.reader.classes=.*a list of distinct folder names"):
        instantiate(cfg_factory("data=folder", f"data.root={root}", f"data.reader.classes={classes}").data)


def test_classes_pick_and_order_the_folders(cfg_factory, tmp_path):
    root = make_folder(tmp_path / "sounds", {"bad": 6, "good": 6, "other": 3})
    cfg = cfg_factory("data=folder", f"data.root={root}", "data.clip_seconds=0.25", "data.reader.classes=[good,bad]")
    datamodule = instantiate(cfg.data)
    assert datamodule.class_names == ("good", "bad")
    datamodule.setup("fit")
    assert sum(len(p) for p in datamodule.splits.values()) == 12
    with pytest.raises(DataError, match=r"data.reader.classes names missing .*class folders: bad, good, other"):
        instantiate(cfg_factory("data=folder", f"data.root={root}", "data.reader.classes=[good,missing]").data).setup()


def test_one_class_folder_is_not_enough(cfg_factory, tmp_path):
    root = make_folder(tmp_path / "sounds", {"only": 3})
    with pytest.raises(ConfigError, match="has 1 class folder.*needs at least 2"):
        instantiate(cfg_factory("data=folder", f"data.root={root}").data).setup()


def test_cross_snr_tests_the_same_recordings_at_another_snr(cfg_factory, tmp_path):
    for snr in ("-6_dB", "6_dB"):
        make_mimii(tmp_path / "mimii", n_normal=6, n_abnormal=4, snr=snr)
    datamodule = setup_mimii(cfg_factory, tmp_path / "mimii", "data.reader.test_snr=6_dB")
    assert all("/-6_dB_pump/" in str(r.path) for name in ("train", "val") for r in datamodule.splits[name])
    test = [r.path for r in datamodule.splits["test"]]
    assert test and all("/6_dB_pump/" in str(p) for p in test)
    plain = setup_mimii(cfg_factory, tmp_path / "mimii")
    assert [(r.path.name, r.path.parent.name) for r in plain.splits["test"]] == [(p.name, p.parent.name) for p in test]
    (tmp_path / "mimii" / "6_dB_pump" / "pump" / "id_00" / test[0].parent.name / test[0].name).unlink()
    with pytest.raises(DataError, match=r"data.reader.test_snr=6_dB: .* is missing; cross-SNR testing needs the same"):
        setup_mimii(cfg_factory, tmp_path / "mimii", "data.reader.test_snr=6_dB")


def test_cross_snr_on_synthetic_data_generates_both_snrs(cfg_factory):
    cfg = cfg_factory("snr=6_dB", "data.reader.test_snr=0_dB", *FAST)
    result = train(cfg)
    assert result["name"] == "6_dB_pump/id_04 (test at 0_dB)"


@pytest.mark.skipif(not REAL_SAMPLES.exists(), reason="needs ../shared/real-samples")
@pytest.mark.parametrize("channel", ["0", "7", "mean", "[0,2,4,6]"])
def test_real_mimii_files_train_with_every_channel_option(cfg_factory, tmp_path, channel):
    """The two genuine 8-channel MIMII files, linked three times each so a split exists, train and test."""
    source = REAL_SAMPLES / "mimii" / "6_dB_fan" / "fan" / "id_04"
    for label in ("normal", "abnormal"):
        (real,) = (source / label).glob("*.wav")
        for i in range(3):
            link = tmp_path / "mimii" / "6_dB_fan" / "fan" / "id_04" / label / f"{i:08d}.wav"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(real)
    result = train(cfg_factory("data=mimii", f"data.root={tmp_path / 'mimii'}", "snr=6_dB", "machine=fan",
                               "id=id_04", f"data.channel={channel}", "data.clip_seconds=2.0", *FAST))
    assert set(result["metrics"]) >= {"auroc", "pauc", "f1"}


@pytest.mark.skipif(not REAL_SAMPLES.exists(), reason="needs ../shared/real-samples")
def test_real_mimii_files_too_few_for_a_split_give_the_clear_error(cfg_factory):
    cfg = cfg_factory("data=mimii", f"data.root={REAL_SAMPLES / 'mimii'}", "snr=6_dB", "machine=fan", "id=id_04")
    with pytest.raises(DataError, match=r"only 1 'normal' file\(s\)"):
        instantiate(cfg.data).setup("fit")


def make_dcase(root, machine="fan", ids=("id_00", "id_02"), n_train=8, n_test=3, seconds=1.0, source=None,
               seed=0):
    """A DCASE 2020 tree; each ID hums at its own pitch so IDs can be told apart. With `source` (a real DCASE
    test folder) every file is a link to the genuine recording of its kind instead. The noise is a pure function
    of `seed` and the file (not of Python's per-process string hashing)."""
    real = {}
    if source is not None:
        real = {kind: next(source.glob(f"{kind}_*.wav")) for kind in ("normal", "anomaly")}
    for k, machine_id in enumerate(ids):
        names = [("train", "normal", i) for i in range(n_train)]
        names += [("test", kind, i) for kind in ("normal", "anomaly") for i in range(n_test)]
        for folder, kind, i in names:
            path = root / machine / folder / f"{kind}_{machine_id}_{i:08d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            if real:
                path.symlink_to(real[kind])
                continue
            t = np.arange(int(16000 * seconds)) / 16000
            wave = 0.3 * np.sin(2 * np.pi * (400 + 500 * k) * t)
            if kind == "anomaly":  # a fault adds a tone where the next ID hums: the clip fits its own ID less
                wave += 0.3 * np.sin(2 * np.pi * (400 + 500 * ((k + 1) % len(ids))) * t)
            key = [seed, k, ("train", "test").index(folder), ("normal", "anomaly").index(kind), i]
            wave += np.random.default_rng(key).normal(0, 0.05, t.size)
            sf.write(path, wave.astype(np.float32), 16000, subtype="PCM_16")
    return root


def test_dcase2020_learns_ids_on_train_and_scores_its_own_test_folder_by_id(cfg_factory, tmp_path):
    root = make_dcase(tmp_path / "dcase")
    run = tmp_path / "run"
    result = train(cfg_factory("data=dcase2020", f"data.root={root}", "machine=fan", "data.clip_seconds=1.0",
                               "model=id_classifier", "model.backbone=mobilenetv3_small_050", output_dir=run))
    assert result["classes"] == ["id_00", "id_02"] and result["task"] == "id_anomaly"
    assert result["layout"] == "dcase2020" and result["machine"] == "fan" and "id" not in result
    assert result["per_id"]["id_02"] == {"auroc": result["metrics"]["auroc_id_02"],
                                         "pauc": result["metrics"]["pauc_id_02"]}
    assert {"auroc", "pauc", "auroc_id_00", "pauc_id_00", "auroc_id_02", "pauc_id_02"} <= set(result["metrics"])
    assert result["metrics"]["auroc"] == pytest.approx(
        (result["metrics"]["auroc_id_00"] + result["metrics"]["auroc_id_02"]) / 2)
    with open(run / "split.csv") as f:
        rows = list(csv.DictReader(f))
    test = [r for r in rows if r["split"] == "test"]
    assert len(test) == 12 and all("/test/" in r["path"] for r in test)
    assert all(r["anomalous"] == ("1" if "anomaly_" in r["path"] else "0") for r in test)
    assert all("/train/" in r["path"] for r in rows if r["split"] in ("train", "val"))


@pytest.mark.parametrize("problem, match", [
    ("no train", r"no folder .*fan/train"),
    ("bad name", r"fan/test/clip\.wav: the name is not"),
    ("anomaly in train", r"train holds anomaly_\* clips"),
])
def test_dcase2020_layout_problems_are_named(cfg_factory, tmp_path, problem, match):
    root = make_dcase(tmp_path / "dcase")
    if problem == "no train":
        for f in (root / "fan" / "train").iterdir():
            f.unlink()
        (root / "fan" / "train").rmdir()
    elif problem == "bad name":
        write_wav(root / "fan" / "test" / "clip.wav")
    elif problem == "anomaly in train":
        write_wav(root / "fan" / "train" / "anomaly_id_00_00000000.wav")
    with pytest.raises(DataError, match=match):
        instantiate(cfg_factory("data=dcase2020", f"data.root={root}", "machine=fan").data).setup()


@pytest.mark.skipif(not REAL_SAMPLES.exists(), reason="needs ../shared/real-samples")
@pytest.mark.parametrize("machine", ["valve", "ToyCar"])
def test_real_dcase_files_train_and_test(cfg_factory, tmp_path, machine):
    """Genuine DCASE 2020 clips (ToyCar's are 11 s and are cropped), linked into train/ and test/ folders."""
    root = make_dcase(tmp_path / "dcase", machine=machine, n_train=3, n_test=1,
                      source=REAL_SAMPLES / "dcase2020" / machine / "test")
    result = train(cfg_factory("data=dcase2020", f"data.root={root}", f"machine={machine}", "data.clip_seconds=2.0",
                               "model=id_classifier", "model.backbone=mobilenetv3_small_050"))
    assert 0 <= result["metrics"]["auroc"] <= 1


@pytest.mark.skipif(not REAL_SAMPLES.exists(), reason="needs ../shared/real-samples")
def test_real_dcase_samples_without_a_train_folder_give_the_clear_error(cfg_factory):
    with pytest.raises(DataError, match=r"no folder .*fan/train; data=dcase2020 expects"):
        root = REAL_SAMPLES / "dcase2020"
        instantiate(cfg_factory("data=dcase2020", f"data.root={root}", "machine=fan").data).setup()


def test_mimii_baseline_protocol_tests_on_first_n_normal_and_all_abnormal(cfg_factory, tmp_path):
    for machine_id in ("id_00", "id_02"):
        make_mimii(tmp_path / "mimii", n_normal=9, n_abnormal=3, machine_id=machine_id, seconds=1.0)
    data = ["data=mimii", f"data.root={tmp_path / 'mimii'}", "machine=pump", "id=id_02", "data.clip_seconds=1.0",
            "data.reader.protocol=baseline", "data.reader.machines.pump=[id_00,id_02]"]
    datamodule = instantiate(cfg_factory(*data).data)
    datamodule.setup("fit")
    assert datamodule.class_names == ("id_00", "id_02")
    test = [(r.path.parent.parent.name, r.path.parent.name, r.path.name, r.label) for r in datamodule.splits["test"]]
    expected = [("id_02", kind, f"{i:08d}.wav", 1) for kind, n in (("normal", 3), ("abnormal", 3)) for i in range(n)]
    assert test == expected and [r.anomalous for r in datamodule.splits["test"]] == [0, 0, 0, 1, 1, 1]
    pool = datamodule.splits["train"] + datamodule.splits["val"]
    assert len(pool) == 2 * 6 and all(r.path.parent.name == "normal" for r in pool)
    assert not {r.path for r in pool} & {r.path for r in datamodule.splits["test"]}
    assert {r.label for r in datamodule.splits["val"]} == {0, 1}
    result = train(cfg_factory(*data, "model=id_classifier", "model.backbone=mobilenetv3_small_050"))
    assert result["task"] == "id_anomaly" and {"auroc", "pauc", "auroc_id_02"} <= set(result["metrics"])
    assert "auroc_id_00" not in result["metrics"]  # the run is for one machine/ID


def test_mimii_baseline_protocol_needs_normal_files_left_to_train_on(cfg_factory, tmp_path):
    for machine_id in ("id_00", "id_02"):
        make_mimii(tmp_path / "mimii", n_normal=3, n_abnormal=3, machine_id=machine_id)
    with pytest.raises(DataError, match="has 3 normal and 3 abnormal files: the baseline protocol"):
        setup_mimii(cfg_factory, tmp_path / "mimii", "data.reader.protocol=baseline",
                    "data.reader.machines.pump=[id_00,id_02]")


def test_loader_workers_auto_means_none_without_a_gpu_and_bad_values_are_named(monkeypatch):
    from machine_sound.data.datamodule import resolve_workers

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert resolve_workers("auto") == 0 and resolve_workers(3) == 3
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.get_num_threads", lambda: 16)
    assert resolve_workers("auto") == 8
    with pytest.raises(ConfigError, match="data.num_workers=-1"):
        resolve_workers(-1)


@pytest.mark.parametrize("overrides, task, monitor, mode, subtract", [
    ([], "binary", "val/auroc", "max", True),
    (["data.reader.protocol=baseline", "model=id_classifier"], "id_anomaly", "val/loss", "min", False),
    (["callbacks.model_checkpoint.monitor=val/f1"], "binary", "val/f1", "max", True),
    (["callbacks.model_checkpoint.monitor=val/loss"], "binary", "val/loss", "min", True),
    (["model=embedding_knn", "model.frontend.subtract_background=true", "data.reader.protocol=baseline"],
     "id_anomaly", "val/loss", "min", True),
    (["data=dcase2020", "data.root=/data/dcase", "model=id_classifier"], "id_anomaly", "val/loss", "min", False),
    (["data=folder", "data.root=/data/sounds"], "multiclass", "val/auroc", "max", False),
])
def test_settings_follow_the_task_fixed_in_the_config(cfg_factory, overrides, task, monitor, mode, subtract):
    """Scored by machine ID: keep the steady spectrum (it tells IDs apart) and pick checkpoints by val/loss. The
    composed config already holds what runs (`--cfg job --resolve` prints it); explicit settings win."""
    cfg = cfg_factory(*overrides)
    assert cfg.data.task == cfg.model.task == task
    assert (cfg.callbacks.model_checkpoint.monitor, cfg.callbacks.model_checkpoint.mode) == (monitor, mode)
    assert cfg.model.frontend.subtract_background is subtract
    model = instantiate(cfg.model, **({"class_names": ["id_00", "id_02"]} if task == "id_anomaly" else {}))
    assert model.task.name == task and model.frontend.subtract_background is subtract


def test_an_unknown_protocol_or_a_task_the_layout_cannot_give_is_named(cfg_factory, tmp_path):
    with pytest.raises(ConfigError, match=r"^data.reader.protocol=paper: choose stratified or baseline$"):
        instantiate(cfg_factory("data.reader.protocol=paper").data)
    with pytest.raises(ConfigError, match=r"data.task=multiclass, but the mimii reader's recordings are labelled "
                                          r"for task binary"):
        instantiate(cfg_factory("data.task=multiclass").data)
    root = make_folder(tmp_path / "sounds", {"a": 3, "b": 3, "c": 3})
    with pytest.raises(ConfigError, match=r"data.task=binary needs exactly 2 classes but .* has 3 \(a, b, c\)"):
        instantiate(cfg_factory("data=folder", f"data.root={root}", "data.task=binary").data).setup()


def test_scoring_by_machine_id_finds_clips_that_do_not_fit_their_id(cfg_factory, tmp_path):
    """A fault that makes a machine sound partly like another ID scores high: the ID-fit score is learned."""
    root = make_dcase(tmp_path / "dcase", n_train=24, n_test=8, seconds=2.0)
    result = train(cfg_factory("data=dcase2020", f"data.root={root}", "machine=fan", "data.clip_seconds=2.0",
                               "model=id_classifier", "model.loss=cross_entropy", "model.scorer=not_own",
                               "data.batch_size=8", "trainer.max_epochs=40"))
    print("ID-fit anomaly AUROC per ID:", result["per_id"])
    assert result["metrics"]["auroc"] > 0.75  # chance is 0.5
