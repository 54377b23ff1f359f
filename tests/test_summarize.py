"""The sweep table: built from job folders alone, for complete, partial, failed and multi-seed sweeps."""

from __future__ import annotations

import csv
import errno
import json
import logging
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf

from machine_sound.config import swept_overrides
from machine_sound.summarize import collect, main, table_rows, with_positive, write_summary
from machine_sound.sweep import SweepCallback, claim_gpu, cpu_share


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
    assert "| -6_dB_fan/id_00 | abnormal | 62 | 80 | 82 | 0.696 |" in md  # P, R, Acc in percent as the seed prints
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
    assert "1 failed, 1 unfinished, 0 pending of 4 runs." in md


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
    assert "| -6_dB_fan/id_00 | normal | 93 | 83 |" in capsys.readouterr().out
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


def test_a_mimii_baseline_protocol_job_gives_the_row_of_its_own_id_only(tmp_path):
    """protocol=baseline learns the machine type's IDs but tests one: the others' per-ID entries are empty."""
    for machine_id, value in (("id_00", 0.65), ("id_02", 0.73)):
        folder = make_job(tmp_path, "fan", machine_id)
        per_id = {i: ({"auroc": value, "pauc": value - 0.1} if i == machine_id else
                      {"auroc": None, "pauc": None, "missing": "no normal and no anomalous test clip"})
                  for i in ("id_00", "id_02", "id_04", "id_06")}
        (folder / "metrics.json").write_text(json.dumps({"metrics": {"auroc": value, "pauc": value - 0.1},
                                                         "task": "id_anomaly", "per_id": per_id}))
    rows = table_rows(collect(tmp_path))
    jobs = job_rows(rows)
    assert set(jobs) == {"-6_dB_fan/id_00", "-6_dB_fan/id_02"}
    assert jobs["-6_dB_fan/id_00"]["auroc"] == pytest.approx(0.65) and jobs["-6_dB_fan/id_00"]["finished"] == 1
    mean = next(r for r in rows if r["kind"] != "job" and r["name"].startswith("-6_dB_fan mean"))
    assert mean["auroc"] == pytest.approx(0.69) and mean["name"] == "-6_dB_fan mean (2 of 2 IDs)"


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


def write_multirun(sweep: Path, task: list[str], params: dict | None = None) -> None:
    """The multirun.yaml Hydra's basic sweeper writes before any job starts: the sweep's config and its overrides."""
    OmegaConf.save(OmegaConf.create({
        "hydra": {"overrides": {"task": task},
                  "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": params}},
        "machine": "pump", "id": "id_04", "snr": "-6_dB", "seed": 42, "trainer": {"max_epochs": 20},
        "data": {"name": "${snr}_${machine}/${id}", "task": "binary",
                 "reader": {"_target_": "machine_sound.data.readers.mimii.MimiiReader"}}}), sweep / "multirun.yaml")


def test_jobs_of_the_sweep_without_a_folder_yet_are_pending(tmp_path):
    write_multirun(tmp_path, ["machine=fan,pump", "trainer.max_epochs=3"], params={"id": "id_00,id_02"})
    common = {"trainer.max_epochs": 3}
    make_job(tmp_path, "fan", "id_00", auroc=0.9, extra=common)
    make_job(tmp_path, "fan", "id_02", status="unfinished", extra=common)  # running: its folder has .hydra/ only
    jobs = collect(tmp_path)
    assert [(j.machine, j.id, j.status) for j in jobs] == [("fan", "id_00", "finished"), ("fan", "id_02", "unfinished"),
                                                          ("pump", "id_00", "pending"), ("pump", "id_02", "pending")]
    assert jobs[2].folder == tmp_path / "-6_dB_pump" / "id_00"  # where Hydra will put it
    rows = job_rows(table_rows(jobs))
    assert rows["-6_dB_pump/id_02"]["status"] == "pending" and rows["-6_dB_pump/id_02"]["auroc"] is None
    md = write_summary(tmp_path)["md"].read_text()
    assert "| -6_dB_pump/id_00 | – | – |" in md and "0 failed, 1 unfinished, 2 pending of 4 runs." in md


def test_the_pending_jobs_are_hydras_own_expansion_of_the_sweep(tmp_path):
    write_multirun(tmp_path, ["machine=fan", "seed=range(1,4)"])
    make_job(tmp_path, "fan", "id_04", seed=2, extra={"seed": 2})
    assert sorted((j.seed, j.status) for j in collect(tmp_path)) == [(1, "pending"), (2, "finished"), (3, "pending")]


