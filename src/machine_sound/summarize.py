"""One results table for a sweep: `summary.csv`, `summary.md` and a machine x id heatmap PNG in the sweep folder.

Every job folder of a Hydra multirun holds `.hydra/` (its config and overrides) and, when it finished,
`metrics.json`; a failed job holds `failed.json` with its one-line error; a job that has not started yet has no
folder but is listed in the sweep's `multirun.yaml` (`pending`, see `machine_sound.sweep_jobs`). The table is
rebuilt from those files alone, so it works on a finished, a failed, a half-finished or a killed sweep:

    python -m machine_sound.summarize outputs/sweeps/<date> [--metric auroc] [--positive normal]

Rows are named like the original project's table (`-6_dB_fan/id_00`); a job whose task scores anomalies within each
machine ID (`id_anomaly`, see `machine_sound.tasks`) gives a row per ID it tested (a DCASE 2020 job tests every ID
of its machine type: `dcase2020_fan/id_00`, AUROC and pAUC only); a class-folder job is named by its layout
(`folder`); a job that differs by other swept
overrides (a backbone, a learning rate) gets them appended; several seeds of one cell give mean and standard
deviation. Precision, recall and F1 are for the class in each row's `positive` column: a binary job's positive
class as its metrics.json names it (`abnormal` for MIMII; a class-folder job's second class), `macro` for a
multi-class job (averages over its classes), `–` for a job that scores anomalies only. `--positive normal` takes
each binary job's negative (healthy) class instead, the convention the original table fits; AUROC, balanced
accuracy and accuracy do not depend on it, and pAUC stays the DCASE definition (abnormal positive, FPR up to 0.1).
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import io
import math
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from machine_sound.runs import machine_description, write_atomic
from machine_sound.sweep_jobs import METRICS_FILE, MULTIRUN_FILE, POSITIVES, Job, collect

IDENTITY_KEYS = ("snr", "machine", "id", "seed")  # what names a row (seed is averaged over)
COLUMNS = {  # metric -> (header, shown in percent)
    "precision": ("P %", True), "recall": ("R %", True), "accuracy": ("Acc %", True), "f1": ("F1", False),
    "balanced_accuracy": ("Bal. acc.", False), "auroc": ("AUROC", False), "pauc": ("pAUC", False),
    # DCASE 2021-2025 (machine_sound.challenge), shown where a job has them
    "auroc_source": ("AUROC (source)", False), "auroc_target": ("AUROC (target)", False),
    "pauc_source": ("pAUC (source)", False), "pauc_target": ("pAUC (target)", False),
    "official_score": ("official score", False),
}
CHALLENGE = ("auroc_source", "auroc_target", "pauc_source", "pauc_target", "official_score")
STATUSES = ("failed", "unfinished", "pending")  # a cell's status: the first of these that one of its jobs has


def row_name(snr: str, machine: str, machine_id: str) -> str:
    """`-6_dB_fan/id_00`, `dcase2020_fan/id_00`, or `folder` for data without machines."""
    return (f"{snr}_{machine}" if machine else snr) + (f"/{machine_id}" if machine_id else "")


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
        statuses = {j.status for j in members}
        status = next((s for s in STATUSES if s in statuses), "finished")
        row = {"kind": "job", "snr": snr, "variant": variant, "machine": machine, "id": machine_id,
               "name": row_name(snr, machine, machine_id) + (f" [{variant}]" if variant else ""),
               "positive": _distinct(j.positive.get(positive, "") for j in members),
               "status": status, "runs": len(members), "finished": len(finished),
               **{f"n_{s}": sum(j.status == s for j in members) for s in STATUSES},
               "seeds": ",".join(str(j.seed) for j in members),
               "error": "; ".join(sorted({j.error for j in failed if j.error})),
               "folders": ";".join(str(j.folder) for j in members)}
        rows.append(_add_mean_std(row, finished))
    return rows + _means(rows)


def _distinct(labels) -> str:
    return "/".join(sorted(set(labels) - {""}))


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
        if any("section_" in r["id"] for r in cells):  # DCASE 2021-2025
            unit = "sections"
        label = f"{row_name(snr, machine or '', '')} mean ({len(members)} of {len(cells)} {unit})"
        row = {"kind": "machine_mean" if machine else "overall_mean", "snr": snr, "variant": variant,
               "machine": machine or "", "id": "", "status": "", "runs": sum(r["runs"] for r in cells),
               "positive": _distinct(r["positive"] for r in members),
               "finished": sum(r["finished"] for r in members), "seeds": "", "error": "", "folders": "",
               "name": label + (f" [{variant}]" if variant else "")}
        out.append(_official_score(_add_mean_std(row, members), members))
    return out


def _official_score(row: dict, members: list[dict]) -> dict:
    """A mean row of DCASE 2021-2025 cells: the official score is the harmonic mean of every member's terms
    (AUROC per domain and pAUC, floored as the evaluators do), not a mean of the members' scores."""
    from machine_sound.challenge import hmean_floored

    if not any(m.get("official_score") is not None for m in members):
        return row
    terms = ["auroc_source", "auroc_target", "pauc_source", "pauc_target"] if any(
        m.get("pauc_source") is not None for m in members) else ["auroc_source", "auroc_target", "pauc"]
    values = [m.get(t) for m in members for t in terms]
    complete = len(members) > 0 and all(v is not None for v in values)
    row["official_score"], row["official_score_std"] = (hmean_floored(values), None) if complete else (None, None)
    return row


