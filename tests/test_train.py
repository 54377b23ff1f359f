"""Training end to end: the run folder, TensorBoard events, determinism, config composition, and learning."""

import errno
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import machine_sound.conf
from conftest import REPO, make_cfg
from machine_sound.config import compose, instantiate
from machine_sound.train import train

CONF = Path(machine_sound.conf.__file__).parent

METRICS = {"accuracy", "balanced_accuracy", "precision", "recall", "specificity", "f1", "auroc", "pauc",
           "loss", "tn", "fp", "fn", "tp"}


def group_options():
    groups = [p for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "__pycache__")]
    for group in sorted([*groups, CONF / "model" / "frontend"]):
        for option in sorted(group.glob("*.yaml")):
            yield f"{group.relative_to(CONF)}={option.stem}"


@pytest.mark.parametrize("override", list(group_options()))
def test_every_config_group_option_composes_and_instantiates(override, cfg_factory):
    cfg = cfg_factory(override)
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        assert cfg.trainer.precision == "bf16-mixed"  # composes; a GPU is needed to build it
    else:
        instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    for node in ("callbacks", "logger"):
        for sub in (cfg.get(node) or {}).values():
            instantiate(sub)
    if cfg.data.root is not None:  # real-data layouts need the user's data; tested in test_layouts
        instantiate(cfg.data)