def test_each_job_reports_the_class_its_precision_and_recall_are_for(tmp_path):
    make_job(tmp_path, "fan", "id_00")  # MIMII, from before positive_class was recorded: abnormal
    jobs = {"folder/binary": {"task": "binary", "positive_class": "broken", "classes": ["ok", "broken"]},
            "folder/multi": {"task": "multiclass", "positive_class": None, "classes": ["a", "b", "c"]},
            "dcase2020_fan": {"task": "id_anomaly", "positive_class": None, "classes": ["id_00", "id_02"]}}
    for name, record in jobs.items():
        folder = tmp_path / name
        (folder / ".hydra").mkdir(parents=True)
        OmegaConf.save(OmegaConf.create({"seed": 1, "machine": "fan" if "dcase" in name else None}),
                       folder / ".hydra" / "config.yaml")
        OmegaConf.save(OmegaConf.create([f"+job={name}"]), folder / ".hydra" / "overrides.yaml")
        layout = name.split("_")[0].split("/")[0]
        per_id = {"id_00": {"auroc": 0.8, "pauc": 0.7}} if record["task"] == "id_anomaly" else None
        (folder / "metrics.json").write_text(json.dumps({**record, "layout": layout, "metrics": metrics(0.8),
                                                         "per_id": per_id}))
    positive = {r["name"]: r["positive"] for r in table_rows(collect(tmp_path)) if r["kind"] == "job"}
    assert positive == {"-6_dB_fan/id_00": "abnormal", "folder [job=folder/binary]": "broken",
                        "folder [job=folder/multi]": "macro", "dcase2020_fan/id_00 [job=dcase2020_fan]": "–"}
    normal = {r["name"]: r for r in table_rows(collect(tmp_path), "normal") if r["kind"] == "job"}
    assert normal["folder [job=folder/binary]"]["positive"] == "ok"  # the negative (healthy) class of that job
    assert normal["folder [job=folder/binary]"]["precision"] == pytest.approx(50 / 54)
    assert normal["-6_dB_fan/id_00"]["positive"] == "normal"
    assert normal["folder [job=folder/multi]"]["positive"] == "macro"
    paths = write_summary(tmp_path, positive="normal")
    assert "| folder [job=folder/binary] | ok | 93 | 83 |" in paths["md"].read_text()
    assert "**abnormal**" not in paths["md"].read_text()
    assert {r["name"]: r["positive"] for r in csv.DictReader(paths["csv"].open())}["folder [job=folder/multi]"] \
        == "macro"


def test_a_run_folder_is_named_as_such(tmp_path, capsys):
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.create({"seed": 1}), tmp_path / ".hydra" / "config.yaml")
    (tmp_path / "metrics.json").write_text(json.dumps({"metrics": metrics(0.9)}))
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a run folder, not a sweep folder" in err
    assert str(tmp_path / "metrics.json") in err
    assert not (tmp_path / "summary.md").exists()


def job_config(folder: Path, sweep: Path, mode=RunMode.MULTIRUN):
    return OmegaConf.create({"hydra": {"mode": mode, "sweep": {"dir": str(sweep)},
                                       "runtime": {"output_dir": str(folder)},
                                       "overrides": {"task": ["machine=pump", "id=id_02"]}}})


def test_a_failed_job_record_is_written_whole_or_not_at_all(tmp_path, monkeypatch, caplog):
    folder = make_job(tmp_path, "pump", "id_02", status="unfinished")
    failed = JobReturn(status=JobStatus.FAILED, _return_value=ValueError("no folder id_02\nsecond line"))
    SweepCallback().on_job_end(job_config(folder, tmp_path, RunMode.MULTIRUN), failed)
    record = json.loads((folder / "failed.json").read_text())
    assert record["error"].startswith("no folder id_02") and record["type"] == "ValueError"
    (folder / "failed.json").unlink()

    def disk_full(self, text, *args, **kwargs):
        open(self, "w").close()  # the file is created, then nothing fits
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with caplog.at_level(logging.ERROR, logger="machine_sound.sweep"):
        SweepCallback().on_job_end(job_config(folder, tmp_path, RunMode.MULTIRUN), failed)  # no exception
    assert not (folder / "failed.json").exists() and not list(folder.glob(".failed.json*"))
    assert any("could not write" in r.message and "No space left" in r.message for r in caplog.records)


def test_a_job_shows_as_unfinished_as_soon_as_it_starts(tmp_path):
    write_multirun(tmp_path, ["machine=fan", "id=id_00,id_02"])
    folder = make_job(tmp_path, "fan", "id_00", status="unfinished")
    SweepCallback().on_job_start(job_config(folder, tmp_path))
    rows = {r["name"]: r["status"] for r in csv.DictReader((tmp_path / "summary.csv").open()) if r["kind"] == "job"}
    assert rows == {"-6_dB_fan/id_00": "unfinished", "-6_dB_fan/id_02": "pending"}


def test_an_id_all_job_gives_a_row_per_id_it_tested(tmp_path):
    """id=all: one detector per machine type, tested on each of its IDs."""
    folder = make_job(tmp_path, "pump", "all")
    per_id = {"id_00": {"auroc": 0.6, "pauc": 0.5}, "id_02": {"auroc": 0.8, "pauc": 0.7}}
    (folder / "metrics.json").write_text(json.dumps({"metrics": {"auroc": 0.7, "pauc": 0.6}, "task": "id_anomaly",
                                                     "per_id": per_id}))
    jobs = job_rows(table_rows(collect(tmp_path)))
    assert set(jobs) == {"-6_dB_pump/id_00", "-6_dB_pump/id_02"}
    assert jobs["-6_dB_pump/id_02"]["auroc"] == pytest.approx(0.8)
