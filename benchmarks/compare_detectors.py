"""The normal-only detectors side by side: one table per metric from a `sweep=compare` folder, like the DCASE
papers' tables (a column per detector; a row per machine ID, per machine type and overall; mean ± standard
deviation over seeds).

    python benchmarks/compare_detectors.py <sweep folder> [--out benchmarks/results/compare_<snr>_<date>.md]
    (make compare runs the sweep, then this)

Each job's `metrics.json` gives its detector (`model`), machine, SNR, seed and DCASE's AUROC and pAUC per ID. A
machine type's and the overall value are first averaged over the IDs within each seed, then summarised over
seeds; a seed enters the overall mean once all its machine types have finished. The file names the date, this
machine and the sweep's wall time (first job folder made to last result written). Exits with a one-line error
when the folder holds no finished job.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from datetime import date
from pathlib import Path

from machine_sound.runs import machine_description, write_atomic

REFERENCE = "autoencoder"  # every other detector is compared with the DCASE 2020 baseline
TARGET = 0.15  # the mean AUROC a detector should gain over it (issue: normal-only detectors)
METRICS = (("auroc", "AUROC"), ("pauc", "pAUC"))


def read_jobs(folder: Path) -> tuple[list[dict], list[str], float]:
    """Finished jobs' metrics records, the failed jobs' one-line errors and the wall time in seconds."""
    records, failures, starts, ends = [], [], [], []
    for path in sorted(folder.rglob("metrics.json")):
        record = json.loads(path.read_text())
        if record.get("task") == "id_anomaly" and record.get("model"):
            records.append(record)
            ends.append(path.stat().st_mtime)
            starts.append((path.parent / ".hydra").stat().st_mtime if (path.parent / ".hydra").exists()
                          else path.stat().st_mtime)
    for path in sorted(folder.rglob("failed.json")):
        failures.append(f"{path.parent.relative_to(folder)}: {json.loads(path.read_text()).get('error', '')}")
    return records, failures, (max(ends) - min(starts)) if records else 0.0


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def summarise(records: list[dict], metric: str) -> tuple[list[str], dict[tuple, dict[str, list[float]]]]:
    """Detectors (the reference first) and {row key: {detector: one value per seed}} for rows (machine, id),
    (machine, 'mean') and ('all', 'mean')."""
    detectors = sorted({r["model"] for r in records}, key=lambda d: (d != REFERENCE, d))
    per_seed: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    groups: dict[tuple, list[float]] = defaultdict(list)  # (detector, seed, machine or 'all') -> ID values
    for r in records:
        for machine_id, values in sorted((r.get("per_id") or {}).items()):
            value = values.get(metric)
            if value is None:
                continue
            per_seed[(r["machine"], machine_id)][r["model"]].append(value)
            groups[(r["model"], r["seed"], r["machine"])].append(value)
            groups[(r["model"], r["seed"], "all")].append(value)
    machines = {r["machine"] for r in records}
    complete = {(r["model"], r["seed"]) for r in records  # a seed of a detector with every machine type finished
                if {q["machine"] for q in records if (q["model"], q["seed"]) == (r["model"], r["seed"])} == machines}
    for (detector, seed, machine), values in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if machine != "all" or (detector, seed) in complete:  # an unfinished seed would average fewer machines
            per_seed[(machine, "mean")][detector].append(statistics.mean(values))
    return detectors, per_seed


def table(records: list[dict], metric: str, label: str) -> list[str]:
    detectors, rows = summarise(records, metric)
    lines = [f"### {label}", "", "| machine | ID | " + " | ".join(detectors) + " |",
             "|---|---|" + "---|" * len(detectors)]
    machines = sorted({m for m, _ in rows if m != "all"})
    for machine in machines:
        ids = sorted(i for m, i in rows if m == machine and i != "mean")
        for key in [(machine, i) for i in ids] + [(machine, "mean")]:
            name = f"**{key[1]}**" if key[1] == "mean" else key[1]
            lines.append(f"| {machine} | {name} | " + " | ".join(cell(rows[key].get(d, [])) for d in detectors)
                         + " |")
    lines.append("| **all** | **mean** | " + " | ".join(f"**{cell(rows[('all', 'mean')].get(d, []))}**"
                                                     for d in detectors) + " |")
    return lines + [""]


def verdict(records: list[dict]) -> str:
    """How far the best detector's mean AUROC is above the autoencoder's, against the spread over seeds."""
    _, rows = summarise(records, "auroc")
    overall = rows[("all", "mean")]
    if REFERENCE not in overall or len(overall) < 2:
        return "The autoencoder and at least one other detector are needed for a comparison."
    best = max((d for d in overall if d != REFERENCE), key=lambda d: statistics.mean(overall[d]))
    gain = statistics.mean(overall[best]) - statistics.mean(overall[REFERENCE])
    spread = sum(statistics.stdev(overall[d]) if len(overall[d]) > 1 else 0.0 for d in (best, REFERENCE))
    seeds = min(len(overall[best]), len(overall[REFERENCE]))
    if seeds < 2:
        return (f"Best detector: {best}, mean AUROC {gain:+.3f} against the autoencoder (one seed: no spread over "
                "seeds yet).")
    beyond = "beyond" if abs(gain) > spread else "within"
    ranking = "" if gain > 0 else " The autoencoder is the best detector."
    target = "met" if gain >= TARGET and gain > spread else "not met"
    return (f"Best detector: {best}, mean AUROC {gain:+.3f} against the autoencoder ({seeds} seeds; {beyond} the "
            f"sum of their standard deviations over seeds, {spread:.3f}).{ranking} Target (+{TARGET:.2f} beyond "
            f"the spread): {target}.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a sweep=compare folder (outputs/sweeps/<time>)")
    parser.add_argument("--out", type=Path, default=None, help="the Markdown file to write")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        sys.exit(f"error: no folder {args.folder}; give the folder of a sweep=compare run")
    records, failures, wall = read_jobs(args.folder)
    if not records:
        sys.exit(f"error: no finished detector run under {args.folder}; run `make compare` (sweep=compare) first")
    snrs = sorted({r.get("snr") or "" for r in records})
    seeds = sorted({r["seed"] for r in records})
    lines = [f"## Detectors trained on normal clips only, synthetic {', '.join(snrs)}, MIMII baseline protocol",
             "", f"- date: {date.today().isoformat()}; machine: {machine_description()}",
             f"- {len(records)} finished job(s), seeds {', '.join(map(str, seeds))}; wall time {wall / 60:.0f} min "
             f"(first job folder to last result); folder `{args.folder}`",
             "- one model per machine type, tested on each ID (`id=all`); mean ± std over seeds", ""]
    for metric, label in METRICS:
        lines += table(records, metric, label)
    lines += [verdict(records), ""]
    if failures:
        lines += ["Failed jobs:", *[f"- {f}" for f in failures], ""]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        write_atomic(args.out, lambda staging: staging.write_text(text))
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
