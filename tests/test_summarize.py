"""The sweep table: built from job folders alone, for complete, partial, failed and multi-seed sweeps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from machine_sound.config import swept_overrides
from machine_sound.summarize import collect, main, table_rows, with_positive, write_summary
from machine_sound.sweep import claim_gpu, cpu_share


def metrics(auroc: float, tn=50, fp=10, fn=4, tp=16) -> dict:
    return {"precision": tp / (tp + fp), "recall": tp / (tp + fn), "accuracy": (tp + tn) / (tn + fp + fn + tp),
            "f1": 2 * tp / (2 * tp + fp + fn), "balanced_accuracy": 0.5 * (tp / (tp + fn) + tn / (tn + fp)),
            "auroc": auroc, "pauc": auroc - 0.1, "tn": tn, "fp": fp, "fn": fn, "tp": tp}


def make_job(sweep: Path, machine: str, machine_id: str, seed: int = 42, status: str = "finished",
             auroc: float = 0.9, extra: dict | None = None, snr: str = "-6_dB") -> Path:
    """A job folder as a Hydra multirun leaves it."""
    overrides = {"machine": machine, "id": machine_id, **(extra or {})}
    folder = sweep / f"{snr}_{machine}" / machine_id / ",".join(f"{k}={v}" for k, v in (extra or {}).items())
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"machine": machine, "id": machine_id, "snr": snr, "seed": seed}),
                   folder / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create([f"{k}={v}" for k, v in overrides.items()]), folder / ".hydra" / "overrides.yaml")
    if status == "finished":
        (folder / "metrics.json").write_text(json.dumps({"machine": machine, "metrics": metrics(auroc)}))
    elif status == "failed":
        (folder / "failed.json").write_text(json.dumps({"error": f"no folder {machine_id}"}))
    return folder


def job_rows(rows):
    return {r["name"]: r for r in rows if r["kind"] == "job"}


def test_complete_sweep_table_equals_each_jobs_metrics(tmp_path):
    for i, (machine, machine_id) in enumerate([("fan", "id_00"), ("fan", "id_02"), ("pump", "id_00"),
                                               ("pump", "id_02")]):
        make_job(tmp_path, machine, machine_id, auroc=0.80 + 0.05 * i)
    paths = write_summary(tmp_path)
    rows = list(csv.DictReader(paths["csv"].open()))
    jobs = [r for r in rows if r["kind"] == "job"]
    assert [r["name"] for r in jobs] == ["-6_dB_fan/id_00", "-6_dB_fan/id_02", "-6_dB_pump/id_00", "-6_dB_pump/id_02"]
    for r in jobs:
        expected = json.loads((Path(r["folders"]) / "metrics.json").read_text())["metrics"]
        assert float(r["auroc"]) == pytest.approx(expected["auroc"])
        assert float(r["precision"]) == pytest.approx(expected["precision"])
        assert r["status"] == "finished"
    means = {r["name"]: r for r in rows if r["kind"] != "job"}
    assert float(means["-6_dB_fan mean (2 of 2 IDs)"]["auroc"]) == pytest.approx(0.825)
    assert float(means["-6_dB mean (4 of 4 IDs)"]["auroc"]) == pytest.approx(0.875)
    md = paths["md"].read_text()
    assert "| -6_dB_fan/id_00 | 62 | 80 | 82 | 0.696 |" in md  # P, R, Acc in percent as the seed prints them
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_failed_and_unfinished_jobs_are_marked_and_the_rest_is_complete(tmp_path):
    make_job(tmp_path, "fan", "id_00", auroc=0.9)
    make_job(tmp_path, "fan", "id_02", auroc=0.7)
    make_job(tmp_path, "pump", "id_00", status="failed")
    make_job(tmp_path, "pump", "id_02", status="unfinished")
    rows = job_rows(table_rows(collect(tmp_path)))
    assert rows["-6_dB_pump/id_00"]["status"] == "failed"
    assert rows["-6_dB_pump/id_00"]["error"] == "no folder id_00"
    assert rows["-6_dB_pump/id_00"]["auroc"] is None
    assert rows["-6_dB_pump/id_02"]["status"] == "unfinished"
    assert rows["-6_dB_fan/id_02"]["auroc"] == pytest.approx(0.7)
    md = write_summary(tmp_path)["md"].read_text()
    assert "failed: no folder id_00" in md
    assert "1 failed, 1 unfinished of 4." in md


def test_several_seeds_give_mean_and_std(tmp_path):
    for seed, auroc in [(1, 0.8), (2, 0.9), (3, 1.0)]:
        make_job(tmp_path, "valve", "id_00", seed=seed, auroc=auroc, extra={"seed": seed})
    rows = job_rows(table_rows(collect(tmp_path)))
    assert list(rows) == ["-6_dB_valve/id_00"]  # seeds are averaged, not separate rows
    row = rows["-6_dB_valve/id_00"]
    assert row["finished"] == 3 and row["seeds"] == "1,2,3"
    assert row["auroc"] == pytest.approx(0.9)
    assert row["auroc_std"] == pytest.approx(0.1)
    assert "0.900 ± 0.100" in write_summary(tmp_path)["md"].read_text()


def test_other_swept_overrides_make_separate_rows(tmp_path):
    make_job(tmp_path, "fan", "id_00", auroc=0.8, extra={"model.backbone": "resnet18"})
    make_job(tmp_path, "fan", "id_00", auroc=0.9, extra={"model.backbone": "efficientnet_b0"})
    rows = job_rows(table_rows(collect(tmp_path)))
    assert set(rows) == {"-6_dB_fan/id_00 [model.backbone=resnet18]",
                         "-6_dB_fan/id_00 [model.backbone=efficientnet_b0]"}


def test_normal_as_positive_class_swaps_precision_and_recall_sides():
    m = with_positive(metrics(0.9, tn=50, fp=10, fn=4, tp=16), "normal")
    assert m["precision"] == pytest.approx(50 / 54)  # normal predicted normal / all predicted normal
    assert m["recall"] == pytest.approx(50 / 60)
    assert m["f1"] == pytest.approx(100 / 114)
    assert m["auroc"] == 0.9 and m["accuracy"] == pytest.approx(66 / 80)


def test_command_line_summarizes_a_half_finished_sweep_and_refuses_other_folders(tmp_path, capsys):
    make_job(tmp_path, "fan", "id_00")
    make_job(tmp_path, "fan", "id_02", status="unfinished")
    assert main([str(tmp_path), "--positive", "normal", "--metric", "f1"]) == 0
    assert "positive class for P, R and F1: **normal**" in capsys.readouterr().out
    assert (tmp_path / "summary.png").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 2
    assert "no job folders" in capsys.readouterr().err


def test_job_folder_names_hold_only_the_swept_overrides(tmp_path):
    OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"task": ["machine=fan,pump", "seed=1,2",
                                                                      "trainer.max_epochs=3"]},
                                               "sweeper": {"params": {"id": "id_00,id_02"}}}}),
                   tmp_path / "multirun.yaml")
    name = swept_overrides(str(tmp_path), ["machine=fan", "seed=2", "trainer.max_epochs=3", "id=id_00"])
    assert name == "/seed=2"
    assert swept_overrides(str(tmp_path), ["machine=fan", "id=id_00", "trainer.max_epochs=3"]) == ""


def test_parallel_jobs_share_cpus_and_never_share_a_gpu(tmp_path):
    assert cpu_share(2, cpus=16) == 8
    assert cpu_share(-1, cpus=16) == 1
    assert cpu_share(4, cpus=2) == 1
    assert cpu_share(None, cpus=2) == 2
    first, lock_a = claim_gpu(tmp_path, count=2, preferred=0)
    second, lock_b = claim_gpu(tmp_path, count=2, preferred=0)
    assert {first, second} == {0, 1}
    lock_a.close()
    third, lock_c = claim_gpu(tmp_path, count=2, preferred=1)
    assert third == 0  # GPU 1 is still held, 0 was freed
    lock_b.close()
    lock_c.close()


def test_a_dcase_job_gives_a_row_per_id_and_an_unfinished_one_a_single_row(tmp_path):
    for machine, status in (("fan", "finished"), ("ToyCar", "unfinished")):
        folder = tmp_path / f"dcase2020_{machine}"
        (folder / ".hydra").mkdir(parents=True)
        config = {"machine": machine, "seed": 42,
                  "data": {"task": "id_anomaly",
                           "reader": {"_target_": "machine_sound.data.readers.dcase2020.Dcase2020Reader"}}}
        OmegaConf.save(OmegaConf.create(config), folder / ".hydra" / "config.yaml")
        if status == "finished":
            per_id = {"id_00": {"auroc": 0.9, "pauc": 0.8}, "id_02": {"auroc": 0.7, "pauc": 0.6}}
            (folder / "metrics.json").write_text(json.dumps({"metrics": {"auroc": 0.8, "pauc": 0.7}, "layout":
                                                             "dcase2020", "task": "id_anomaly", "per_id": per_id}))
    rows = table_rows(collect(tmp_path))
    jobs = job_rows(rows)
    assert set(jobs) == {"dcase2020_fan/id_00", "dcase2020_fan/id_02", "dcase2020_ToyCar/all IDs"}
    assert jobs["dcase2020_fan/id_02"]["auroc"] == pytest.approx(0.7) and jobs["dcase2020_fan/id_02"]["f1"] is None
    assert jobs["dcase2020_ToyCar/all IDs"]["status"] == "unfinished"
    means = {r["name"]: r for r in rows if r["kind"] != "job"}
    assert means["dcase2020_fan mean (2 of 2 IDs)"]["pauc"] == pytest.approx(0.7)
    write_summary(tmp_path)  # the table, csv and heatmap are written for it too


def test_class_folder_runs_get_no_mean_of_one_cell_and_a_bad_task_does_not_stop_the_table(tmp_path):
    for name, task in (("a", "multiclass"), ("b", "no-such-task")):
        folder = tmp_path / "folder" / name
        (folder / ".hydra").mkdir(parents=True)
        OmegaConf.save(OmegaConf.create({"seed": 1, "data": {"task": task, "reader": {
            "_target_": "machine_sound.data.readers.folder.FolderReader"}}}), folder / ".hydra" / "config.yaml")
        (folder / "metrics.json").write_text(json.dumps({"task": task, "layout": "folder", "metrics": metrics(0.8)}))
    rows = table_rows(collect(tmp_path))
    assert job_rows(rows)["folder"]["runs"] == 2  # the same data twice: one cell of two runs
    assert [r["name"] for r in rows if r["kind"] != "job"] == []  # no machine means, no mean of a single cell
    assert "folder" in write_summary(tmp_path)["md"].read_text()
