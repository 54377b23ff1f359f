"""Every bad input ends in a clear error that names the setting or file and says what to do."""

import subprocess
import sys

import pytest
import torch

from conftest import REPO, make_mimii, setup_mimii
from machine_sound.errors import ConfigError, DataError
from machine_sound.train import train


def test_unknown_machine_lists_the_valid_ones(cfg_factory):
    with pytest.raises(ConfigError, match="unknown machine 'pmp'; valid: fan, pump, slider, valve"):
        train(cfg_factory("machine=pmp"))


def test_unknown_id_lists_the_valid_ones(cfg_factory):
    with pytest.raises(ConfigError, match="unknown id 'id_05' for pump; valid: id_00, id_02, id_04, id_06"):
        train(cfg_factory("id=id_05"))


def test_bad_snr_is_named(cfg_factory):
    with pytest.raises(ConfigError, match="snr '-6dB'"):
        train(cfg_factory("snr=-6dB"))


def test_an_snr_mimii_does_not_have_is_refused_not_invented(cfg_factory, tmp_path):
    with pytest.raises(ConfigError, match=r"^snr=3_dB: MIMII's noise levels are -6_dB, 0_dB, 6_dB \(to use another, "
                                          r"add it to data.reader.snrs\)$"):
        train(cfg_factory("snr=3_dB", f"paths.data_dir={tmp_path}"))
    with pytest.raises(ConfigError, match=r"^data.reader.test_snr=12_dB: MIMII's noise levels"):
        train(cfg_factory("data.reader.test_snr=12_dB", f"paths.data_dir={tmp_path}"))
    assert not (tmp_path / "synthetic").exists()  # no '3 dB' dataset was synthesised


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


def test_too_few_files_for_a_split_says_how_many_are_needed(cfg_factory, tmp_path):
    make_mimii(tmp_path, n_abnormal=2)
    with pytest.raises(DataError, match=r"only 2 'abnormal' file\(s\).*at least 3 per class"):
        setup_mimii(cfg_factory, tmp_path)


def test_command_line_prints_one_line_not_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "train.py", "machine=pmp", f"hydra.run.dir={tmp_path / 'run'}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown machine 'pmp'; valid: fan, pump, slider, valve"
    assert not (tmp_path / "run").exists()  # a refused run leaves no folder behind


@pytest.mark.parametrize("override, message", [
    ("data.clip_seconds=0", "data.clip_seconds=0: a positive number"),
    ("data.clip_seconds=abc", "data.clip_seconds='abc': a positive number"),
    ("data.batch_size=0", "data.batch_size=0: a positive whole number"),
    ("data.resample=no", "data.resample='no': true or false"),
    ("data.reader.machines.pump=id_04", "data.reader.machines.pump='id_04': a list of distinct IDs"),
])
def test_settings_of_the_wrong_kind_are_named(cfg_factory, tmp_path, override, message):
    make_mimii(tmp_path / "mimii")
    with pytest.raises(ConfigError, match=message):
        train(cfg_factory("data=mimii", f"data.root={tmp_path / 'mimii'}", "machine=pump", "id=id_00", override))


def test_clips_too_short_for_the_front_end_or_the_synthetic_faults_are_refused_before_training(cfg_factory,
                                                                                               tmp_path):
    make_mimii(tmp_path / "mimii")
    with pytest.raises(ConfigError, match=r"data.clip_seconds=0.01 gives 160 samples, fewer than the front end's"):
        train(cfg_factory("data=mimii", f"data.root={tmp_path / 'mimii'}", "machine=pump", "id=id_00",
                          "data.clip_seconds=0.01"))
    with pytest.raises(ConfigError, match=r"data.generator.duration_s=0.5 \(data.clip_seconds\): the synthetic "
                                          r"faults need clips of at least 1 s"):
        train(cfg_factory("data.clip_seconds=0.5"))
    with pytest.raises(ConfigError, match=r"^data.clip_seconds='abc': a positive number$"):  # not a TypeError
        train(cfg_factory("data.clip_seconds=abc"))


@pytest.mark.parametrize("override, message", [
    ("trainer.max_epochs=abc", r"^trainer.max_epochs='abc': a positive whole number$"),
    ("trainer.max_epochs=0", r"^trainer.max_epochs=0: a positive whole number$"),
    ("model.optimizer.lr=-0.01", r"^model.optimizer.lr=-0.01: a positive number$"),
    ("model.optimizer.weight_decay=-1", r"^model.optimizer.weight_decay=-1: a number >= 0$"),
    ("seed=abc", r"^seed='abc': a whole number from 0 to 4294967295$"),
    ("seed=-1", r"^seed=-1: a whole number from 0 to 4294967295$"),
    ("trainer.devices=5", r"^trainer.devices=5, trainer.num_nodes=1: a run on several devices or machines needs "
                          r"trainer.strategy=ddp"),
    ("data.split=abc", r"^data.split='abc': give fractions of train, val and test"),
    ("data.split.val=abc", r"^data.split=.*: give fractions of train, val and test"),
    ("data.split.val=1.5", r"^data.split fractions train=0.6, val=1.5, test=0.2 must be > 0"),
    ("trainer.precision=bf16-true", r"^trainer.precision=bf16-true keeps the weights themselves in half precision"),
    ("trainer.precision=16-true", r"^trainer.precision=16-true keeps the weights .* use bf16-mixed"),
    ("trainer.precision=bogus", r"^trainer.precision='bogus': choose 32-true, bf16-mixed or 16-mixed"),
    ("trainer.devices=0", r"^trainer.devices=0: a number of devices >= 1"),
    ("trainer.accelerator=bogus", r"^trainer settings: You selected an invalid accelerator name"),
])
def test_run_settings_are_checked_before_anything_is_built(cfg_factory, tmp_path, override, message):
    cfg = cfg_factory(override, "paths.data_dir=" + str(tmp_path / "never"))
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not (tmp_path / "never").exists()  # refused before the synthetic data was written


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_trainer_without_a_gpu_is_refused_in_one_line(cfg_factory):
    with pytest.raises(ConfigError, match=r"^trainer.accelerator=gpu, but torch finds no CUDA GPU on this machine"):
        train(cfg_factory("trainer=gpu"))


def test_a_run_folder_that_cannot_be_written_or_holds_a_finished_run_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "train.py", "hydra.run.dir=/proc/nowhere/run"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("error: cannot write /proc/nowhere/run: No such file or directory; choose another "
                                   "hydra.run.dir (or paths.log_dir)")
    finished = tmp_path / "finished"
    (finished / ".hydra").mkdir(parents=True)
    (finished / ".hydra" / "config.yaml").write_text("the original run's record\n")
    (finished / "metrics.json").write_text("{}")
    done = subprocess.run([sys.executable, "train.py", f"hydra.run.dir={finished}"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {finished} already holds a finished run; choose another hydra.run.dir"
    assert (finished / ".hydra" / "config.yaml").read_text() == "the original run's record\n"  # not rewritten