@pytest.mark.parametrize("launcher, target", [("joblib", "JoblibLauncher"), ("slurm", "SlurmLauncher")])
def test_sweep_preset_and_launchers_compose(launcher, target):
    cfg = compose(["sweep=mimii", f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    assert cfg.hydra.sweeper.params == {"machine": "fan,pump,slider,valve", "id": "id_00,id_02,id_04,id_06"}
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1


def test_pooling_and_label_smoothing_reach_the_model(cfg_factory):
    model = instantiate(cfg_factory("model.global_pool=max", "model.label_smoothing=0.1").model)
    assert model.net.global_pool.pool_type == "max"
    assert model.criterion.label_smoothing == 0.1
    assert model(torch.randn(2, 1, 16000)).shape == (2, 2)  # waveforms in, logits out


def test_the_new_classifier_starts_at_zero_so_training_starts_at_ln2(cfg_factory):
    """Without it, large random initial logits made whether the model learned a subtle fault depend on the seed."""
    model = instantiate(cfg_factory().model)
    head = model.net.get_classifier()
    assert head.weight.abs().sum() == 0 and head.bias.abs().sum() == 0
    loss = model.criterion(model(torch.randn(4, 1, 16000)), torch.tensor([0, 1, 0, 1]))
    assert loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-6)
    random_head = instantiate(cfg_factory("model.zero_init_head=false").model).net.get_classifier()
    assert random_head.weight.abs().sum() > 0


def test_zero_init_head_names_a_backbone_whose_classifier_it_cannot_zero(monkeypatch):
    from machine_sound.errors import ConfigError
    from machine_sound.models.backbone import create_backbone

    def sequential_head(self):
        return torch.nn.Sequential()

    monkeypatch.setattr("timm.models.mobilenetv3.MobileNetV3.get_classifier", sequential_head)
    with pytest.raises(ConfigError, match="'mobilenetv3_small_100'.*Sequential.*zero_init_head=false"):
        create_backbone("mobilenetv3_small_100", False, None, 1, 2, 0.2)


def test_fast_dev_run_writes_metrics_split_and_tensorboard(cfg_factory, tmp_path):
    run = tmp_path / "run"
    result = train(cfg_factory("trainer.fast_dev_run=true", output_dir=run))
    saved = json.loads((run / "metrics.json").read_text())
    assert saved == result
    assert saved["machine"] == "pump" and saved["id"] == "id_04" and saved["snr"] == "-6_dB"
    assert saved["backbone"] == "mobilenetv3_small_100" and saved["positive_class"] == "abnormal"
    assert set(saved["metrics"]) == METRICS
    split = (run / "split.csv").read_text().splitlines()
    assert split[0] == "path,label,class,split,anomalous" and len(split) == 1 + 21


def test_a_run_without_a_logger_trains_and_writes_its_metrics(cfg_factory, tmp_path):
    """logger=none: the learning-rate monitor of the default callbacks has nothing to log into and is left out."""
    result = train(cfg_factory("logger=none", "trainer.fast_dev_run=true", output_dir=tmp_path / "run"))
    assert (tmp_path / "run" / "metrics.json").exists() and set(result["metrics"]) == METRICS
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_one_epoch_logs_curves_and_test_metrics_to_tensorboard(cfg_factory, tmp_path):
    run = tmp_path / "run"
    train(cfg_factory("trainer.max_epochs=2", output_dir=run))
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("train/loss", "val/loss", "val/auroc", "val/pauc", "train/f1", "test/auroc", "test/f1",
                "test/balanced_accuracy", "test/tp", "perf/data_wait_share", "perf/clips_per_s"):
        assert tag in tags, tag
    assert len(events.Scalars("val/auroc")) == 2  # one point per epoch
    assert all(0 <= e.value < 1 for e in events.Scalars("perf/data_wait_share"))
    assert list((run / "checkpoints").glob("epoch*.ckpt")) and (run / "checkpoints" / "last.ckpt").exists()


def test_data_wait_share_sees_a_slow_data_path(cfg_factory, tmp_path, monkeypatch):
    from machine_sound.data.datamodule import ClipDataset

    def wait_shares(run):
        events = EventAccumulator(str(run / "tensorboard"))
        events.Reload()
        return [e.value for e in events.Scalars("perf/data_wait_share")]

    train(cfg_factory(output_dir=tmp_path / "fast"))
    read = ClipDataset.__getitem__
    monkeypatch.setattr(ClipDataset, "__getitem__", lambda self, i: time.sleep(0.2) or read(self, i))
    train(cfg_factory(output_dir=tmp_path / "slow"))
    (fast,), (slow,) = wait_shares(tmp_path / "fast"), wait_shares(tmp_path / "slow")
    print(f"data wait share: {fast:.3f} reading from disk, {slow:.3f} with 200 ms per clip")
    assert slow > 0.3 and slow > fast + 0.2


def test_the_threshold_chosen_on_validation_travels_with_the_checkpoint_into_the_test(cfg_factory, tmp_path):
    run = tmp_path / "run"
    result = train(cfg_factory("trainer.max_epochs=2", output_dir=run))
    best = torch.load(result["best_checkpoint"], weights_only=True)
    threshold = best["state_dict"]["threshold"].item()
    assert result["threshold"] == pytest.approx(threshold)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    chosen = [e.value for e in events.Scalars("val/threshold")]
    assert len(chosen) == 2 and threshold == pytest.approx(chosen[best["epoch"]])
    fixed = train(cfg_factory("trainer.max_epochs=1", "model.tune_threshold=null", output_dir=tmp_path / "fixed"))
    assert fixed["threshold"] == 0.5


def test_same_seed_gives_the_same_test_metrics(data_dir, tmp_path):
    runs = [train(make_cfg(tmp_path / f"run{i}", data_dir, ["trainer.max_epochs=2", "seed=7"])) for i in range(2)]
    assert runs[0]["metrics"] == runs[1]["metrics"]


def test_a_finished_run_folder_is_never_overwritten(cfg_factory, tmp_path):
    run = tmp_path / "run"
    train(cfg_factory("trainer.fast_dev_run=true", output_dir=run))
    with pytest.raises(Exception, match="already holds a finished run"):
        train(cfg_factory("trainer.fast_dev_run=true", output_dir=run))


def test_command_line_fast_dev_run_on_another_machine_and_backbone(tmp_path, data_dir):
    cmd = [sys.executable, "train.py", "machine=valve", "id=id_00", "snr=0_dB",
           "model.backbone=mobilenetv3_small_050", "trainer.fast_dev_run=true", "data.clip_seconds=2.0",
           "data.generator.n_normal=6", "data.generator.n_abnormal=3", "data.batch_size=4",
           f"paths.data_dir={data_dir}", f"hydra.run.dir={tmp_path / 'cli'}"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "0_dB_valve/id_00: test AUROC" in result.stdout
    assert f"tensorboard --logdir {tmp_path / 'cli'}" in result.stdout
    # What a newcomer reads: each log line once, no adverts, the result set apart between two rules.
    printed = result.stdout + result.stderr
    logged = [line.split(" - ", 1)[-1] for line in printed.splitlines() if "][INFO] - " in line]
    assert logged.count("GPU available: False, used: False") == 1 and "INFO: GPU available" not in printed
    assert "Tip" not in printed and "LeafSpec" not in printed
    tail = result.stdout.strip().splitlines()[-5:]
    assert tail[0] == tail[-1] and set(tail[0]) == {"─"} and tail[1].startswith("0_dB_valve/id_00: test AUROC")
    assert (tmp_path / "cli" / "metrics.json").exists() and (tmp_path / "cli" / ".hydra" / "config.yaml").exists()


@pytest.mark.slow
def test_the_model_really_learns(tmp_path):
    """Real training on clearly audible faults (6 dB, full 10 s clips, ~120 steps): the test AUROC must be high."""
    cfg = make_cfg(tmp_path / "run", tmp_path / "data", [
        "snr=6_dB", "data.clip_seconds=10.0", "data.generator.n_normal=150", "data.generator.n_abnormal=75",
        "data.batch_size=16", "model.norm_clips=64", "trainer.max_epochs=15"])
    result = train(cfg)
    # Chance is 0.5; measured 0.898 on 2026-11-24 (2-core CPU, about 100 s).
    assert result["metrics"]["auroc"] >= 0.85, result["metrics"]


def test_dcase_sweep_preset_selects_the_layout_and_every_machine_type():
    cfg = compose(["sweep=dcase2020", "data.root=/data/dcase"], return_hydra_config=True)
    assert cfg.data.reader._target_.endswith("Dcase2020Reader") and cfg.data.reader.root == "/data/dcase"
    assert cfg.hydra.sweeper.params.machine == "fan,pump,slider,valve,ToyCar,ToyConveyor"


def test_evaluating_the_tested_checkpoint_reproduces_the_runs_metrics(cfg_factory, tmp_path):
    from machine_sound.eval import evaluate

    trained = train(cfg_factory("trainer.max_epochs=2", output_dir=tmp_path / "run"))
    again = evaluate(trained["best_checkpoint"], output_dir=tmp_path / "eval")
    assert again["metrics"] == pytest.approx(trained["metrics"])
    assert again["threshold"] == pytest.approx(trained["threshold"]) and again["n_test"] == trained["n_test"]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"] == again["metrics"]
    other = evaluate(trained["best_checkpoint"], ["data.reader.test_snr=6_dB"], output_dir=tmp_path / "eval6")
    assert other["name"] == "-6_dB_pump/id_04 (test at 6_dB)" and other["metrics"] != trained["metrics"]


def test_a_model_trained_on_synthetic_data_is_evaluated_on_real_mimii_files(cfg_factory, tmp_path):
    """The README's way: the stored config's data.root pointed at the real tree and its generator set to null."""
    from conftest import make_mimii
    from machine_sound.eval import evaluate

    trained = train(cfg_factory("trainer.max_epochs=1", "id=id_00", output_dir=tmp_path / "run"))
    make_mimii(tmp_path / "real", n_normal=6, n_abnormal=4, seconds=2.0)
    result = evaluate(trained["best_checkpoint"], [f"data.root={tmp_path / 'real'}", "data.generator=null"],
                      output_dir=tmp_path / "eval")
    assert result["root"] == str(tmp_path / "real")
    tested = (tmp_path / "eval" / "test_scores.csv").read_text().splitlines()[1:]
    assert tested and all(line.startswith(str(tmp_path / "real")) for line in tested)
    assert not list((tmp_path / "real").rglob(".synthetic.json"))  # nothing was generated there


def test_eval_errors_name_the_checkpoint_or_setting(cfg_factory, tmp_path, monkeypatch):
    from machine_sound.errors import ConfigError, DataError, one_line
    from machine_sound.eval import evaluate

    with pytest.raises(DataError, match="no checkpoint at .*missing.ckpt"):
        evaluate(tmp_path / "missing.ckpt")
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(DataError, match="notes.ckpt is not a PyTorch checkpoint"):
        evaluate(tmp_path / "notes.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(DataError, match="other.ckpt is not a checkpoint written by machine-sound training"):
        evaluate(tmp_path / "other.ckpt")
    trained = train(cfg_factory(output_dir=tmp_path / "run"))
    with pytest.raises(ConfigError, match="unknown setting 'dta.root'"):
        evaluate(trained["best_checkpoint"], ["dta.root=/x"])
    with pytest.raises(ConfigError, match="snr: one value per setting here, not a sweep"):
        evaluate(trained["best_checkpoint"], ["snr=0_dB,6_dB"])
    old = torch.load(trained["best_checkpoint"], weights_only=True)
    del old["machine_sound_format"]  # as checkpoints were before the model owned its front end
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(DataError, match=r"old.ckpt was written by another version of machine-sound \(checkpoint "
                                        r"format 1, this version reads 2.* train the model again"):
        evaluate(tmp_path / "old.ckpt")
    refused = {"data=folder": "a config group cannot be switched on a stored run config",
               "model.threshold=0.1": "the model and its settings are the checkpoint's",
               "data.sample_rate=8000": "but the model's front end hears 16000 Hz audio; keep 16000 and set "
                                        "data.resample=true",
               "data.reader.protocol=baseline": "data.task=id_anomaly, but the model was trained for task binary",
               "data.clip_seconds=0.01": "gives 160 samples, fewer than the front end's STFT needs \\(513\\)",
               "data.channel=[0,1]": "data.channel=\\(0, 1\\) gives 2 channel\\(s\\), but the model was trained on 1",
               "data.clip_seconds=abc": "data.clip_seconds='abc': a positive number",
               "trainer.precision=16-true": "trainer.precision=16-true keeps the weights themselves in half",
               "trainer.devices=2": "trainer.devices=2, trainer.num_nodes=1: a run on several devices or machines "
                                    "needs trainer.strategy=ddp",
               "trainer.accelerator=bogus": "trainer settings: You selected an invalid accelerator name"}
    for override, message in refused.items():
        with pytest.raises(ConfigError, match=message):
            evaluate(trained["best_checkpoint"], [override], output_dir=tmp_path / "refused")
    assert not (tmp_path / "refused").exists()  # refused before anything is read or written

    def full_disk(path, *args):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("machine_sound.eval.write_test_scores", full_disk)
    with pytest.raises(OSError) as caught:
        evaluate(trained["best_checkpoint"], output_dir=tmp_path / "full")
    assert one_line(caught.value).startswith(f"cannot write {tmp_path / 'full' / 'test_scores.csv'}: No space left")
    assert not (tmp_path / "full").exists()  # no half-written evaluation folder (split.csv, config.yaml) is left


def test_a_diverged_training_stops_with_a_clear_error_instead_of_garbage_metrics(cfg_factory, monkeypatch):
    from machine_sound.errors import MachineSoundError

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", lambda self, logits, target: logits.sum() * float("nan"))
    with pytest.raises(MachineSoundError, match=r"training diverged: the training loss is nan at epoch 0, step 0; "
                                                r"lower model.optimizer.lr"):
        train(cfg_factory())


def test_a_checkpoint_alone_turns_waveforms_into_the_scores_of_the_test_and_of_predict(cfg_factory, tmp_path):
    """load_from_checkpoint(weights_only=True), then model(wave): the probabilities the test step scored (the
    run's test_scores.csv) and that predict writes, for every test file."""
    import csv

    import soundfile as sf

    from machine_sound.data.audio import fit_length
    from machine_sound.models.classifier import SpectrogramClassifier
    from machine_sound.predict import predict

    run = tmp_path / "run"
    result = train(cfg_factory("trainer.max_epochs=2", output_dir=run))
    model = SpectrogramClassifier.load_from_checkpoint(result["best_checkpoint"], weights_only=True).eval()
    with open(run / "test_scores.csv") as f:
        tested = list(csv.DictReader(f))
    assert len(tested) == sum(result["n_test"].values())
    frames = int(2.0 * 16000)  # data.clip_seconds of the run
    waves = torch.stack([torch.from_numpy(fit_length(sf.read(r["path"], dtype="float32", always_2d=True)[0].T,
                                                     frames)) for r in tested])
    with torch.no_grad():
        p_abnormal = model(waves).softmax(dim=-1)[:, 1]
    assert p_abnormal.tolist() == pytest.approx([float(r["p_abnormal"]) for r in tested], abs=1e-5)
    (tmp_path / "clips").mkdir()
    for i, r in enumerate(tested):
        (tmp_path / "clips" / f"{i:03d}.wav").symlink_to(r["path"])
    _, rows = predict(result["best_checkpoint"], tmp_path / "clips", tmp_path / "predicted.csv")
    assert [r["p_abnormal"] for r in rows] == pytest.approx(p_abnormal.tolist(), abs=1e-5)


def test_a_model_in_half_precision_keeps_its_front_end_float32(cfg_factory):
    model = instantiate(cfg_factory().model).eval()
    wave = torch.randn(2, 1, 16000)
    with torch.no_grad():
        full = model(wave)
        model.to(torch.bfloat16)
        half = model(wave)
    assert half.dtype == torch.bfloat16 and full.dtype == torch.float32  # the output follows the model
    assert all(b.dtype == torch.float32 for b in model.frontend.buffers() if b.is_floating_point())
    assert next(model.net.parameters()).dtype == torch.bfloat16


def test_cfg_job_resolve_prints_what_runs(tmp_path):
    """No `auto` left for the code to settle later: the composed config says what the task makes of it."""
    done = subprocess.run([sys.executable, "train.py", "data=dcase2020", "data.root=/data/dcase", "--cfg", "job",
                           "--resolve"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for line in ("task: id_anomaly", "monitor: val/loss", "mode: min", "subtract_background: false"):
        assert line in done.stdout, line
