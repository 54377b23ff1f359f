"""A real Hydra multirun: parallel jobs (joblib), one of them failing, one table at the end, and a re-run that
keeps the finished jobs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import REPO, SMALL
from machine_sound.synthetic.generator import SyntheticMimii


def hparams_of(run_dir) -> dict:
    """The HPARAMS tab's row of one run, read with TensorBoard's own event reader."""
    for events in run_dir.rglob("events.out.tfevents.*"):
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    if data.HasField("session_start_info"):
                        info = data.session_start_info.hparams
                        return {k: v.string_value or v.number_value for k, v in info.items()}
    return {}


def test_parallel_sweep_with_one_failed_job_writes_one_table_and_resumes(tmp_path):
    root, sweep = tmp_path / "mimii", tmp_path / "sweep"
    generator = SyntheticMimii(n_normal=15, n_abnormal=6, duration_s=2.0)
    for machine, machine_id in [("fan", "id_00"), ("fan", "id_02"), ("pump", "id_00")]:  # pump/id_02 missing
        generator.ensure(root, "-6_dB", machine, machine_id, progress=False)
    small = [o for o in SMALL if not o.startswith("data.generator.")]
    command = [sys.executable, "train.py", "-m", "machine=fan,pump", "id=id_00,id_02", "data=mimii",
               f"data.root={root}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}",
               *small]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0, "a failed job must make the sweep's exit status say so"

    rows = {r["name"]: r for r in csv.DictReader((sweep / "summary.csv").open()) if r["kind"] == "job"}
    assert set(rows) == {"-6_dB_fan/id_00", "-6_dB_fan/id_02", "-6_dB_pump/id_00", "-6_dB_pump/id_02"}
    failed = rows.pop("-6_dB_pump/id_02")
    assert failed["status"] == "failed" and "id_02" in failed["error"] and "\n" not in failed["error"]
    for name, row in rows.items():
        job = sweep / name
        result = json.loads((job / "metrics.json").read_text())
        assert row["status"] == "finished"
        assert float(row["auroc"]) == result["metrics"]["auroc"]
        assert float(row["f1"]) == result["metrics"]["f1"]
        hparams = hparams_of(job / "tensorboard")
        assert hparams["machine"] == result["machine"] and hparams["id"] == result["id"]
        assert hparams["snr"] == "-6_dB" and hparams["backbone"] == "mobilenetv3_small_100"
    assert "1 failed, 0 unfinished, 0 pending of 4 runs." in (sweep / "summary.md").read_text()
    assert (sweep / "summary.png").stat().st_size > 1000

    # Re-running the same sweep folder keeps the finished jobs and retries only the failed one.
    finished = {name: (sweep / name / "metrics.json").stat().st_mtime_ns for name in rows}
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0
    assert {name: (sweep / name / "metrics.json").stat().st_mtime_ns for name in rows} == finished
    assert (sweep / "-6_dB_pump/id_02/failed.json").exists()

    # Run again with a changed setting, the sweep is refused before anything is written: its results and records
    # are not passed off as the changed sweep's.
    record = (sweep / "multirun.yaml").read_text()
    changed = subprocess.run([*command, "model.drop_rate=0.3"], cwd=REPO, capture_output=True, text=True,
                             timeout=600)
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    assert changed.stderr.strip() == (f"error: {sweep} holds a sweep run with other settings (model.drop_rate: 0.2 "
                                      "-> 0.3); run the changed sweep in a new folder (leave out hydra.sweep.dir)")
    assert (sweep / "multirun.yaml").read_text() == record
    assert {name: (sweep / name / "metrics.json").stat().st_mtime_ns for name in rows} == finished
    assert not (sweep / "-6_dB_fan/id_00/failed.json").exists()
