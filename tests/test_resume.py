"""A run killed with SIGKILL and resumed as the README says ends with exactly the uninterrupted run's result."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from conftest import REPO, SMALL

EPOCHS = ["trainer.max_epochs=4"]  # SpecAugment, time shifts, dropout and the sampler draw in every epoch


def train(*arguments, cwd=REPO, env=None):
    return subprocess.run([sys.executable, "train.py", *arguments], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.mark.parametrize("workers", [0, 1])  # with DataLoader worker processes, the first batches are prefetched
def test_run_killed_after_its_second_epoch_resumes_to_the_uninterrupted_result(tmp_path, data_dir, workers):
    common = [f"paths.data_dir={data_dir}", *[o for o in SMALL if "max_epochs" not in o], *EPOCHS,
              f"data.num_workers={workers}"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = train(f"hydra.run.dir={straight}", *common)
    assert done.returncode == 0, done.stderr[-3000:]

    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    kill = ["+callbacks.killer._target_=killer.KillAtEpoch", "+callbacks.killer.epoch=2",
            f"+callbacks.killer.marker={tmp_path / 'killed.marker'}"]
    done = train(f"hydra.run.dir={killed}", *common, *kill, env=env)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    assert not (killed / "metrics.json").exists() and (killed / "checkpoints" / "last.ckpt").is_file()
    hydra_record = (killed / ".hydra" / "config.yaml").read_text()

    shutil.copytree(killed, tmp_path / "copied", symlinks=True)
    runs_before = sorted((REPO / "outputs").rglob("*"))
    done = train(f"resume={killed}", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = json.loads((straight / "metrics.json").read_text())
    result = json.loads((killed / "metrics.json").read_text())
    assert result["metrics"] == expected["metrics"]
    assert result["threshold"] == expected["threshold"] and result["epochs"] == expected["epochs"]
    assert os.path.basename(result["best_checkpoint"]) == os.path.basename(expected["best_checkpoint"])
    assert os.path.dirname(result["best_checkpoint"]) == str(killed / "checkpoints")
    final = [torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
             for run in (straight, killed)]
    assert final[0].keys() == final[1].keys()
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])  # the same weights after the last epoch
    assert (killed / ".hydra" / "config.yaml").read_text() == hydra_record  # the run's own record is kept
    assert sorted((REPO / "outputs").rglob("*")) == runs_before  # no new run folder for the resumed part
    assert "resuming" in (killed / "train.log").read_text()
    done = train(f"resume={tmp_path / 'copied'}", env=env)  # a moved run would forget its best checkpoint so far
    assert done.returncode == 2 and "so the run was moved or copied" in done.stderr


def test_resume_refuses_other_settings_and_finished_or_empty_folders(tmp_path):
    done = train(f"resume={tmp_path}", "trainer.max_epochs=30")
    assert done.returncode == 2 and "drop trainer.max_epochs=30" in done.stderr
    assert "Traceback" not in done.stderr
    done = train(f"resume={tmp_path}")
    assert done.returncode == 2 and "no checkpoints/last.ckpt" in done.stderr
    (tmp_path / "metrics.json").write_text("{}")
    done = train(f"resume={tmp_path}")
    assert done.returncode == 2 and "finished run" in done.stderr
    done = train(f"resume={tmp_path / 'nowhere'}")
    assert done.returncode == 2 and "no such folder" in done.stderr and not (tmp_path / "nowhere").exists()
    done = train(f"resume={tmp_path}", f"hydra.run.dir={tmp_path / 'other'}")
    assert done.returncode == 2 and "drop hydra.run.dir" in done.stderr and not (tmp_path / "other").exists()
    job = tmp_path / "sweep" / "-6_dB_fan" / "id_00"
    job.mkdir(parents=True)
    (tmp_path / "sweep" / "multirun.yaml").write_text("{}")
    done = train(f"resume={job}")
    assert done.returncode == 2 and f"is a job of the sweep in {tmp_path / 'sweep'}" in done.stderr