def _cell(row: dict, metric: str) -> str:
    value, std = row.get(metric), row.get(f"{metric}_std")
    if value is None:
        return "–"
    percent = COLUMNS[metric][1]
    text = f"{100 * value:.0f}" if percent else f"{value:.3f}"
    if row["kind"] == "job" and row["finished"] > 1 and std is not None:
        text += f" ± {100 * std:.0f}" if percent else f" ± {std:.3f}"
    return text


def shown_columns(rows: list[dict]) -> list[str]:
    """The metrics of the markdown table: every column but the DCASE ones, which appear where a row has them."""
    return [m for m in COLUMNS if m not in CHALLENGE or any(r.get(m) is not None for r in rows)]


def to_markdown(rows: list[dict], sweep_dir: Path, positive: str) -> str:
    columns = shown_columns(rows)
    headers = ["device", "positive", *(COLUMNS[m][0] for m in columns), "runs", "status"]
    chosen = "positive class" if positive == "abnormal" else "negative (healthy) class (--positive normal)"
    lines = [f"# Sweep summary: {sweep_dir}", "",
             f"Written {datetime.now():%Y-%m-%d %H:%M} on {machine_description()}. Test split of each job; P, R and "
             f"F1 are for the class in the positive column: each binary job's {chosen} as its metrics.json names "
             "it, macro averages over the classes of a multi-class job, – for anomaly scores only. P, R, Acc in "
             "percent; several seeds of a cell: mean ± std.", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        name = row["name"] if row["kind"] == "job" else f"**{row['name']}**"
        status = row["status"] + (f": {row['error']}" if row["error"] else "")
        lines.append("| " + " | ".join([name, row["positive"] or "–", *(_cell(row, m) for m in columns),
                                        f"{row['finished']}/{row['runs']}", status]) + " |")
    jobs = [r for r in rows if r["kind"] == "job"]
    counts = ", ".join(f"{sum(r[f'n_{s}'] for r in jobs)} {s}" for s in STATUSES)
    lines += ["", f"{counts} of {sum(r['runs'] for r in jobs)} runs."]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    fields = ["kind", "name", "snr", "variant", "machine", "id", "positive", "status", "runs", "finished", "seeds"]
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
                        help="class of precision, recall and F1: each binary job's positive class (abnormal), or "
                             "its negative, healthy one (normal: the original table's convention)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a folder", file=sys.stderr)
        return 2
    if (args.sweep_dir / ".hydra").is_dir() and not (args.sweep_dir / MULTIRUN_FILE).exists():
        result = args.sweep_dir / METRICS_FILE
        print(f"error: {args.sweep_dir} is a run folder, not a sweep folder: its test metrics are in {result}"
              + ("" if result.exists() else " once it finishes"), file=sys.stderr)
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
