"""One results table for a sweep: `summary.csv`, `summary.md` and a machine x id heatmap PNG in the sweep folder.

Every job folder of a Hydra multirun holds `.hydra/` (its config and overrides) and, when it finished,
`metrics.json`; a failed job holds `failed.json` with its one-line error. The table is rebuilt from those files
alone, so it works on a finished, a failed or a half-finished sweep:

    python -m machine_sound.summarize outputs/sweeps/<date> [--metric auroc] [--positive normal]

Rows are named like the original project's table (`-6_dB_fan/id_00`); a job whose task scores anomalies within each
machine ID (`id_anomaly`, see `machine_sound.tasks`) gives a row per ID it tested (a DCASE 2020 job tests every ID
of its machine type: `dcase2020_fan/id_00`, AUROC and pAUC only); a class-folder job is named by its layout
(`folder`); a job that differs by other swept
overrides (a backbone, a learning rate) gets them appended; several seeds of one cell give mean and standard
deviation. `--positive normal` reports precision, recall and F1 with normal as the positive class, the
convention the original table fits; AUROC, balanced accuracy and accuracy do not depend on it, and pAUC stays
the DCASE definition (abnormal positive, FPR up to 0.1).
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import io
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from machine_sound.config import split_override
from machine_sound.runs import write_atomic
from machine_sound.tasks import TASKS

METRICS_FILE = "metrics.json"
FAILED_FILE = "failed.json"
JOB_CONFIG = Path(".hydra") / "config.yaml"
JOB_OVERRIDES = Path(".hydra") / "overrides.yaml"
IDENTITY_KEYS = ("snr", "machine", "id", "seed")  # what names a row (seed is averaged over)
COLUMNS = {  # metric -> (header, shown in percent)
    "precision": ("P %", True), "recall": ("R %", True), "accuracy": ("Acc %", True), "f1": ("F1", False),
    "balanced_accuracy": ("Bal. acc.", False), "auroc": ("AUROC", False), "pauc": ("pAUC", False),
}
POSITIVES = ("abnormal", "normal")
ALL_IDS = "all IDs"  # the row of an unfinished job that will test every ID of its machine type


@dataclass
class Job:
    """One job folder of a sweep and what became of it."""

    folder: Path
    snr: str  # the SNR, or the layout when the data has none (dcase2020, folder)
    machine: str
    id: str
    seed: int
    overrides: dict[str, str]
    status: str  # finished | failed | unfinished
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


def row_name(snr: str, machine: str, machine_id: str) -> str:
    """`-6_dB_fan/id_00`, `dcase2020_fan/id_00`, or `folder` for data without machines."""
    return (f"{snr}_{machine}" if machine else snr) + (f"/{machine_id}" if machine_id else "")


def _job_task(cfg, result: dict | None) -> str:
    """The task a job ran (metrics.json), or the one its config resolves to while it has not finished."""
    if result and result.get("task"):
        return result["task"]
    return str(OmegaConf.select(cfg, "data.task", default="binary", throw_on_resolution_failure=False))


def _job_layout(cfg, result: dict | None) -> str:
    if result and result.get("layout"):
        return result["layout"]
    from hydra.utils import get_class

    try:
        return get_class(OmegaConf.select(cfg, "data.reader._target_")).layout
    except Exception:  # an unreadable or foreign config: the job is still listed, named by what it has
        return "data"


def collect(sweep_dir: str | Path) -> list[Job]:
    """Every job under `sweep_dir`, finished or not, in a stable order; a job whose task scores within each
    machine ID gives one per ID it tested."""
    jobs = []
    for config_file in sorted(Path(sweep_dir).rglob(str(JOB_CONFIG))):
        folder = config_file.parent.parent
        cfg = OmegaConf.load(config_file)
        overrides: dict[str, str] = {}
        if (folder / JOB_OVERRIDES).exists():
            overrides = dict(map(split_override, OmegaConf.to_container(OmegaConf.load(folder / JOB_OVERRIDES))))
        result = json.loads((folder / METRICS_FILE).read_text()) if (folder / METRICS_FILE).exists() else None
        by_label = getattr(TASKS.get(_job_task(cfg, result)), "by_label", False)  # a bad task: one plain row
        snr = str(cfg.get("snr") or _job_layout(cfg, result))
        machine_id = str(cfg.get("id") or (ALL_IDS if by_label else ""))
        job = Job(folder, snr, str(cfg.get("machine") or ""), machine_id, int(cfg.seed), overrides, "unfinished")
        if result is not None:
            job.status, job.metrics = "finished", result["metrics"]
            if by_label:  # AUROC and pAUC within each machine ID the job tested: a row per ID
                jobs += [replace(job, id=i, metrics=m) for i, m in sorted((result.get("per_id") or {}).items())]
                continue
        elif (folder / FAILED_FILE).exists():
            job.status, job.error = "failed", json.loads((folder / FAILED_FILE).read_text()).get("error", "")
        jobs.append(job)
    return jobs


def with_positive(metrics: dict[str, float], positive: str) -> dict[str, float]:
    """Precision, recall and F1 for the chosen positive class, from the test confusion counts."""
    if positive == "abnormal":
        return dict(metrics)
    if positive != "normal":
        raise ValueError(f"positive must be one of {POSITIVES}, not '{positive}'")
    if "tn" not in metrics:  # scored by machine ID (AUROC and pAUC only): nothing depends on the positive class
        return dict(metrics)
    tn, fp, fn = metrics["tn"], metrics["fp"], metrics["fn"]  # normal positive: hits are the true negatives
    out = dict(metrics)
    out["precision"] = tn / (tn + fn) if tn + fn else 0.0
    out["recall"] = tn / (tn + fp) if tn + fp else 0.0
    out["f1"] = 2 * tn / (2 * tn + fn + fp) if tn + fn + fp else 0.0
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def _add_mean_std(row: dict, samples: list[dict]) -> dict:
    """Set `row[metric]` and `row[metric_std]` over the samples that have the metric (None when none has)."""
    for metric in COLUMNS:
        values = [s[metric] for s in samples if s.get(metric) is not None]
        row[metric], row[f"{metric}_std"] = _mean_std(values) if values else (None, None)
    return row


def _variant_keys(jobs: list[Job]) -> list[str]:
    """Overrides that differ between jobs (besides machine, id, snr, seed): they name variants of a row."""
    keys = sorted({k for j in jobs for k in j.overrides} - set(IDENTITY_KEYS))
    return [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]


def table_rows(jobs: list[Job], positive: str = "abnormal") -> list[dict]:
    """One row per (snr, machine, id, variant) with mean/std over seeds, then per-machine and overall means."""
    variant_keys = _variant_keys(jobs)
    cells: dict[tuple, list[Job]] = defaultdict(list)
    for job in jobs:
        variant = ",".join(f"{k}={job.overrides[k]}" for k in variant_keys if k in job.overrides)
        cells[(job.snr, variant, job.machine, job.id)].append(job)
    rows = []
    for (snr, variant, machine, machine_id), members in sorted(cells.items()):
        finished = [with_positive(j.metrics, positive) for j in members if j.status == "finished"]
        failed = [j for j in members if j.status == "failed"]
        status = "finished" if len(finished) == len(members) else "failed" if failed else "unfinished"
        row = {"kind": "job", "snr": snr, "variant": variant, "machine": machine, "id": machine_id,
               "name": row_name(snr, machine, machine_id) + (f" [{variant}]" if variant else ""),
               "status": status, "runs": len(members), "finished": len(finished),
               "seeds": ",".join(str(j.seed) for j in members),
               "error": "; ".join(sorted({j.error for j in failed if j.error})),
               "folders": ";".join(str(j.folder) for j in members)}
        rows.append(_add_mean_std(row, finished))
    return rows + _means(rows)


def _means(rows: list[dict]) -> list[dict]:
    """Per-machine and overall means of the finished cells, for each snr/variant group of two or more cells."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if row["machine"]:  # data without machines (class folders) has only the overall mean
            groups[(row["snr"], row["variant"], row["machine"])].append(row)
        groups[(row["snr"], row["variant"], None)].append(row)
    out = []
    for (snr, variant, machine), cells in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                                  kv[0][2] is None, kv[0][2])):
        if len(cells) < 2:  # the mean of one cell is that cell's row
            continue
        members = [r for r in cells if r["finished"]]
        unit = "IDs" if any(r["id"] for r in cells) else "runs"
        label = f"{row_name(snr, machine or '', '')} mean ({len(members)} of {len(cells)} {unit})"
        row = {"kind": "machine_mean" if machine else "overall_mean", "snr": snr, "variant": variant,
               "machine": machine or "", "id": "", "status": "", "runs": sum(r["runs"] for r in cells),
               "finished": sum(r["finished"] for r in members), "seeds": "", "error": "", "folders": "",
               "name": label + (f" [{variant}]" if variant else "")}
        out.append(_add_mean_std(row, members))
    return out


