"""Several processes on Lightning's engines (trainer.strategy=ddp, on the CPU through gloo): a 2-process training
run finishes, and testing one checkpoint with 2 processes gives exactly the metrics of 1 process."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO, make_cfg, make_mimii, write_wav
from machine_sound.checks import check_trainer
from machine_sound.distributed import in_dataset_order
from machine_sound.errors import ConfigError
from machine_sound.eval import evaluate
from machine_sound.train import train

DDP = ["trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]
# 21 test clips: the two processes get 11 and 10, so a padded shard would repeat one and change the metrics.
MORE = ["data.generator.n_normal=70", "data.generator.n_abnormal=33"]


def settings(model: str, root) -> list[str]:
    """A classifier on 21 synthetic test clips, or a detector of two machine IDs (DCASE 2020 layout) on 13."""
    if model == "classifier":
        return MORE
    from test_layouts import make_dcase

    make_dcase(root, n_test=3)  # 12 test clips, and one more:
    write_wav(root / "fan" / "test" / "normal_id_00_00000099.wav", seconds=1.0, seed=99)
    return ["data=dcase2020", f"data.root={root}", "machine=fan", "data.clip_seconds=1.0", "model=id_classifier",
            "model.backbone=mobilenetv3_small_050"]


def test_outputs_gathered_from_unrepeated_shards_return_to_the_datasets_order():
    clips = torch.arange(7.0)
    shards = [clips[rank::3] for rank in range(3)]  # UnrepeatedDistributedSampler: process r gets r, r + 3, ...
    assert torch.equal(in_dataset_order(torch.cat(shards), 3), clips)
    assert torch.equal(in_dataset_order(clips, 1), clips)


def test_several_devices_need_ddp():
    with pytest.raises(ConfigError, match=r"^trainer.devices=2, trainer.num_nodes=1: a run on several devices or "
                                          r"machines needs trainer.strategy=ddp"):
        check_trainer(OmegaConf.create({"max_epochs": 1, "precision": "32-true", "devices": 2, "strategy": "auto"}))
    check_trainer(OmegaConf.create({"max_epochs": 1, "precision": "32-true", "devices": 2, "strategy": "ddp",
                                    "accelerator": "cpu"}))


def rows(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("model", ["classifier", "id_classifier"])
def test_two_processes_test_a_checkpoint_with_the_metrics_of_one(model, tmp_path, data_dir):
    result = train(make_cfg(tmp_path / "run", data_dir, settings(model, tmp_path / "dcase")))
    assert sum(result["n_test"].values()) % 2 == 1
    one = evaluate(result["best_checkpoint"], [], tmp_path / "one")
    command = [sys.executable, "-m", "machine_sound.eval", f"ckpt_path={result['best_checkpoint']}",
               f"paths.log_dir={tmp_path / 'two'}", *DDP]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("evaluation folder:") == 1  # the first process speaks, the other is silent
    (written,) = (tmp_path / "two").rglob("metrics.json")  # and writes nothing, in no folder of its own
    assert [p.parent for p in (tmp_path / "two").rglob("split.csv")] == [written.parent]
    two = json.loads(written.read_text())
    assert two["metrics"].keys() == one["metrics"].keys() and len(one["metrics"]) >= 3
    for key, value in one["metrics"].items():
        assert two["metrics"][key] == pytest.approx(value, abs=1e-6), key
    assert two["per_id"] == one["per_id"] and two["confusion"] == one["confusion"]
    assert two["n_test"] == one["n_test"]
    assert rows(written.with_name("test_scores.csv")) == rows(tmp_path / "one" / "test_scores.csv")


def test_a_two_process_training_run_finishes_and_writes_its_run_once(tmp_path, data_dir):
    run = tmp_path / "run"
    command = [sys.executable, "train.py", f"paths.data_dir={data_dir}", f"hydra.run.dir={run}",
               "data.clip_seconds=2.0", "data.generator.n_normal=15", "data.generator.n_abnormal=6",
               "data.batch_size=4", "model.norm_clips=8", "trainer.max_epochs=2", *DDP]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test AUROC") == 1
    result = json.loads((run / "metrics.json").read_text())
    assert result["epochs"] == 2 and 0 <= result["metrics"]["auroc"] <= 1
    assert (run / "train_ddp_process_1.log").exists() and len(rows(run / "test_scores.csv")) == 4
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [Path(result["best_checkpoint"]).name,
                                                                       "last.ckpt"]


def test_a_sweep_job_on_several_processes_is_refused_in_one_line(tmp_path):
    command = [sys.executable, "train.py", "-m", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}", *DDP]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: trainer.devices=2, trainer.num_nodes=1: one model "
                                                            "on several processes cannot run as a job of a sweep")


def test_a_failing_two_process_run_says_why_once_and_leaves_no_folder(tmp_path):
    folder = make_mimii(tmp_path / "mimii", n_normal=6, n_abnormal=3, seconds=1.0)
    clip = folder / "normal" / "00000000.wav"
    clip.write_bytes(clip.read_bytes()[:-5000])  # truncated: found when both processes check the files
    run = tmp_path / "run"
    command = [sys.executable, "train.py", "data=mimii", f"data.root={tmp_path / 'mimii'}", "machine=pump", "id=id_00",
               f"hydra.run.dir={run}", "data.clip_seconds=1.0", *DDP]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 2 and done.stderr.count("error: ") == 1, done.stderr[-2000:]
    assert "is truncated" in done.stderr and not run.exists()


@pytest.mark.skipif(shutil.which("sbatch") is not None, reason="a SLURM machine: the launcher would submit")
def test_the_slurm_launcher_without_slurm_is_refused_in_one_line(tmp_path):
    command = [sys.executable, "train.py", "-m", "seed=0,1", "hydra/launcher=slurm",
               f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 2 and not (tmp_path / "sweep").exists()
    assert done.stderr.strip().splitlines()[-1].startswith("error: hydra/launcher=slurm submits every job with SLURM's "
                                                            "sbatch, which this machine does not have")