def _cell(row: dict, metric: str) -> str:
    value, std = row[metric], row[f"{metric}_std"]
    if value is None:
        return "–"
    percent = COLUMNS[metric][1]
    text = f"{100 * value:.0f}" if percent else f"{value:.3f}"
    if row["kind"] == "job" and row["finished"] > 1:
        text += f" ± {100 * std:.0f}" if percent else f" ± {std:.3f}"
    return text


def to_markdown(rows: list[dict], sweep_dir: Path, positive: str) -> str:
    headers = ["device", *(h for h, _ in COLUMNS.values()), "runs", "status"]
    lines = [f"# Sweep summary: {sweep_dir}", "",
             f"Written {datetime.now():%Y-%m-%d %H:%M}. Test split of each job; positive class for P, R and F1: "
             f"**{positive}** (multi-class jobs: macro averages over their classes). P, R, Acc in percent; "
             "several seeds of a cell: mean ± std.", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        name = row["name"] if row["kind"] == "job" else f"**{row['name']}**"
        status = row["status"] + (f": {row['error']}" if row["error"] else "")
        lines.append("| " + " | ".join([name, *(_cell(row, m) for m in COLUMNS),
                                        f"{row['finished']}/{row['runs']}", status]) + " |")
    failed = [r for r in rows if r["status"] == "failed"]
    unfinished = [r for r in rows if r["status"] == "unfinished"]
    lines += ["", f"{len(failed)} failed, {len(unfinished)} unfinished of {sum(r['kind'] == 'job' for r in rows)}."]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    fields = ["kind", "name", "snr", "variant", "machine", "id", "status", "runs", "finished", "seeds"]
    fields += [f for m in COLUMNS for f in (m, f"{m}_std")] + ["error", "folders"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_summary(sweep_dir: str | Path, metric: str = "auroc", positive: str = "abnormal") -> dict[str, Path]:
    """Rebuild the sweep's summary files; safe when several jobs finish at once (a lock file serialises)."""
    sweep_dir = Path(sweep_dir)
    if metric not in COLUMNS:
        raise ValueError(f"metric must be one of {', '.join(COLUMNS)}, not '{metric}'")
    with open(sweep_dir / ".summary.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = table_rows(collect(sweep_dir), positive)
        paths = {"csv": sweep_dir / "summary.csv", "md": sweep_dir / "summary.md", "png": sweep_dir / "summary.png"}
        write_atomic(paths["csv"], lambda tmp: tmp.write_text(to_csv(rows)))
        write_atomic(paths["md"], lambda tmp: tmp.write_text(to_markdown(rows, sweep_dir, positive)))
        if any(r["kind"] == "job" for r in rows):
            from machine_sound.figures import heatmap

            write_atomic(paths["png"], lambda tmp: heatmap(rows, metric, COLUMNS[metric][0], _cell, tmp))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m machine_sound.summarize",
                                     description="Summarise a sweep folder (also a half-finished one).")
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--metric", default="auroc", choices=list(COLUMNS), help="metric of the heatmap")
    parser.add_argument("--positive", default="abnormal", choices=POSITIVES,
                        help="positive class for precision, recall and F1 (normal: the original table's)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a folder", file=sys.stderr)
        return 2
    if not collect(args.sweep_dir):
        print(f"error: no job folders (with .hydra/config.yaml) under {args.sweep_dir}; is it a sweep folder?",
              file=sys.stderr)
        return 2
    paths = write_summary(args.sweep_dir, args.metric, args.positive)
    print(paths["md"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
